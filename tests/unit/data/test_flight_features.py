"""Flights feature tables: trailing statistics count only outcomes known before each day began."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flights.features import (
    TAXI_MARGIN_MINUTES,
    add_entity_keys,
    flight_outcomes,
    month_bounds,
    month_feature_tables,
    plane_features,
    trailing_statistics,
)
from flights.source import read_table
from tests.partitions import month_frame


def stamp(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_trailing_statistics_count_only_outcomes_known_before_the_day() -> None:
    outcomes = pd.DataFrame(
        {
            "carrier": ["AA"] * 4,
            "known_at": [
                stamp("2013-01-01 10:00"),
                stamp("2013-01-01 23:59"),
                stamp("2013-01-02 00:00"),
                stamp("2013-01-05 12:00"),
            ],
            "arr_delay": [0.0, 60.0, 120.0, 30.0],
            "late": [0.0, 1.0, 1.0, 1.0],
        }
    )
    days = pd.date_range("2013-01-01", "2013-01-10", freq="D", tz="UTC")

    stats = trailing_statistics(outcomes, "carrier", days, windows={"7d": 7}).set_index("event_timestamp")

    assert stats.loc[stamp("2013-01-01"), "carrier_flights_7d"] == 0  # nothing known before Jan 1 00:00
    assert np.isnan(stats.loc[stamp("2013-01-01"), "carrier_delay_rate_7d"])
    # Jan 2 00:00: the two outcomes of Jan 1; the one known exactly at midnight is not yet counted.
    assert stats.loc[
        stamp("2013-01-02"), ["carrier_flights_7d", "carrier_delay_rate_7d", "carrier_mean_arr_delay_7d"]
    ].tolist() == [2, 0.5, 30.0]
    assert stats.loc[stamp("2013-01-03"), "carrier_flights_7d"] == 3
    assert stats.loc[stamp("2013-01-06"), "carrier_flights_7d"] == 4
    # The window slides: Jan 9 00:00 covers [Jan 2, Jan 9), so the two Jan 1 outcomes are gone.
    assert stats.loc[stamp("2013-01-09"), ["carrier_flights_7d", "carrier_mean_arr_delay_7d"]].tolist() == [
        2,
        75.0,
    ]


def test_an_outcome_is_known_only_once_the_flight_has_landed() -> None:
    flights = month_frame("flights", 1).head(50)
    outcomes = flight_outcomes(flights)
    landed = flights[flights["arr_delay"].notna()]
    expected = landed["time_hour"] + pd.to_timedelta(
        landed["minute"] + landed["dep_delay"] + landed["air_time"] + TAXI_MARGIN_MINUTES, unit="min"
    )
    assert (outcomes["known_at"].to_numpy() == expected.to_numpy()).all()
    assert (outcomes["known_at"].to_numpy() > landed["time_hour"].to_numpy()).all()


def test_cancelled_flights_have_no_outcome() -> None:
    flights = month_frame("flights", 2)
    cancelled = flights["arr_delay"].isna().sum()
    assert cancelled > 0 and len(flight_outcomes(flights)) == len(flights) - cancelled


def test_real_carrier_statistics_match_a_direct_count() -> None:
    january, february = month_frame("flights", 1), month_frame("flights", 2)
    tables = month_feature_tables("2013-02", [january, february], month_frame("weather", 2))
    outcomes = flight_outcomes(pd.concat([january, february]))

    stats = tables["carrier_stats"]
    assert len(stats) == 28 * stats["carrier"].nunique()
    for _, row in stats.sample(40, random_state=3).iterrows():
        day = row["event_timestamp"]
        mine = outcomes[(outcomes["carrier"] == row["carrier"]) & (outcomes["known_at"] < day)]
        window = mine[mine["known_at"] >= day - pd.Timedelta(days=30)]
        assert row["carrier_flights_30d"] == len(window)
        if len(window):
            assert row["carrier_delay_rate_30d"] == pytest.approx(window["late"].mean())
            assert row["carrier_mean_arr_delay_30d"] == pytest.approx(window["arr_delay"].mean())


def test_month_tables_are_stamped_inside_their_month() -> None:
    tables = month_feature_tables(
        "2013-02", [month_frame("flights", 1), month_frame("flights", 2)], month_frame("weather", 2)
    )
    start, end = month_bounds("2013-02")
    for name in ("carrier_stats", "route_stats"):
        assert tables[name]["event_timestamp"].between(start, end, inclusive="left").all()
    assert len(tables["weather_hourly"]) == len(month_frame("weather", 2))
    assert set(tables["route_stats"]["route"]) >= {"JFK-LAX", "LGA-ATL"}


def test_planes_and_entity_keys() -> None:
    planes = plane_features(read_table("planes"))
    assert planes["tailnum"].is_unique and set(planes.columns) == {
        "tailnum",
        "plane_year",
        "plane_seats",
        "plane_engines",
        "event_timestamp",
    }
    rows = add_entity_keys(month_frame("flights", 1).head(3))
    assert rows["route"].tolist() == (rows["origin"] + "-" + rows["dest"]).tolist()
    assert (rows["event_timestamp"] == rows["time_hour"]).all()
    with pytest.raises(ValueError, match="period '2013-13': must be YYYY-MM"):
        month_bounds("2013-13")
