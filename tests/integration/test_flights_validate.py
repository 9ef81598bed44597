"""The validation DAGs run for real (dag.test): good months pass, every corruption is quarantined, datasets build."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_mlops.artifacts import MANIFEST_SUFFIX, Artifact
from airflow_mlops.data.validation import ValidationReport
from airflow_mlops.links import report_url
from tests.integration.test_flights_ingest import asset_events, task_states
from tests.integration.test_flights_ingest import load_dag as load_reference_dag
from tests.partitions import CORRUPTIONS, month_frame, parquet_bytes

ROOT_DAGS = Path(__file__).resolve().parents[2] / "dags"
pytestmark = pytest.mark.integration


def load_dag(dag_id: str):
    return load_reference_dag(dag_id, "flights_validate.py")


def write_raw(lake: Path, table: str, month: int, data: bytes) -> str:
    path = lake / "raw" / table / f"2013-{month:02d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    Path(str(path) + MANIFEST_SUFFIX).write_text(
        Artifact(uri=path.as_uri(), sha256="x", kind="dataset_partition").to_json()
    )
    return path.as_uri()


def xcoms(run, task_id: str, key: str) -> list:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(
            dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key
        )
        return [row.value for row in rows]


def run_validate(conf: dict) -> object:
    return load_dag("flights_validate").test(logical_date=datetime(2013, 3, 1, tzinfo=UTC), run_conf=conf)


def test_good_months_are_validated_reported_and_announced(airflow_db, lake) -> None:
    flights = [write_raw(lake, "flights", m, parquet_bytes(month_frame("flights", m))) for m in (1, 2)]
    weather = [write_raw(lake, "weather", 2, parquet_bytes(month_frame("weather", 2)))]
    before = len(asset_events("flights_validated"))

    run = run_validate({"flights": flights, "weather": weather})

    assert str(run.state) == "success", task_states(run)
    for month in ("2013-01", "2013-02"):
        validated = lake / "validated" / "flights" / f"{month}.parquet"
        assert validated.read_bytes() == (lake / "raw" / "flights" / f"{month}.parquet").read_bytes()
        manifest = Artifact.from_json(Path(str(validated) + MANIFEST_SUFFIX).read_text())
        assert manifest.kind == "validated_partition" and manifest.parents == (
            (lake / "raw" / "flights" / f"{month}.parquet").as_uri(),
        )
        report = ValidationReport.from_json(
            (lake / "validated" / "flights" / f"{month}.report.json").read_text()
        )
        assert report.success and report.partition_sha256 == manifest.sha256 and report.drift_checked
        assert "passed: flights_raw" in (lake / "validated" / "flights" / f"{month}.report.html").read_text()

    assert sorted(xcoms(run, "validate_flights", "return_value")) == [
        (lake / "validated" / "flights" / f"2013-0{m}.report.json").as_uri() for m in (1, 2)
    ]
    # The task instances' "Validation report" links open the HTML reports through the plugin.
    assert sorted(xcoms(run, "validate_flights", "_link_ValidationReportLink")) == [
        report_url((lake / "validated" / "flights" / f"2013-0{m}.report.html").as_uri()) for m in (1, 2)
    ]
    assert sorted(xcoms(run, "validate_flights", "validated_uri")) == [
        (lake / "validated" / "flights" / f"2013-0{m}.parquet").as_uri() for m in (1, 2)
    ]
    events = sorted(asset_events("flights_validated")[before:], key=lambda e: e["uri"])
    assert [e["uri"] for e in events] == [
        (lake / "validated" / "flights" / f"2013-0{m}.parquet").as_uri() for m in (1, 2)
    ]
    assert events[1]["rows"] == 24951 and events[1]["suite"] == "flights_raw"
    assert events[1]["report_uri"].endswith("validated/flights/2013-02.report.json")
    assert (
        events[1]["statistics"]["carrier"]["distinct"] == month_frame("flights", 2)["carrier"].nunique() == 15
    )

    # Weather: the one 1048 mph hour of February is split off; the rest passes, both are counted.
    (weather_event,) = asset_events("weather_validated")[-1:]
    assert weather_event["rows"] == 2009 and weather_event["invalid_rows"] == 1
    invalid = Path(weather_event["invalid_uri"].removeprefix("file://"))
    assert invalid.parent.parent == lake / "quarantine" / "weather" / "2013-02"
    assert (invalid.parent / "report.json").exists()
    import pandas as pd

    assert pd.read_parquet(invalid)["wind_speed"].tolist() == [1048.36058]
    # The task says where its quarantined rows are (the plugin's Data view shows them); the
    # flights, which split nothing, say nothing.
    assert xcoms(run, "validate_weather", "quarantined_uri") == [weather_event["invalid_uri"]]
    assert xcoms(run, "validate_flights", "quarantined_uri") == []


def test_revalidating_a_partition_is_idempotent(airflow_db, lake) -> None:
    uri = write_raw(lake, "flights", 1, parquet_bytes(month_frame("flights", 1)))
    report = lake / "validated" / "flights" / "2013-01.report.json"

    assert str(run_validate({"flights": [uri]}).state) == "success"
    first = report.read_bytes()
    assert str(run_validate({"flights": [uri]}).state) == "success"

    assert report.read_bytes() == first
    assert sorted(p.name for p in (lake / "validated" / "flights").iterdir()) == [
        "2013-01.parquet",
        "2013-01.parquet.manifest.json",
        "2013-01.report.html",
        "2013-01.report.json",
    ]
    assert (lake / "raw" / "flights" / "2013-01.parquet").exists()


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_each_corruption_is_quarantined_with_its_report_and_nothing_downstream(
    airflow_db, lake, corruption
) -> None:
    damage, fragments = CORRUPTIONS[corruption]
    data = damage(month_frame("flights", 1))
    uri = write_raw(lake, "flights", 1, data)
    before = len(asset_events("flights_validated"))

    run = run_validate({"flights": [uri]})

    assert str(run.state) == "failed"
    assert task_states(run)["validate_flights"] == "failed"
    assert not (lake / "raw" / "flights" / "2013-01.parquet").exists()
    (folder,) = (lake / "quarantine" / "flights" / "2013-01").iterdir()
    assert (folder / "2013-01.parquet").read_bytes() == data  # kept byte for byte, never deleted
    assert xcoms(run, "validate_flights", "quarantined_uri") == [(folder / "2013-01.parquet").as_uri()]
    assert (folder / f"2013-01.parquet{MANIFEST_SUFFIX}").exists()
    report = ValidationReport.from_json((folder / "report.json").read_text())
    message = report.failure_message()
    assert not report.success and all(f in message for f in fragments), message
    assert "FAILED: flights_raw" in (folder / "report.html").read_text()
    assert xcoms(run, "validate_flights", "_link_ValidationReportLink") == [
        report_url(f"{lake.as_uri()}/quarantine/flights/2013-01/{folder.name}/report.html")
    ]
    assert not (lake / "validated" / "flights" / "2013-01.parquet").exists()
    assert len(asset_events("flights_validated")) == before

    # A retry or re-run finds the partition in quarantine and fails the same way, losing nothing.
    assert str(run_validate({"flights": [uri]}).state) == "failed"
    assert [p.name for p in (lake / "quarantine" / "flights" / "2013-01").iterdir()] == [folder.name]


def test_a_suite_problem_fails_before_the_partition_is_touched(
    airflow_db, lake, tmp_path, monkeypatch
) -> None:
    from airflow_mlops.exceptions import SuiteError
    from airflow_mlops.operators.validate import DataValidationOperator

    suite = tmp_path / "bad.yaml"
    suite.write_text(
        "name: bad\nexpectations:\n- {type: expect_column_values_to_be_awesome, kwargs: {column: a}}\n"
    )
    uri = write_raw(lake, "flights", 1, b"not read")
    operator = DataValidationOperator(task_id="v", partition=uri, suite=str(suite))
    with pytest.raises(SuiteError, match="unknown expectation type 'expect_column_values_to_be_awesome'"):
        operator.execute(context={})  # the suite is checked before the context or the data are used
    assert (lake / "raw" / "flights" / "2013-01.parquet").read_bytes() == b"not read"


def test_flights_dataset_materializes_every_validated_month(airflow_db, lake) -> None:
    flights = [write_raw(lake, "flights", m, parquet_bytes(month_frame("flights", m))) for m in (1, 2)]
    assert str(run_validate({"flights": flights}).state) == "success"

    run = load_dag("flights_dataset").test(logical_date=datetime(2013, 3, 1, tzinfo=UTC))

    assert str(run.state) == "success", task_states(run)
    event = asset_events("flights_delay_dataset")[-1]
    manifest = json.loads(Path(event["manifest_uri"].removeprefix("file://")).read_text())
    assert [s["period"] for s in manifest["sources"]] == ["2013-01", "2013-02"]
    assert event["splits"] == {name: s["rows"] for name, s in manifest["splits"].items()}
    assert sum(event["splits"].values()) + event["rows_filtered"]["arr_delay not_null"] == 27004 + 24951
    assert manifest["code_version"].startswith("airflow-mlops==")


def test_a_missing_partition_or_reference_profile_is_a_clear_error(airflow_db, lake) -> None:
    from airflow_mlops.exceptions import TargetError
    from airflow_mlops.operators.validate import DataValidationOperator

    suite = str(ROOT_DAGS / "suites" / "flights_raw.yaml")
    parameters = {"year": 2013, "months": [1]}
    missing = (lake / "raw" / "flights" / "2013-05.parquet").as_uri()
    with pytest.raises(TargetError, match=r"partition '.*2013-05.parquet': does not exist"):
        DataValidationOperator(
            task_id="v", partition=missing, suite=suite, suite_parameters=parameters
        ).execute({})
    uri = write_raw(lake, "flights", 1, parquet_bytes(month_frame("flights", 1)))
    operator = DataValidationOperator(
        task_id="v",
        partition=uri,
        suite=suite,
        suite_parameters=parameters,
        reference_profile="file:///nowhere/profile.json",
    )
    with pytest.raises(
        TargetError, match=r"reference_profile 'file:///nowhere/profile.json': does not exist"
    ):
        operator.execute({})
    with pytest.raises(TargetError, match=r"must name a .parquet file"):
        DataValidationOperator(
            task_id="v", partition=uri + ".csv", suite=suite, suite_parameters=parameters
        ).execute({})
    assert (lake / "raw" / "flights" / "2013-01.parquet").exists()  # untouched


def test_a_partition_outside_its_folder_or_a_folder_is_refused_and_nothing_moves(
    airflow_db, lake, tmp_path
) -> None:
    from airflow_mlops.exceptions import TargetError
    from airflow_mlops.operators.validate import DataValidationOperator

    suite = str(ROOT_DAGS / "suites" / "flights_raw.yaml")
    parameters = {"year": 2013, "months": [1]}
    # A failing file outside the lake, reached with '..': it would be quarantined (moved) if read.
    outside = tmp_path / "outside" / "2013-01.parquet"
    outside.parent.mkdir()
    outside.write_bytes(CORRUPTIONS["unknown_category"][0](month_frame("flights", 1)))
    escaping = f"{(lake / 'raw' / 'flights').as_uri()}/../../../{outside.parent.name}/2013-01.parquet"
    dots, outside_roots = r"must not contain '\.\.' segments", r"must lie inside \[.*lake"
    for argument, values, message in (
        ("partition", {"partition": escaping}, dots),
        ("quarantine_dir", {"quarantine_dir": f"{lake.as_uri()}/../elsewhere"}, dots),
        # Named directly, or a quarantine or target outside the lake and landing roots: refused too.
        ("partition", {"partition": outside.as_uri()}, outside_roots),
        ("quarantine_dir", {"quarantine_dir": (tmp_path / "outside").as_uri()}, outside_roots),
        (
            "validated_target",
            {"validated_target": (tmp_path / "outside" / "v.parquet").as_uri()},
            outside_roots,
        ),
    ):
        operator = DataValidationOperator(
            task_id="v",
            **{"partition": write_raw(lake, "flights", 1, parquet_bytes(month_frame("flights", 1)))} | values,
            suite=suite,
            suite_parameters=parameters,
        )
        with pytest.raises(TargetError, match=rf"{argument} '.*': {message}"):
            operator.execute({})
    assert outside.read_bytes() == CORRUPTIONS["unknown_category"][0](month_frame("flights", 1))
    assert not any((tmp_path / "outside").glob("_quarantine*"))
    assert sorted(p.name for p in (tmp_path / "outside").iterdir()) == ["2013-01.parquet"]
    folder = lake / "raw" / "flights" / "2013-02.parquet"
    folder.mkdir(parents=True)
    with pytest.raises(TargetError, match=r"partition '.*2013-02.parquet': is a folder, not a Parquet file"):
        DataValidationOperator(
            task_id="v", partition=folder.as_uri(), suite=suite, suite_parameters=parameters
        ).execute({})
    assert folder.is_dir()
