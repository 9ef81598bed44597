"""Suites as data: files in GX's layout, checked before any data is read; schema inference from a partition."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from airflow_mlops.data.suites import SuiteSpec, infer_suite, load_suite, save_suite
from airflow_mlops.data.validation import validate_partition
from airflow_mlops.exceptions import SuiteError
from tests.partitions import month_frame, parquet_bytes

ROOT = Path(__file__).resolve().parents[3]
NOT_NULL = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}


@pytest.mark.parametrize("name", ["flights_raw", "weather_raw"])
def test_the_committed_suites_load_and_build_in_gx(name: str) -> None:
    suite = load_suite(ROOT / "dags" / "suites" / f"{name}.yaml")
    assert suite.name == name
    assert suite.parameter_names() == {"year", "months"}
    assert len(suite.to_gx().expectations) == len(suite.expectations)


def test_json_and_yaml_round_trip(tmp_path: Path) -> None:
    suite = SuiteSpec(name="s", expectations=(NOT_NULL,), meta={"owner": "data"})
    for suffix in (".json", ".yaml", ".yml"):
        path = save_suite(suite, tmp_path / f"s{suffix}")
        loaded = load_suite(path)
        assert loaded.to_dict() == suite.to_dict() and loaded.sha256 == suite.sha256
    assert json.loads((tmp_path / "s.json").read_text())["expectations"] == [NOT_NULL]


def test_an_unknown_expectation_is_an_error_before_any_data_is_read(tmp_path: Path) -> None:
    # GX itself would log the unknown type and silently drop it from the suite.
    path = tmp_path / "typo.yaml"
    path.write_text(
        "name: typo\nexpectations:\n- type: expect_column_values_to_be_awesome\n  kwargs: {column: a}\n"
    )
    suite = load_suite(path)
    with pytest.raises(
        SuiteError,
        match=r"typo.yaml, expectation #0 .*unknown expectation type "
        r"'expect_column_values_to_be_awesome'",
    ):
        validate_partition(b"never read", "p.parquet", suite)


def test_bad_arguments_name_the_expectation_and_the_argument(tmp_path: Path) -> None:
    suite = SuiteSpec(
        name="s",
        source="s.yaml",
        expectations=(
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "min_vlaue": 1}},
        ),
    )
    with pytest.raises(
        SuiteError,
        match=r"s.yaml, expectation #0 \(expect_column_values_to_be_between\): "
        r"invalid arguments .*min_vlaue",
    ):
        suite.to_gx()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: s\nexpectations: []\n", "'expectations' is empty"),
        ("name: s\nexpectations: {a: 1}\n", "'expectations' must be a list"),
        (
            "expectations:\n- {type: expect_column_to_exist, kwargs: {column: a}}\n",
            "'name' must be a non-empty string",
        ),
        ("name: s\nexpectations:\n- {kwargs: {column: a}}\n", "'type' must name an expectation"),
        (
            "name: s\nexpectations:\n- {type: expect_column_to_exist, kwarg: {column: a}}\n",
            "unknown keys \\['kwarg'\\]",
        ),
        (
            "name: s\nexpectations:\n- {type: expect_column_to_exist, kwargs: [a]}\n",
            "'kwargs' must be a mapping",
        ),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just a list\n", "must be a mapping"),
    ],
)
def test_malformed_suite_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


def test_unsupported_or_missing_suite_files(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"unsupported file type '.toml'"):
        load_suite(tmp_path / "s.toml")
    with pytest.raises(SuiteError, match=r"cannot be read"):
        load_suite(tmp_path / "missing.json")


def test_inferred_suite_captures_types_nulls_ranges_domains_and_keys() -> None:
    frame = month_frame("flights", 1)
    suite = infer_suite(frame, "flights_inferred", source_uri="file:///lake/raw/flights/2013-01.parquet")
    by_rule = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in suite.expectations}

    assert by_rule[("expect_table_columns_to_match_ordered_list", None)]["column_list"] == list(frame.columns)
    assert by_rule[("expect_column_values_to_be_of_type", "time_hour")]["type_"] == "Timestamp"
    assert by_rule[("expect_column_values_to_be_of_type", "carrier")]["type_"] == "str"
    assert by_rule[("expect_column_values_to_be_of_type", "dep_delay")]["type_"] == "float64"
    assert ("expect_column_values_to_not_be_null", "flight_id") in by_rule
    assert ("expect_column_values_to_not_be_null", "dep_delay") not in by_rule  # cancelled flights
    assert by_rule[("expect_column_values_to_be_between", "dep_delay")] == {
        "column": "dep_delay",
        "min_value": frame["dep_delay"].min(),
        "max_value": frame["dep_delay"].max(),
    }
    assert by_rule[("expect_column_values_to_be_in_set", "origin")]["value_set"] == ["EWR", "JFK", "LGA"]
    assert (
        "expect_column_values_to_be_in_set",
        "tailnum",
    ) not in by_rule  # thousands of values: not a category
    assert ("expect_column_values_to_be_unique", "flight_id") in by_rule
    assert suite.meta["inferred_from"].endswith("2013-01.parquet") and suite.meta["rows"] == 27004

    # The inferred suite passes its own reference and is plain data that saves as a file.
    assert validate_partition(parquet_bytes(frame), "p.parquet", suite).report.success


def test_inferred_compound_key_and_bad_keys() -> None:
    weather = month_frame("weather", 1)
    suite = infer_suite(weather, "w", key_columns=["origin", "time_hour"])
    assert {
        "type": "expect_compound_columns_to_be_unique",
        "kwargs": {"column_list": ["origin", "time_hour"]},
    } in suite.expectations
    with pytest.raises(SuiteError, match=r"key_columns \['nope'\] are not columns"):
        infer_suite(weather, "w", key_columns=["nope"])
    with pytest.raises(SuiteError, match="has no rows"):
        infer_suite(pd.DataFrame({"a": []}), "empty")
