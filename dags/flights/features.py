"""Feature tables of the flights use case, built from validated partitions month by month (no Airflow import).

Each builder returns a frame with the entity key, ``event_timestamp`` (when the values became
known) and the feature columns, ready to be a Feast file source:

- ``weather_hourly``: the hourly observation at each origin airport.
- ``carrier_stats`` and ``route_stats``: trailing 7- and 30-day delay statistics, one row per key
  and UTC day. The row stamped day ``d`` 00:00 counts only flights whose outcome was known before
  ``d`` 00:00. A flight's outcome is known when it has landed: scheduled departure + departure
  delay + air time + ``TAXI_MARGIN``. A flight scheduled at ``t >= d`` is joined (point in time)
  to a row stamped at or before ``t``, so neither its own outcome nor a later one is ever in it.
- ``plane_attributes``: the planes table (static, stamped ``PLANES_AS_OF``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from airflow_mlops.exceptions import MLOpsConfigError

if TYPE_CHECKING:
    import pandas as pd

WEATHER_COLUMNS = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")
#: Window name -> length in days.
WINDOWS: Mapping[str, int] = {"7d": 7, "30d": 30}
#: Taxi-in and reporting time added to departure + air time before an outcome counts as known.
TAXI_MARGIN_MINUTES = 30
PLANES_AS_OF = datetime(2013, 1, 1, tzinfo=UTC)
LATE_MINUTES = 15


def month_bounds(period: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``"2013-03"`` -> (2013-03-01 00:00 UTC, 2013-04-01 00:00 UTC)."""
    import pandas as pd

    try:
        start = pd.Timestamp(f"{period}-01", tz="UTC")
    except ValueError:
        raise MLOpsConfigError(f"period {period!r}: must be YYYY-MM") from None
    return start, start + pd.offsets.MonthBegin(1)


def weather_features(weather: pd.DataFrame) -> pd.DataFrame:
    """Hourly weather per origin; ``event_timestamp`` is the observation hour."""
    frame = weather[["origin", "time_hour", *WEATHER_COLUMNS]].rename(
        columns={"time_hour": "event_timestamp"}
    )
    frame = frame.astype({c: "float64" for c in WEATHER_COLUMNS})
    return frame.sort_values(["origin", "event_timestamp"]).reset_index(drop=True)


def flight_outcomes(flights: pd.DataFrame) -> pd.DataFrame:
    """Flights that arrived, with when their outcome became known; cancelled and diverted ones have none."""
    import pandas as pd

    landed = flights[
        flights["arr_delay"].notna() & flights["dep_delay"].notna() & flights["air_time"].notna()
    ]
    minutes = landed["minute"] + landed["dep_delay"] + landed["air_time"] + TAXI_MARGIN_MINUTES
    return pd.DataFrame(
        {
            "carrier": landed["carrier"].to_numpy(),
            "route": route_key(landed["origin"], landed["dest"]).to_numpy(),
            "known_at": (landed["time_hour"] + pd.to_timedelta(minutes, unit="min")).to_numpy(),
            "arr_delay": landed["arr_delay"].astype("float64").to_numpy(),
            "late": (landed["arr_delay"] > LATE_MINUTES).astype("float64").to_numpy(),
        }
    )


def route_key(origin: pd.Series, dest: pd.Series) -> pd.Series:
    """The route entity's key, e.g. ``JFK-LAX``."""
    return origin.astype(str) + "-" + dest.astype(str)


def trailing_statistics(
    outcomes: pd.DataFrame,
    key: str,
    days: pd.DatetimeIndex,
    windows: Mapping[str, int] = WINDOWS,
    prefix: str | None = None,
) -> pd.DataFrame:
    """For each key and day ``d``: count, late rate and mean arrival delay over outcomes known in
    ``[d - window, d)``. Keys with no outcome in a window get count 0 and NULL rate and mean."""
    import pandas as pd

    prefix = prefix or key
    boundaries = days.as_unit("ns").asi8
    pieces = []
    for value, group in outcomes.sort_values("known_at").groupby(key, sort=True):
        known = pd.DatetimeIndex(group["known_at"]).as_unit("ns").asi8
        late = np.concatenate([[0.0], np.cumsum(group["late"].to_numpy())])
        delay = np.concatenate([[0.0], np.cumsum(group["arr_delay"].to_numpy())])
        hi = np.searchsorted(known, boundaries, side="left")
        columns: dict[str, object] = {key: value, "event_timestamp": days}
        for name, length in windows.items():
            lo = np.searchsorted(known, boundaries - np.int64(length * 86_400 * 10**9), side="left")
            count = hi - lo
            with np.errstate(invalid="ignore", divide="ignore"):
                columns[f"{prefix}_flights_{name}"] = count.astype("int64")
                columns[f"{prefix}_delay_rate_{name}"] = np.where(
                    count > 0, (late[hi] - late[lo]) / count, np.nan
                )
                columns[f"{prefix}_mean_arr_delay_{name}"] = np.where(
                    count > 0, (delay[hi] - delay[lo]) / count, np.nan
                )
        pieces.append(pd.DataFrame(columns))
    if not pieces:
        return pd.DataFrame(columns=[key, "event_timestamp"])
    return pd.concat(pieces, ignore_index=True)


def plane_features(planes: pd.DataFrame) -> pd.DataFrame:
    """Static plane attributes keyed by tail number."""
    frame = planes[["tailnum", "year", "seats", "engines"]].rename(
        columns={"year": "plane_year", "seats": "plane_seats", "engines": "plane_engines"}
    )
    frame = frame.astype({"plane_year": "float64", "plane_seats": "float64", "plane_engines": "float64"})
    return frame.assign(event_timestamp=PLANES_AS_OF).reset_index(drop=True)


def month_feature_tables(
    period: str, flights: Iterable[pd.DataFrame], weather: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The feature rows stamped within month ``period``.

    ``flights`` are the validated partitions of this month and of the month before (the 30-day
    windows reach back into it); ``weather`` is this month's. Rows are stamped from the month's
    first UTC midnight up to (not including) the next month's, so consecutive months never
    write the same key and timestamp twice.
    """
    import pandas as pd

    start, end = month_bounds(period)
    days = pd.date_range(start, end, freq="D", inclusive="left", tz="UTC")
    outcomes = flight_outcomes(pd.concat(list(flights), ignore_index=True))
    return {
        # Weather partitions are local months and never overlap: every hour is kept as is.
        "weather_hourly": weather_features(weather),
        "carrier_stats": trailing_statistics(outcomes, "carrier", days),
        "route_stats": trailing_statistics(outcomes, "route", days, windows={"30d": 30}),
    }


def add_entity_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """Entity rows for the flights feature service: ``event_timestamp`` (the scheduled departure
    hour: when the prediction is made) and the ``route`` key, added to a dataset split."""
    return frame.assign(event_timestamp=frame["time_hour"], route=route_key(frame["origin"], frame["dest"]))
