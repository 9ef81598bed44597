"""Dataset definitions materialize the same versioned splits anywhere, and load back exactly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from upath import UPath

from airflow_mlops.artifacts import MANIFEST_SUFFIX, Artifact
from airflow_mlops.data.datasets import (
    DatasetDefinition,
    Label,
    RowFilter,
    SplitRule,
    load_manifest,
    load_split,
    materialize_dataset,
)
from airflow_mlops.exceptions import DatasetDefinitionError, DatasetIntegrityError
from tests.partitions import month_frame, parquet_bytes

ROOT = Path(__file__).resolve().parents[3]
DEFINITION = DatasetDefinition.from_yaml(ROOT / "dags" / "datasets" / "flights_delay.yaml")


def write_validated(lake: Path, month: int) -> None:
    """A validated partition as the validator leaves it: the file plus a manifest with its hash."""
    folder = lake / "validated" / "flights"
    folder.mkdir(parents=True, exist_ok=True)
    data = parquet_bytes(month_frame("flights", month))
    path = folder / f"2013-{month:02d}.parquet"
    path.write_bytes(data)
    artifact = Artifact(
        uri=path.as_uri(), sha256=hashlib.sha256(data).hexdigest(), kind="validated_partition"
    )
    Path(str(path) + MANIFEST_SUFFIX).write_text(artifact.to_json())


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    for month in (1, 2):
        write_validated(tmp_path / "lake", month)
    return tmp_path / "lake"


def materialize(lake: Path, output: Path, **kwargs):
    return materialize_dataset(
        DEFINITION,
        output_uri=output.as_uri(),
        open_path=UPath,
        variables={"lake": lake.as_uri()},
        code_version="test",
        **kwargs,
    )


def test_materialize_writes_splits_counts_and_a_manifest(lake: Path, tmp_path: Path) -> None:
    manifest = materialize(lake, tmp_path / "out")

    source = pd.concat([month_frame("flights", 1), month_frame("flights", 2)])
    kept = source[source["arr_delay"].notna()]
    assert manifest.rows_read == len(source) == 27004 + 24951
    assert manifest.rows_filtered == {"arr_delay not_null": len(source) - len(kept)}
    assert sum(s["rows"] for s in manifest.splits.values()) == len(kept)
    assert sum(s["label_positive"] for s in manifest.splits.values()) == int((kept["arr_delay"] > 15).sum())
    fractions = {name: s["rows"] / len(kept) for name, s in manifest.splits.items()}
    assert fractions == pytest.approx({"train": 0.8, "validation": 0.1, "test": 0.1}, abs=0.01)
    assert [s["period"] for s in manifest.sources] == ["2013-01", "2013-02"]

    train = load_split(load_manifest(manifest.uri, UPath), "train", UPath)
    assert list(train.columns) == [*DEFINITION.columns, "is_delayed"]
    arrival_delay = kept.set_index("flight_id")["arr_delay"].loc[train["flight_id"]].to_numpy()
    assert (train["is_delayed"].to_numpy() == (arrival_delay > 15)).all()
    assert "arr_delay" not in train.columns  # the label's source never travels with the features
    splits = {name: set(load_split(manifest, name, UPath)["flight_id"]) for name in manifest.splits}
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["validation"])


def test_the_same_definition_gives_the_same_version_and_rows_anywhere(lake: Path, tmp_path: Path) -> None:
    first, second = materialize(lake, tmp_path / "a"), materialize(lake, tmp_path / "b")
    assert first.version == second.version
    assert {k: (v["content_sha256"], v["rows"]) for k, v in first.splits.items()} == {
        k: (v["content_sha256"], v["rows"]) for k, v in second.splits.items()
    }
    again = materialize(lake, tmp_path / "a")
    assert again.to_json() == first.to_json()


def test_a_flight_keeps_its_split_when_a_month_is_added(lake: Path, tmp_path: Path) -> None:
    one = materialize(lake, tmp_path / "one", periods=["2013-01"])
    two = materialize(lake, tmp_path / "two", periods=["2013-01", "2013-02"])
    assert one.version != two.version
    for name in one.splits:
        january = set(load_split(one, name, UPath)["flight_id"])
        assert january <= set(load_split(two, name, UPath)["flight_id"])


def test_time_split(lake: Path, tmp_path: Path) -> None:
    definition = DatasetDefinition(
        name="by_time",
        source_uri="{lake}/validated/flights/{period}.parquet",
        periods=("2013-01", "2013-02"),
        label=Label("late", "arr_delay", ">", 15),
        filters=(RowFilter("arr_delay", "not_null"),),
        split=SplitRule(by="time", column="time_hour", boundaries=(("train", "2013-02-01"), ("test", None))),
    )
    manifest = materialize_dataset(
        definition, output_uri=(tmp_path / "o").as_uri(), open_path=UPath, variables={"lake": lake.as_uri()}
    )
    train, test = load_split(manifest, "train", UPath), load_split(manifest, "test", UPath)
    assert train["time_hour"].max() < pd.Timestamp("2013-02-01", tz="UTC") <= test["time_hour"].min()


def test_a_changed_split_file_is_refused(lake: Path, tmp_path: Path) -> None:
    manifest = materialize(lake, tmp_path / "out")
    path = Path(manifest.splits["test"]["uri"].removeprefix("file://"))
    path.write_bytes(parquet_bytes(pd.read_parquet(path).iloc[1:]))
    with pytest.raises(DatasetIntegrityError, match=r"test.parquet has sha256 .* the manifest records"):
        load_split(manifest, "test", UPath)
    with pytest.raises(DatasetIntegrityError, match=r"no split 'holdout'"):
        load_split(manifest, "holdout", UPath)


def test_sources_without_a_matching_manifest_are_refused(lake: Path, tmp_path: Path) -> None:
    january = lake / "validated" / "flights" / "2013-01.parquet"
    january.write_bytes(parquet_bytes(month_frame("flights", 1).iloc[:100]))
    with pytest.raises(DatasetIntegrityError, match=r"2013-01.parquet: sha256 .* differs from its manifest"):
        materialize(lake, tmp_path / "out")
    Path(str(january) + MANIFEST_SUFFIX).unlink()
    with pytest.raises(DatasetIntegrityError, match=r"has no manifest"):
        materialize(lake, tmp_path / "out")
    with pytest.raises(DatasetIntegrityError, match=r"2013-03.parquet: does not exist"):
        materialize(lake, tmp_path / "out", periods=["2013-03"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RowFilter("a", "~=", 1), r"unknown operator '~='"),
        (lambda: RowFilter("a", "not_null", 3), r"'not_null' takes no value"),
        (lambda: RowFilter("a", "in", 3), r"'in' needs a list"),
        (lambda: RowFilter("a", ">"), r"'>' needs a value"),
        (lambda: Label("y", "a", "not_null", None), r"must compare with a value"),
        (lambda: Label("y", "a", value=3), r"label 'y': value 3 needs an op"),
        (
            lambda: Label("y", "a", bins=(0, 60), classes=("a", "b")),
            r"2 bins make 3 classes.*got \['a', 'b'\]",
        ),
        (
            lambda: Label("y", "a", bins=(60, 0), classes=("a", "b", "c")),
            r"bins must increase, got \[60, 0\]",
        ),
        (lambda: Label("y", "a", bins=("x",), classes=("a", "b")), r"bins must be a list of numbers"),
        (
            lambda: Label("y", "a", ">", 1, bins=(0,), classes=("a", "b")),
            r"op/value or bins/classes, not both",
        ),
        (lambda: SplitRule(by="random"), r"'by' must be 'time' or 'hash'"),
        (lambda: SplitRule(by="hash", key="k", fractions=(("a", 0.5), ("b", 0.4))), r"sum to 1"),
        (
            lambda: SplitRule(
                by="time", column="t", boundaries=(("a", "2013-02"), ("b", "2013-01"), ("c", None))
            ),
            r"boundaries must increase",
        ),
        (
            lambda: SplitRule(by="time", column="t", boundaries=(("a", "2013-02"),)),
            r"only the last boundary is open",
        ),
        (lambda: SplitRule(by="hash", key="k", fractions=(("a", 0.5), ("a", 0.5))), r"split names repeat"),
        (lambda: DatasetDefinition.from_dict({"name": "x"}), r"missing field 'source'"),
        (
            lambda: DatasetDefinition(
                name="x",
                source_uri="s3://b/data.parquet",
                label=Label("y", "a", ">", 1),
                split=SplitRule(by="hash", key="k", fractions=(("a", 1.0),)),
            ),
            r"must contain '\{period\}'",
        ),
    ],
)
def test_bad_definitions_are_refused_when_constructed(build, message) -> None:
    with pytest.raises(DatasetDefinitionError, match=message):
        build()


def test_materialize_errors_name_the_problem(lake: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetDefinitionError, match=r"needs variable 'lake'"):
        materialize_dataset(DEFINITION, output_uri=tmp_path.as_uri(), open_path=UPath)
    with pytest.raises(DatasetDefinitionError, match=r"no periods to read"):
        materialize(lake, tmp_path / "out", periods=[])
    record = DEFINITION.to_dict()
    record["filters"] = [{"column": "arr_delay", "op": ">", "value": 10_000}]
    with pytest.raises(DatasetDefinitionError, match=r"the filters removed every row"):
        materialize_dataset(
            DatasetDefinition.from_dict(record),
            output_uri=tmp_path.as_uri(),
            open_path=UPath,
            variables={"lake": lake.as_uri()},
        )


def test_a_definition_round_trips_through_its_manifest(lake: Path, tmp_path: Path) -> None:
    manifest = materialize(lake, tmp_path / "out")
    assert DatasetDefinition.from_dict(manifest.definition) == DEFINITION
    assert DatasetDefinition.from_dict(manifest.definition).sha256 == manifest.definition_sha256


@pytest.mark.parametrize(
    ("label", "expected", "summary"),
    [
        ({"name": "minutes", "column": "arr_delay"}, lambda d: d, "label_mean"),
        (
            {
                "name": "band",
                "column": "arr_delay",
                "bins": [0, 60],
                "classes": ["early", "late", "very_late"],
            },
            lambda d: pd.cut(
                d, [-float("inf"), 0, 60, float("inf")], labels=["early", "late", "very_late"]
            ).astype(str),
            "label_counts",
        ),
    ],
)
def test_a_regression_or_multiclass_label_comes_from_the_same_definition_file(
    lake: Path, tmp_path: Path, label: dict, expected, summary: str
) -> None:
    record = DEFINITION.to_dict()
    definition = DatasetDefinition.from_dict({**record, "name": label["name"], "label": label})
    assert DatasetDefinition.from_dict(definition.to_dict()) == definition
    manifest = materialize_dataset(
        definition, output_uri=(tmp_path / "out").as_uri(), open_path=UPath,
        variables={"lake": lake.as_uri()}, code_version="test",
    )  # fmt: skip
    source = pd.concat([month_frame("flights", 1), month_frame("flights", 2)])
    delays = source.loc[source["arr_delay"].notna(), "arr_delay"]
    labels = pd.concat(load_split(manifest, s, UPath)[label["name"]] for s in ("train", "validation", "test"))
    assert sorted(labels.tolist()) == sorted(expected(delays).tolist())
    assert all(summary in s and "label_positive" not in s for s in manifest.splits.values())
    if summary == "label_counts":
        counts = pd.DataFrame([s["label_counts"] for s in manifest.splits.values()]).sum()
        assert counts.to_dict() == expected(delays).value_counts().to_dict()


def test_a_null_label_value_is_refused_naming_the_column(lake: Path, tmp_path: Path) -> None:
    record = {**DEFINITION.to_dict(), "filters": [], "label": {"name": "minutes", "column": "arr_delay"}}
    with pytest.raises(
        DatasetDefinitionError, match=r"label 'minutes': column 'arr_delay' has \d+ null value"
    ):
        materialize_dataset(
            DatasetDefinition.from_dict(record), output_uri=(tmp_path / "o").as_uri(), open_path=UPath,
            variables={"lake": lake.as_uri()}, code_version="test",
        )  # fmt: skip


def test_the_binary_label_keeps_its_file_layout_and_hash() -> None:
    assert DEFINITION.to_dict()["label"] == {
        "name": "is_delayed",
        "column": "arr_delay",
        "op": ">",
        "value": 15,
    }
