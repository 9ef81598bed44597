"""The flights feature repository: entities, feature views and the feature service `flight_delay_v1`.

Feature tables are Parquet folders under ``$MLOPS_FEATURES_URI`` (one file per month), written by
``flights.features`` from validated partitions; every row carries the
``event_timestamp`` at which its values became known, so point-in-time joins never leak.
"""

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64

FEATURES = os.environ.get("MLOPS_FEATURES_URI", "").removeprefix("file://").rstrip("/")
if not FEATURES:
    raise RuntimeError("MLOPS_FEATURES_URI is not set: use FeastHook, or export it before running `feast`")

origin = Entity(name="origin", join_keys=["origin"], value_type=ValueType.STRING,
                description="Departure airport (EWR, JFK, LGA)")
carrier = Entity(name="carrier", join_keys=["carrier"], value_type=ValueType.STRING,
                 description="Two-letter airline code")
plane = Entity(name="plane", join_keys=["tailnum"], value_type=ValueType.STRING, description="Tail number")
route = Entity(name="route", join_keys=["route"], value_type=ValueType.STRING,
               description="Origin and destination, e.g. JFK-LAX")


def _source(name: str) -> FileSource:
    # One Parquet file per month in the table's folder; DuckDB reads the glob as one table.
    return FileSource(name=f"{name}_source", path=f"{FEATURES}/{name}/*.parquet", file_format=ParquetFormat(),
                      timestamp_field="event_timestamp")


weather_hourly = FeatureView(
    name="weather_hourly",
    entities=[origin],
    ttl=timedelta(hours=3),  # an observation older than 3 hours is no longer the weather
    schema=[Field(name=c, dtype=Float64) for c in
            ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")],
    source=_source("weather_hourly"),
    description="Hourly weather observed at the origin airport",
)

carrier_stats = FeatureView(
    name="carrier_stats",
    entities=[carrier],
    ttl=timedelta(days=2),
    schema=[Field(name=f"carrier_{stat}_{w}", dtype=Int64 if stat == "flights" else Float64)
            for w in ("7d", "30d") for stat in ("flights", "delay_rate", "mean_arr_delay")],
    source=_source("carrier_stats"),
    description="Trailing delay statistics of the carrier, from flights landed before the day began",
)

route_stats = FeatureView(
    name="route_stats",
    entities=[route],
    ttl=timedelta(days=2),
    schema=[Field(name="route_flights_30d", dtype=Int64), Field(name="route_delay_rate_30d", dtype=Float64),
            Field(name="route_mean_arr_delay_30d", dtype=Float64)],
    source=_source("route_stats"),
    description="Trailing 30-day delay statistics of the route, from flights landed before the day began",
)

plane_attributes = FeatureView(
    name="plane_attributes",
    entities=[plane],
    ttl=timedelta(days=3650),
    schema=[Field(name="plane_year", dtype=Float64), Field(name="plane_seats", dtype=Float64),
            Field(name="plane_engines", dtype=Float64)],
    source=_source("plane_attributes"),
    description="Static attributes of the plane (FAA registry)",
)

flight_delay_v1 = FeatureService(
    name="flight_delay_v1",
    features=[weather_hourly, carrier_stats, route_stats, plane_attributes],
    description="Features of the flight-delay model, version 1",
)
