"""Validating real partitions with the committed flights suite: twelve corruptions caught, row-level split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops.data.suites import SuiteSpec, load_suite
from airflow_mlops.data.validation import ValidationReport, render_report_html, validate_partition
from airflow_mlops.exceptions import SuiteError
from tests.partitions import CORRUPTIONS, month_frame, parquet_bytes

ROOT = Path(__file__).resolve().parents[3]
JANUARY = {"year": 2013, "months": [1]}


@pytest.fixture(scope="module")
def flights_suite() -> SuiteSpec:
    return load_suite(ROOT / "dags" / "suites" / "flights_raw.yaml")


@pytest.fixture(scope="module")
def january() -> bytes:
    return parquet_bytes(month_frame("flights", 1))


def test_a_real_month_passes_and_the_report_records_what_was_checked(flights_suite, january) -> None:
    report = validate_partition(
        january, "file:///lake/2013-01.parquet", flights_suite, parameters=JANUARY
    ).report

    assert report.success and report.rows == 27004 and report.failures == []
    assert len(report.outcomes) == len(flights_suite.expectations)
    assert report.suite == "flights_raw" and report.parameters == JANUARY
    assert report.profile["columns"]["carrier"]["distinct"] == 16
    assert ValidationReport.from_json(report.to_json()) == report


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_each_corruption_fails_with_a_message_naming_column_rule_and_values(
    corruption, flights_suite
) -> None:
    damage, fragments = CORRUPTIONS[corruption]
    data = damage(month_frame("flights", 1))

    report = validate_partition(
        data, "file:///lake/2013-01.parquet", flights_suite, parameters=JANUARY
    ).report

    assert not report.success
    message = report.failure_message("file:///lake/quarantine/x")
    for fragment in fragments:
        assert fragment in message, f"{corruption}: {fragment!r} missing from:\n{message}"
    assert message.startswith("partition file:///lake/2013-01.parquet failed suite 'flights_raw'")
    assert "Quarantined with its report at file:///lake/quarantine/x" in message


def test_the_message_quotes_samples_and_counts(flights_suite) -> None:
    data = CORRUPTIONS["unknown_category"][0](month_frame("flights", 1))
    report = validate_partition(data, "p.parquet", flights_suite, parameters=JANUARY).report

    (failure,) = report.failures
    assert failure.column == "carrier" and failure.unexpected_count == 28  # every 997th of 27,004 rows
    assert failure.sample == ("ZZ",) * 5
    assert "value_set=['9E', 'AA', 'AS', 'B6', 'DL', 'EV', ... (16 values)]" in failure.rule


def test_a_huge_value_is_cut_short_in_the_report_and_the_message(flights_suite) -> None:
    frame = month_frame("flights", 1)
    frame["carrier"] = frame["carrier"].astype(object)
    frame.loc[frame.index[:3], "carrier"] = "Z" * 1_000_000  # a 1 MB category in three rows
    report = validate_partition(parquet_bytes(frame), "p.parquet", flights_suite, parameters=JANUARY).report

    message = report.failure_message("q")
    (failure,) = [f for f in report.failures if f.column == "carrier"]
    assert failure.sample[0] == "Z" * 200 + "... (1000000 characters)"
    assert len(message) < 5000 and len(report.to_json()) < 200_000  # nothing copied whole


def test_revalidating_the_same_bytes_gives_the_same_report(flights_suite, january) -> None:
    first = validate_partition(january, "p.parquet", flights_suite, parameters=JANUARY).report
    second = validate_partition(january, "p.parquet", flights_suite, parameters=JANUARY).report
    assert first.to_json() == second.to_json()
    assert render_report_html(first) == render_report_html(second)


def test_row_level_mode_splits_when_only_rows_fail_and_under_the_bound(flights_suite) -> None:
    data = CORRUPTIONS["unknown_category"][0](month_frame("flights", 1))

    validation = validate_partition(
        data, "p.parquet", flights_suite, parameters=JANUARY, max_invalid_fraction=0.01
    )

    report = validation.report
    assert report.success and report.row_split["accepted"]
    assert report.row_split == {
        "accepted": True,
        "bound": 0.01,
        "invalid_rows": 28,
        "valid_rows": 26976,
        "invalid_fraction": round(28 / 27004, 6),
        "reason": "",
    }
    assert len(validation.valid_rows) + len(validation.invalid_rows) == 27004
    assert set(validation.invalid_rows["carrier"]) == {"ZZ"} and "ZZ" not in set(
        validation.valid_rows["carrier"]
    )


def test_row_level_mode_refuses_above_the_bound(flights_suite) -> None:
    data = CORRUPTIONS["unknown_category"][0](month_frame("flights", 1))
    report = validate_partition(
        data, "p.parquet", flights_suite, parameters=JANUARY, max_invalid_fraction=0.0001
    ).report
    assert not report.success and not report.row_split["accepted"]
    assert "invalid fraction 0.0010 exceeds the bound 0.0001" in report.failure_message()


def test_row_level_mode_refuses_table_level_failures(flights_suite) -> None:
    data = CORRUPTIONS["missing_column"][0](month_frame("flights", 1))
    report = validate_partition(
        data, "p.parquet", flights_suite, parameters=JANUARY, max_invalid_fraction=0.5
    ).report
    assert not report.success
    assert "concern the whole table" in report.row_split["reason"]


def test_february_weather_has_one_impossible_wind_speed_split_off() -> None:
    suite = load_suite(ROOT / "dags" / "suites" / "weather_raw.yaml")
    data = parquet_bytes(month_frame("weather", 2))

    whole = validate_partition(data, "w.parquet", suite, parameters={"year": 2013, "months": [2]}).report
    assert not whole.success
    assert [f.describe() for f in whole.failures] == [
        "column 'wind_speed': expect_column_values_to_be_between(min_value=0.0, max_value=150.0): "
        "1 unexpected (0.05%), e.g. [1048.36058]"
    ]

    split = validate_partition(
        data, "w.parquet", suite, parameters={"year": 2013, "months": [2]}, max_invalid_fraction=0.01
    )
    assert split.report.success and split.invalid_rows["wind_speed"].tolist() == [1048.36058]


def test_distribution_check_reports_drift_and_can_fail_on_it(flights_suite, january) -> None:
    from airflow_mlops.monitoring.statistics import profile_frame

    reference = profile_frame(month_frame("flights", 1))
    shifted = month_frame("flights", 1)
    shifted["dep_delay"] = shifted["dep_delay"] + 60

    kwargs = dict(parameters=JANUARY, reference_profile=reference, drift_columns=["dep_delay", "carrier"])
    reported = validate_partition(parquet_bytes(shifted), "p.parquet", flights_suite, **kwargs).report
    assert reported.success and reported.drift_checked
    assert [d["column"] for d in reported.drifted] == ["dep_delay"]

    failed = validate_partition(
        parquet_bytes(shifted), "p.parquet", flights_suite, fail_on_drift=True, **kwargs
    ).report
    assert not failed.success
    assert "drift from the reference: dep_delay psi=" in failed.failure_message()

    same = validate_partition(january, "p.parquet", flights_suite, fail_on_drift=True, **kwargs).report
    assert same.success and same.drifted == []


def test_missing_suite_parameter_is_an_error_before_reading(flights_suite) -> None:
    with pytest.raises(SuiteError, match=r"needs parameters \['months', 'year'\] that were not given"):
        validate_partition(b"not even parquet", "p.parquet", flights_suite, parameters={})


def test_report_html_lists_failures_for_people(flights_suite) -> None:
    data = CORRUPTIONS["out_of_range"][0](month_frame("flights", 1))
    report = validate_partition(data, "p.parquet", flights_suite, parameters=JANUARY).report
    page = render_report_html(report, location="file:///q")
    assert "FAILED: flights_raw" in page and "expect_column_values_to_be_between" in page
    assert "Quarantined at" in page and "-100" in page
    json.loads(report.to_json())


def test_row_level_mode_splits_by_position_when_the_index_repeats_labels(flights_suite) -> None:
    import io

    import numpy as np

    frame = month_frame("flights", 1)
    frame.loc[frame.index[::997], "carrier"] = "ZZ"  # 28 bad rows
    frame.index = np.arange(len(frame)) // 2  # each bad row shares its label with a good one
    buffer = io.BytesIO()
    frame.to_parquet(buffer)  # the index travels with the file
    validation = validate_partition(
        buffer.getvalue(), "p.parquet", flights_suite, parameters=JANUARY, max_invalid_fraction=0.01
    )
    assert validation.report.row_split["invalid_rows"] == 28
    assert validation.report.row_split["valid_rows"] == 26976
    assert len(validation.valid_rows) == 26976 and len(validation.invalid_rows) == 28
    assert set(validation.invalid_rows["carrier"]) == {"ZZ"}
    assert "ZZ" not in set(validation.valid_rows["carrier"])
