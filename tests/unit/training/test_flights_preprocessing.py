"""The reference model's preprocessing: statistics from the training split, the same transform for
rows read as plain strings or as Parquet dictionaries (``read_rows``), unseen and missing values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from airflow_mlops.evaluation.scoring import read_rows
from airflow_mlops.exceptions import SpecError
from flights.model import (
    CATEGORICAL,
    NUMERIC,
    FlightDelayModel,
    fit_preprocessing,
    transform,
)


def rows(carriers: list[str | None], origins: list[str], dests: list[str]) -> pd.DataFrame:
    n = len(carriers)
    frame = pd.DataFrame(
        {column: np.arange(n, dtype="float64") * (i + 1) for i, column in enumerate(NUMERIC)}
    )
    frame["sched_dep_time"] = np.arange(n, dtype="int64") + 500  # an integer column, as in the data
    frame["carrier"], frame["origin"], frame["dest"] = carriers, origins, dests
    return frame


@pytest.fixture
def training() -> pd.DataFrame:
    return rows(["UA", "AA", "UA", "DL"], ["EWR", "JFK", "LGA", "EWR"], ["ORD", "LAX", "ORD", "ATL"])


def test_statistics_come_from_the_training_rows(training: pd.DataFrame) -> None:
    stats = fit_preprocessing(training)
    assert stats["categorical"] == {
        "carrier": ["AA", "DL", "UA"],
        "origin": ["EWR", "JFK", "LGA"],
        "dest": ["ATL", "LAX", "ORD"],
    }
    assert stats["numeric"]["distance"] == {"mean": 1.5, "std": pytest.approx(np.std([0, 1, 2, 3], ddof=1))}


def test_transform_maps_unseen_and_missing_categories_to_zero_and_the_model_standardises(
    training: pd.DataFrame,
) -> None:
    stats = fit_preprocessing(training)
    scoring = rows(["UA", None, "ZZ"], ["JFK", "EWR", "EWR"], ["ATL", "XXX", "ORD"])
    scoring.loc[1, "distance"] = np.nan
    numeric, categorical = transform(scoring, stats)
    assert numeric.dtype == torch.float32 and categorical.dtype == torch.int64
    distance = NUMERIC.index("distance")
    assert numeric[0, distance].item() == 0.0 and torch.isnan(numeric[1, distance])  # raw values, NaN kept
    assert numeric[:, NUMERIC.index("sched_dep_time")].tolist() == [500.0, 501.0, 502.0]
    assert categorical.tolist() == [
        [3, 2, 1],
        [0, 1, 0],
        [0, 1, 3],
    ]  # vocabulary index + 1; 0 = unseen/missing

    model = FlightDelayModel(**module_inputs(stats))
    standardised = model.standardise(numeric)
    std = stats["numeric"]["distance"]["std"]
    assert standardised[:, distance].tolist() == pytest.approx(
        [(0 - 1.5) / std, 0.0, (2 - 1.5) / std], rel=1e-6
    )
    assert not torch.isnan(standardised).any()  # missing -> the training mean


def module_inputs(stats: dict) -> dict:
    numeric = stats["numeric"]
    return {
        "num_numeric": len(NUMERIC),
        "cardinalities": [len(v) + 1 for v in stats["categorical"].values()],
        "numeric_mean": [numeric[c]["mean"] for c in NUMERIC],
        "numeric_std": [numeric[c]["std"] for c in NUMERIC],
    }


def test_the_model_refuses_statistics_that_do_not_fit(training: pd.DataFrame) -> None:
    from airflow_mlops.training.spec import SpecError

    inputs = module_inputs(fit_preprocessing(training))
    with pytest.raises(
        SpecError, match=r"numeric_mean and numeric_std need 26 values each \(std > 0\), got 25 and 26"
    ):
        FlightDelayModel(**{**inputs, "numeric_mean": inputs["numeric_mean"][1:]})
    with pytest.raises(SpecError, match="std > 0"):
        FlightDelayModel(**{**inputs, "numeric_std": [0.0] * len(NUMERIC)})


def test_rows_read_as_parquet_dictionaries_transform_identically(
    training: pd.DataFrame, tmp_path: Path
) -> None:
    stats = fit_preprocessing(training)
    scoring = rows(["UA", None, "ZZ", "AA"], ["JFK", "EWR", "EWR", "LGA"], ["ATL", "XXX", "ORD", "LAX"])
    scoring.to_parquet(tmp_path / "rows.parquet")
    as_dictionaries = read_rows((tmp_path / "rows.parquet").as_uri())
    assert all(isinstance(as_dictionaries[c].dtype, pd.CategoricalDtype) for c in CATEGORICAL)
    for plain, dictionary in zip(transform(scoring, stats), transform(as_dictionaries, stats), strict=True):
        assert torch.equal(plain.nan_to_num(-1), dictionary.nan_to_num(-1))
    # A chunk of a categorical column keeps every category: the codes still match.
    for plain, dictionary in zip(
        transform(scoring.iloc[2:], stats), transform(as_dictionaries.iloc[2:], stats), strict=True
    ):
        assert torch.equal(plain.nan_to_num(-1), dictionary.nan_to_num(-1))


def test_non_string_categories_are_compared_as_strings(training: pd.DataFrame) -> None:
    training["carrier"] = ["9", "10", "9", "11"]
    stats = fit_preprocessing(training)
    scoring = training.copy()
    scoring["carrier"] = pd.Categorical([9, 10, 12, 11])
    assert transform(scoring, stats)[1][:, 0].tolist() == [3, 1, 0, 2]  # "10" < "11" < "9"; 12 unseen


def test_a_missing_feature_column_is_named(training: pd.DataFrame) -> None:
    with pytest.raises(SpecError, match=r"feature columns \[.wind_gust.\] are missing"):
        transform(training.drop(columns=["wind_gust"]), fit_preprocessing(training))


def test_chunks_carry_the_same_tensors_as_one_transform(training: pd.DataFrame, tmp_path: Path) -> None:
    from airflow_mlops.training.tabular import transform_chunks

    stats = fit_preprocessing(training)
    scoring = rows(["UA", None, "ZZ", "AA", "DL"] * 9, ["JFK", "EWR", "EWR", "LGA", None] * 9, ["ATL"] * 45)
    scoring.loc[::3, "distance"] = np.nan
    scoring["temp"] = scoring["temp"].astype("Float64")  # a nullable column
    scoring.loc[1, "temp"] = pd.NA
    scoring.to_parquet(tmp_path / "rows.parquet")
    for frame in (scoring, read_rows(tmp_path / "rows.parquet")):
        whole = transform(frame, stats)
        chunks = [
            tuple(t.clone() for t in chunk.values()) for chunk in transform_chunks(frame, stats, chunk_rows=7)
        ]
        assert [len(c[0]) for c in chunks] == [7] * 6 + [3]
        for joined, one in zip((torch.cat([c[i] for c in chunks]) for i in range(2)), whole, strict=True):
            assert torch.equal(joined.nan_to_num(-1), one.nan_to_num(-1))
        assert whole[1][:5, 1].tolist() == [2, 1, 1, 3, 0]  # a missing origin -> 0
        assert torch.isnan(whole[0][1, NUMERIC.index("temp")])  # pd.NA -> NaN
    assert list(transform_chunks(scoring.iloc[:0], stats, chunk_rows=7)) == []
    with pytest.raises(SpecError, match="chunk_rows must be positive, got 0"):
        next(transform_chunks(scoring, stats, chunk_rows=0))


def test_a_numeric_feature_that_holds_text_is_named(training: pd.DataFrame) -> None:
    scoring = training.copy()
    scoring["distance"] = scoring["distance"].astype(object)
    scoring.loc[2, "distance"] = "far"
    with pytest.raises(SpecError, match=r"numeric feature 'distance' must hold numbers or nulls"):
        transform(scoring, fit_preprocessing(training))


def test_given_buffers_are_written_in_place_and_too_small_ones_replaced(training: pd.DataFrame) -> None:
    from airflow_mlops.training.tabular import chunk_buffers, transform_chunks

    stats = fit_preprocessing(training)
    scoring = rows(["UA", "AA", None] * 4, ["JFK"] * 12, ["ORD"] * 12)
    scoring["plane_year"] = scoring["plane_year"].astype("int8")  # columns torch views without a copy,
    scoring["hour"] = scoring["hour"].astype("float16")  # of other types,
    read_only = scoring["day"].to_numpy().copy()
    read_only.flags.writeable = False  # and one torch would warn about: copied by NumPy instead
    scoring["day"] = read_only
    expected = transform(scoring, stats)
    buffers = chunk_buffers(stats, 5)
    chunks = [tuple(t.clone() for t in c.values()) for c in transform_chunks(scoring, stats, 5, buffers)]
    assert buffers[0][NUMERIC.index("distance"), :2].tolist() == scoring["distance"].iloc[10:12].tolist()
    for joined, one in zip((torch.cat([c[i] for c in chunks]) for i in range(2)), expected, strict=True):
        assert torch.equal(joined, one)
    small = chunk_buffers(stats, 2)
    assert [len(c["numeric"]) for c in transform_chunks(scoring, stats, 5, small)] == [5, 5, 2]
    assert small[0].shape == (len(NUMERIC), 2)  # not written: too small for a chunk of 5


def test_a_scorer_called_from_several_threads_keeps_each_threads_chunks_apart(
    training: pd.DataFrame, tmp_path: Path
) -> None:
    import json
    from concurrent.futures import ThreadPoolExecutor

    from airflow_mlops.evaluation.scoring import Scorer

    stats = fit_preprocessing(training)
    torch.manual_seed(0)
    model = FlightDelayModel(
        num_numeric=len(NUMERIC),
        cardinalities=[len(stats["categorical"][c]) + 1 for c in CATEGORICAL],
        hidden=8,
        numeric_mean=[s["mean"] for s in stats["numeric"].values()],
        numeric_std=[s["std"] for s in stats["numeric"].values()],
    )
    torch.save(model.state_dict(), tmp_path / "model.pt")
    config = {"model": "flights.model:FlightDelayModel", "init": dict(model.hparams), "preprocessing": stats}
    (tmp_path / "config.json").write_text(json.dumps(config))
    frames = [rows(["UA", "AA", "DL"] * k, ["JFK", "EWR", "LGA"] * k, ["ORD"] * 3 * k) for k in (1, 40, 7)]
    for k, frame in enumerate(frames):
        frame["distance"] = frame["distance"] * (k + 1)
    expected = [Scorer(tmp_path, chunk_rows=16)(f) for f in frames]  # a fresh scorer per frame
    scorer = Scorer(tmp_path, chunk_rows=16)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: scorer(frames[i % 3]), range(60)))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, expected[i % 3])
    assert not np.allclose(expected[0], expected[2][:3])  # the frames' first rows score apart
