"""Rows given as mappings (a request's JSON rows) go to the network without a DataFrame
(``record_columns``) and give the same tensors, bit for bit, as the DataFrame path; a column that
is not plain (booleans, mixed kinds, a missing field) is left to the DataFrame path."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch

from airflow_mlops.training.tabular import (
    feature_columns,
    fill_chunks,
    record_columns,
    vocabulary_positions,
)

PREPROCESSING = {
    "numeric": {
        "whole": {"mean": 0.0, "std": 1.0},
        "real": {"mean": 0.0, "std": 1.0},
        "sparse": {"mean": 0.0, "std": 1.0},
    },
    "categorical": {"carrier": ["AA", "DL", "UA"], "gate": ["1", "12", "7"]},
}
ROWS: list[dict[str, Any]] = [
    {"whole": 1, "real": 0.1, "sparse": 3, "carrier": "UA", "gate": 12},
    {"whole": 2**40 + 1, "real": 2, "sparse": None, "carrier": None, "gate": 7},
    {"whole": -7, "real": None, "sparse": 5, "carrier": "ZZ", "gate": 99},  # unseen values: 0
    {"whole": 0, "real": 1e300, "sparse": 0.5, "carrier": "AA", "gate": 1},  # past float32: inf
]


def tensors(columns: Any, rows: int) -> dict[str, torch.Tensor]:
    (chunk,) = fill_chunks(columns, rows, PREPROCESSING, chunk_rows=rows)
    return {name: tensor.clone() for name, tensor in chunk.items()}


def through_a_frame(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    frame = pd.DataFrame.from_records(rows, columns=list(rows[0]))
    return tensors(feature_columns(frame, PREPROCESSING), len(rows))


@pytest.mark.parametrize(
    "rows", [ROWS, ROWS[:1], ROWS[1:3], [ROWS[1]]], ids=["four", "one", "nulls", "a null column"]
)
def test_plain_rows_give_the_dataframe_paths_tensors_bit_for_bit(rows: list[dict[str, Any]]) -> None:
    columns = record_columns(rows, PREPROCESSING, vocabulary_positions(PREPROCESSING))
    assert columns is not None
    direct, expected = tensors(columns, len(rows)), through_a_frame(rows)
    for name in ("numeric", "categorical"):
        assert direct[name].dtype == expected[name].dtype
        assert torch.equal(direct[name].nan_to_num(-1.0), expected[name].nan_to_num(-1.0)), name
        assert torch.equal(direct[name].isnan(), expected[name].isnan())
    if rows is ROWS:  # the values themselves, as the module docstring of training.tabular says
        assert direct["categorical"].tolist() == [[3, 2], [0, 3], [0, 0], [1, 1]]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"whole": True}, "a boolean among numbers"),
        ({"real": "0.5"}, "a string in a numeric column"),
        ({"carrier": 3}, "a number among category strings"),
        ({"gate": None}, "whole-number categories with a null (pandas makes them '7.0')"),
        ({"gate": 1.5}, "a float category"),
        ({"whole": 2**70}, "a whole number past int64"),
    ],
)
def test_a_column_that_is_not_plain_is_left_to_the_dataframe_path(change: dict[str, Any], why: str) -> None:
    rows = [dict(ROWS[0]), {**ROWS[1], **change}]
    assert record_columns(rows, PREPROCESSING, vocabulary_positions(PREPROCESSING)) is None, why


def test_a_missing_field_is_left_to_the_dataframe_path() -> None:
    missing = [{k: v for k, v in ROWS[0].items() if k != "real"}]
    assert record_columns(missing, PREPROCESSING, vocabulary_positions(PREPROCESSING)) is None
