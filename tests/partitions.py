"""Real partitions for validation tests: a month as the extractor writes it, and twelve ways to damage it."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache

import pandas as pd

from flights.source import read_table


@cache
def _table(table: str) -> pd.DataFrame:
    frame = read_table(table)
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True).dt.as_unit("us")
    return frame


def month_frame(table: str, month: int) -> pd.DataFrame:
    """One month of ``table`` with the extractor's dtypes (tz-aware UTC ``time_hour``)."""
    frame = _table(table)
    return frame[frame["month"] == month].reset_index(drop=True).copy()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _every(frame: pd.DataFrame, n: int) -> pd.Index:
    return frame.index[::n]


def _set(column: str, value: object, n: int) -> Callable[[pd.DataFrame], bytes]:
    def corrupt(frame: pd.DataFrame) -> bytes:
        frame = frame.copy()
        frame.loc[_every(frame, n), column] = value
        return parquet_bytes(frame)

    return corrupt


def _null_key(frame: pd.DataFrame) -> bytes:
    frame = frame.copy()
    frame["flight_id"] = frame["flight_id"].astype("Int64")
    frame.loc[_every(frame, 500), "flight_id"] = pd.NA
    return parquet_bytes(frame)


def _duplicated_keys(frame: pd.DataFrame) -> bytes:
    frame = frame.copy()
    frame.loc[1:5, "flight_id"] = frame.loc[0, "flight_id"]
    return parquet_bytes(frame)


#: name -> (damage a January flights frame into Parquet bytes, fragments the failure must name)
CORRUPTIONS: dict[str, tuple[Callable[[pd.DataFrame], bytes], tuple[str, ...]]] = {
    "null_key": (_null_key, ("'flight_id'", "expect_column_values_to_not_be_null", "unexpected")),
    "out_of_range": (
        _set("distance", -100, 700),
        ("'distance'", "expect_column_values_to_be_between", "-100"),
    ),
    "wrong_dtype": (
        lambda f: parquet_bytes(f.assign(dep_delay=f["dep_delay"].astype(str))),
        ("'dep_delay'", "expect_column_values_to_be_of_type", "float64"),
    ),
    "unknown_category": (
        _set("carrier", "ZZ", 997),
        ("'carrier'", "expect_column_values_to_be_in_set", "'ZZ'"),
    ),
    "missing_column": (
        lambda f: parquet_bytes(f.drop(columns=["dest"])),
        ("expect_table_columns_to_match_ordered_list", "missing columns ['dest']", "does not exist"),
    ),
    "unexpected_column": (
        lambda f: parquet_bytes(f.assign(secret="x")),
        ("expect_table_columns_to_match_ordered_list", "unexpected columns ['secret']"),
    ),
    "duplicated_keys": (
        _duplicated_keys,
        ("'flight_id'", "expect_column_values_to_be_unique", "6 unexpected"),
    ),
    "empty_partition": (
        lambda f: parquet_bytes(f.iloc[:0]),
        ("expect_table_row_count_to_be_between", "observed 0"),
    ),
    "truncated_parquet": (
        lambda f: parquet_bytes(f)[: len(parquet_bytes(f)) // 2],
        ("truncated Parquet file",),
    ),
    "not_parquet": (lambda f: f.head(20).to_csv(index=False).encode(), ("not a Parquet file", "b'flig'")),
    "naive_timestamps": (
        lambda f: parquet_bytes(f.assign(time_hour=f["time_hour"].dt.tz_localize(None))),
        ("'time_hour'", "expect_column_values_to_be_of_type", "type_='Timestamp'", "observed datetime64"),
    ),
    "outside_month": (_set("month", 2, 1000), ("'month'", "expect_column_values_to_be_in_set", "unexpected")),
}
