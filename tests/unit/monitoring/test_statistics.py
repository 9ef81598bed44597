"""Profiles and divergences on real weather and flights: seasons drift, bootstrap samples do not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.monitoring.statistics import (
    compare_profiles,
    jensen_shannon_distance,
    ks_distance,
    profile_frame,
    psi,
    summarize_profile,
)
from tests.partitions import month_frame

WEATHER = ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"]


def test_profile_is_small_json_with_kinds_nulls_percentiles_and_frequencies() -> None:
    frame = month_frame("flights", 1)
    profile = profile_frame(frame)

    assert profile["rows"] == 27004
    columns = profile["columns"]
    assert (
        columns["dep_delay"]["kind"] == "numeric"
        and columns["dep_delay"]["nulls"] == frame["dep_delay"].isna().sum()
    )
    assert len(columns["dep_delay"]["percentiles"]) == 101
    assert columns["dep_delay"]["percentiles"][50] == pytest.approx(frame["dep_delay"].median())
    assert columns["origin"]["frequencies"] == frame["origin"].value_counts().to_dict()
    assert columns["tailnum"]["distinct"] > 50 and "__other__" in columns["tailnum"]["frequencies"]
    assert columns["time_hour"]["kind"] == "datetime"
    assert len(json.dumps(profile)) < 60_000
    summary = summarize_profile(profile)
    assert summary["carrier"] == {"nulls": 0, "distinct": 16} and set(summary["distance"]) == {
        "nulls",
        "min",
        "max",
        "mean",
    }


def test_winter_and_summer_weather_drift() -> None:
    january, july = profile_frame(month_frame("weather", 1)), profile_frame(month_frame("weather", 7))
    drifted = {d.column: d for d in compare_profiles(january, july, columns=WEATHER) if d.drifted}
    assert {"temp", "dewp"} <= set(drifted)
    assert drifted["temp"].value > 2 and drifted["temp"].ks > 0.8


def test_bootstrap_samples_of_one_month_do_not_drift() -> None:
    weather = month_frame("weather", 1)
    reference = profile_frame(weather)
    rng = np.random.default_rng(7)
    for _ in range(5):
        sample = weather.sample(len(weather), replace=True, random_state=rng.integers(1 << 31))
        divergences = compare_profiles(reference, profile_frame(sample), columns=[*WEATHER, "origin"])
        assert [d.describe() for d in divergences if d.drifted] == []


def test_categorical_drift_names_new_categories() -> None:
    flights = month_frame("flights", 1)
    changed = flights.assign(carrier=np.where(flights.index % 3 == 0, "ZZ", flights["carrier"]))
    (divergence,) = compare_profiles(profile_frame(flights), profile_frame(changed), columns=["carrier"])
    assert divergence.drifted and divergence.metric == "js" and divergence.new_categories == ("ZZ",)
    assert "new categories ['ZZ']" in divergence.describe()


def test_identical_data_has_zero_divergence_and_thresholds_can_be_overridden() -> None:
    profile = profile_frame(month_frame("weather", 3))
    divergences = compare_profiles(profile, profile, columns=WEATHER, thresholds={"temp": 0.0})
    assert all(d.value == pytest.approx(0.0, abs=1e-12) and not d.drifted for d in divergences)
    assert next(d for d in divergences if d.column == "temp").threshold == 0.0


def test_a_column_unknown_to_the_reference_is_an_error_and_one_gone_from_the_data_is_drift() -> None:
    profile = profile_frame(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
    with pytest.raises(KeyError, match=r"columns \['c'\] are not in the reference profile"):
        compare_profiles(profile, profile, columns=["c"])
    without_b = profile_frame(pd.DataFrame({"a": [1.0, 2.0]}))
    (divergence,) = compare_profiles(profile, without_b, columns=["b"])
    assert (divergence.metric, divergence.drifted) == ("missing", True)


def test_divergence_functions_on_known_distributions() -> None:
    grid = np.linspace(0, 1, 101)
    assert ks_distance(list(grid), list(grid + 2)) == 1.0
    assert ks_distance(list(grid), list(grid)) == 0.0
    assert psi(list(grid), list(grid + 0.5)) > 1.0
    assert jensen_shannon_distance({"a": 1}, {"b": 1}) == pytest.approx(1.0)
    assert jensen_shannon_distance({"a": 5, "b": 5}, {"a": 1, "b": 1}) == pytest.approx(0.0)


def test_a_column_with_no_values_on_one_side_is_maximal_drift() -> None:
    reference = profile_frame(month_frame("weather", 1))
    empty = profile_frame(month_frame("weather", 1).iloc[:0])
    divergences = compare_profiles(reference, empty, columns=["temp", "origin"])
    assert [(d.metric, d.value, d.drifted) for d in divergences] == [("no_values", 1.0, True)] * 2
    json.dumps([d.to_dict() for d in divergences], allow_nan=False)
