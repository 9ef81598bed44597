"""The flights feature repository on a real Feast store: point-in-time joins, online stores, bad input."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from airflow_mlops.exceptions import FeatureStoreError
from airflow_mlops.hooks.feast import FeastHook
from flights.features import (
    add_entity_keys,
    flight_outcomes,
    month_feature_tables,
    plane_features,
)
from flights.source import read_table
from tests.partitions import month_frame

pytestmark = pytest.mark.integration
SERVICE = "flight_delay_v1"


def write_tables(features: Path, tables: dict[str, pd.DataFrame], period: str) -> None:
    for name, frame in tables.items():
        (features / name).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(features / name / f"{period}.parquet", index=False)


@pytest.fixture
def real_store(lake: Path) -> FeastHook:
    """The flights repository over January and February 2013, applied."""
    features = lake / "features"
    january, february = month_frame("flights", 1), month_frame("flights", 2)
    write_tables(features, month_feature_tables("2013-01", [january], month_frame("weather", 1)), "2013-01")
    write_tables(
        features, month_feature_tables("2013-02", [january, february], month_frame("weather", 2)), "2013-02"
    )
    write_tables(features, {"plane_attributes": plane_features(read_table("planes"))}, "planes")
    hook = FeastHook()
    hook.apply()
    return hook


@pytest.fixture
def constructed_store(lake: Path) -> FeastHook:
    """Hand-made feature rows where a later value exists and must not be joined."""
    features = lake / "features"
    t = lambda text: pd.Timestamp(text, tz="UTC")  # noqa: E731
    carrier = pd.DataFrame(
        {
            "carrier": ["AA", "AA", "UA"],
            "event_timestamp": [t("2013-01-01"), t("2013-01-02"), t("2013-01-01")],
            "carrier_flights_7d": [10, 20, 5],
            "carrier_delay_rate_7d": [0.1, 0.9, 0.5],
            "carrier_mean_arr_delay_7d": [1.0, 9.0, 5.0],
            "carrier_flights_30d": [10, 20, 5],
            "carrier_delay_rate_30d": [0.1, 0.9, 0.5],
            "carrier_mean_arr_delay_30d": [1.0, 9.0, 5.0],
        }
    )
    weather = pd.DataFrame(
        {
            "origin": ["JFK", "JFK"],
            "event_timestamp": [t("2013-01-01 10:00"), t("2013-01-01 11:00")],
            **{
                c: [1.0, 2.0]
                for c in ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")
            },
        }
    )
    route = pd.DataFrame(
        {
            "route": ["JFK-LAX"],
            "event_timestamp": [t("2013-01-01")],
            "route_flights_30d": [3],
            "route_delay_rate_30d": [0.3],
            "route_mean_arr_delay_30d": [3.0],
        }
    )
    planes = pd.DataFrame(
        {
            "tailnum": ["N1"],
            "event_timestamp": [t("2013-01-01")],
            "plane_year": [2004.0],
            "plane_seats": [180.0],
            "plane_engines": [2.0],
        }
    )
    write_tables(
        features,
        {
            "carrier_stats": carrier,
            "weather_hourly": weather,
            "route_stats": route,
            "plane_attributes": planes,
        },
        "2013-01",
    )
    hook = FeastHook()
    hook.apply()
    return hook


def entity(
    ts: str, carrier: str = "AA", origin: str = "JFK", route: str = "JFK-LAX", tailnum: str = "N1"
) -> dict:
    return {
        "carrier": carrier,
        "origin": origin,
        "route": route,
        "tailnum": tailnum,
        "event_timestamp": pd.Timestamp(ts, tz="UTC"),
    }


def test_point_in_time_joins_never_take_a_later_value(constructed_store: FeastHook) -> None:
    rows = pd.DataFrame(
        [
            entity("2013-01-01 15:00"),
            entity("2013-01-02 00:00"),
            entity("2013-01-01 10:30"),
            entity("2013-01-01 09:00"),
        ]
    )
    joined = constructed_store.get_historical_features(rows, SERVICE).sort_values("event_timestamp")
    by_time = joined.set_index("event_timestamp")

    # 15:00 on Jan 1: the Jan 1 carrier row, never the Jan 2 one that exists later.
    assert by_time.loc[pd.Timestamp("2013-01-01 15:00", tz="UTC"), "carrier_delay_rate_7d"] == 0.1
    assert (
        by_time.loc[pd.Timestamp("2013-01-02 00:00", tz="UTC"), "carrier_delay_rate_7d"] == 0.9
    )  # stamped at
    # Weather at 10:30 is the 10:00 observation, not 11:00; at 09:00 there is none yet: NULL.
    assert by_time.loc[pd.Timestamp("2013-01-01 10:30", tz="UTC"), "temp"] == 1.0
    assert pd.isna(by_time.loc[pd.Timestamp("2013-01-01 09:00", tz="UTC"), "temp"])


def test_values_older_than_the_ttl_are_null_offline(constructed_store: FeastHook) -> None:
    # Weather has a 3-hour TTL and carrier statistics 2 days: older values are documented NULLs.
    rows = pd.DataFrame([entity("2013-01-01 14:30"), entity("2013-01-04 01:00")])
    joined = constructed_store.get_historical_features(rows, SERVICE).sort_values("event_timestamp")
    assert joined["temp"].isna().tolist() == [True, True]
    assert joined["carrier_delay_rate_7d"].isna().tolist() == [False, True]


def test_every_entity_row_comes_back_even_when_rows_share_keys_and_time(constructed_store: FeastHook) -> None:
    # Feast's Dask/File offline store silently collapses such rows (feast-dev/feast#6787); we use DuckDB.
    rows = pd.DataFrame([entity("2013-01-01 15:00", route=r) for r in ("JFK-LAX", "JFK-SFO", "JFK-LAX")])
    rows["request"] = [1, 2, 3]
    joined = constructed_store.get_historical_features(rows, SERVICE)
    assert sorted(joined["request"]) == [1, 2, 3]


def test_carrier_statistics_never_include_the_flights_own_or_later_outcomes(real_store: FeastHook) -> None:
    february = month_frame("flights", 2).sample(400, random_state=11)
    joined = real_store.get_historical_features(add_entity_keys(february), SERVICE)
    outcomes = flight_outcomes(pd.concat([month_frame("flights", 1), month_frame("flights", 2)]))

    assert len(joined) == 400
    for _, row in joined.iterrows():
        known = outcomes[
            (outcomes["carrier"] == row["carrier"]) & (outcomes["known_at"] < row["event_timestamp"])
        ]
        # The newest statistics row at or before the flight: its UTC day, or Feb 28 for the last
        # evening of February (March 1 in UTC), whose March rows are not built yet.
        day = min(row["event_timestamp"].floor("D"), pd.Timestamp("2013-02-28", tz="UTC"))
        counted = known[(known["known_at"] < day) & (known["known_at"] >= day - pd.Timedelta(days=30))]
        assert row["carrier_flights_30d"] == len(counted)
        own = outcomes.loc[
            (outcomes["carrier"] == row["carrier"]) & (outcomes["known_at"] >= row["event_timestamp"])
        ]
        assert counted.index.intersection(own.index).empty


def assert_online_matches_offline(hook: FeastHook, at: datetime) -> None:
    # Materialization includes values stamped at its end, so compare with the join at that instant.
    keys = [
        entity(at.isoformat(), carrier=c, origin=o, route=r, tailnum=n)
        for c, o, r, n in [
            ("AA", "JFK", "JFK-LAX", "N3ALAA"),
            ("UA", "EWR", "EWR-SFO", "N14228"),
            ("B6", "LGA", "LGA-FLL", "N595JB"),
        ]
    ]
    offline = hook.get_historical_features(pd.DataFrame(keys), SERVICE)
    online = hook.get_online_features(
        SERVICE, [{k: v for k, v in row.items() if k != "event_timestamp"} for row in keys]
    )
    for i, row in enumerate(keys):
        match = offline[(offline["carrier"] == row["carrier"]) & (offline["route"] == row["route"])].iloc[0]
        for feature in (
            "temp",
            "pressure",
            "carrier_delay_rate_7d",
            "carrier_flights_30d",
            "route_delay_rate_30d",
            "plane_year",
        ):
            expected = match[feature]
            if pd.isna(expected):
                assert online[feature][i] is None, (feature, row)
            else:
                assert online[feature][i] == pytest.approx(expected), (feature, row)


def test_online_values_equal_historical_values_after_materialize(real_store: FeastHook) -> None:
    end = datetime(2013, 3, 1, tzinfo=UTC)
    real_store.materialize(datetime(2012, 12, 1, tzinfo=UTC), end)
    assert_online_matches_offline(real_store, end)


def test_redis_online_store_serves_the_same_values(real_store: FeastHook, redis_url: str) -> None:
    redis = FeastHook(config_file="feature_store.redis.yaml", variables={"MLOPS_REDIS": redis_url})
    redis.apply()
    end = datetime(2013, 3, 1, tzinfo=UTC)
    redis.materialize(datetime(2012, 12, 1, tzinfo=UTC), end)
    assert redis.get_conn().config.online_store.type == "redis"
    assert_online_matches_offline(redis, end)


def test_unknown_entity_keys_give_none_online(real_store: FeastHook) -> None:
    real_store.materialize(datetime(2012, 12, 1, tzinfo=UTC), datetime(2013, 3, 1, tzinfo=UTC))
    online = real_store.get_online_features(
        SERVICE, [{"carrier": "ZZ", "origin": "XXX", "route": "XXX-YYY", "tailnum": "N0NE"}]
    )
    assert online["carrier_delay_rate_7d"] == [None] and online["temp"] == [None]


def test_bad_requests_are_clear_errors(real_store: FeastHook) -> None:
    rows = pd.DataFrame([entity("2013-02-01 12:00")])
    with pytest.raises(
        FeatureStoreError,
        match=r"feature service 'flight_delay_v9': not in the registry "
        r"\(registered: \['flight_delay_v1'\]\)",
    ):
        real_store.get_historical_features(rows, "flight_delay_v9")
    with pytest.raises(FeatureStoreError, match=r"no 'event_timestamp' column"):
        real_store.get_historical_features(rows.drop(columns="event_timestamp"), SERVICE)
    with pytest.raises(FeatureStoreError, match=r"columns \['route'\] needed by feature service"):
        real_store.get_historical_features(rows.drop(columns="route"), SERVICE)
    with pytest.raises(FeatureStoreError, match=r"end .* must be after start"):
        real_store.materialize(datetime(2013, 3, 1, tzinfo=UTC), datetime(2013, 2, 1, tzinfo=UTC))


def test_apply_refuses_views_over_no_files(lake: Path) -> None:
    with pytest.raises(FeatureStoreError, match=r"feature view '\w+': its source .* matches no file"):
        FeastHook().apply()
    with pytest.raises(FeatureStoreError, match=r"no configuration file 'nope.yaml'"):
        FeastHook(config_file="nope.yaml").get_conn()


def test_apply_is_idempotent_and_logs_a_plain_diff(real_store: FeastHook) -> None:
    again = FeastHook().apply()
    assert "\x1b[" not in again
    assert {v.name for v in FeastHook().get_conn().list_feature_views()} == {
        "weather_hourly",
        "carrier_stats",
        "route_stats",
        "plane_attributes",
    }


def test_the_feast_connection_names_repository_configuration_and_variables(
    real_store, lake, tmp_path, monkeypatch, redis_url
) -> None:
    import json

    repo = Path(__file__).resolve().parents[2] / "feature_repo"
    monkeypatch.setenv(
        "AIRFLOW_CONN_FEAST_REDIS",
        json.dumps(
            {
                "conn_type": "feast",
                "extra": {
                    "repo_path": str(repo),
                    "config_file": "feature_store.redis.yaml",
                    "variables": {"MLOPS_REDIS": redis_url, "MLOPS_FEAST_DIR": str(tmp_path / "other")},
                },
            }
        ),
    )
    hook = FeastHook("feast_redis")
    store = hook.get_conn()
    assert store.config.online_store.type == "redis"
    assert store.config.registry.path == str(tmp_path / "other" / "registry.db")
    assert os.environ["MLOPS_LAKE_URI"] == lake.as_uri()  # the lake's root, for a repository's sources
    hook.apply()
    assert hook.get_feature_service(SERVICE).name == SERVICE


def test_the_scale_out_configuration_reads_feature_tables_in_s3_through_the_lake_connection(
    lake: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    aws_conn: str,
    moto_server: str,
    redis_url: str,
) -> None:
    """feature_store.scaleout.yaml: a SQL registry, Redis online, the feature tables in S3 (moto) read
    by DuckDB through the lake's connection. The point-in-time join and the online values equal
    those of the same tables on local disk; a view over no objects is refused before apply."""
    import boto3
    from airflow.sdk import ObjectStoragePath

    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="feast-lake")
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", "s3://feast-lake/lake")
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_CONN_ID", aws_conn)
    # AWS_* in the environment are the moto fixture's: only the connection knows the endpoint.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    variables = {"MLOPS_FEAST_REGISTRY": f"sqlite:///{tmp_path / 'registry.db'}", "MLOPS_REDIS": redis_url}

    def scale_out() -> FeastHook:
        return FeastHook(config_file="feature_store.scaleout.yaml", variables=variables)

    with pytest.raises(
        FeatureStoreError, match=r"feature view '\w+': its source s3a://feast-lake/.* matches no file"
    ):
        scale_out().apply()

    local = FeastHook()  # the embedded configuration over the same tables on local disk
    january, february = month_frame("flights", 1), month_frame("flights", 2)
    tables = {
        **month_feature_tables("2013-02", [january, february], month_frame("weather", 2)),
        "plane_attributes": plane_features(read_table("planes")),
    }
    features = ObjectStoragePath("s3://feast-lake/lake/features", conn_id=aws_conn)
    for name, frame in tables.items():
        (lake / "features" / name).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(lake / "features" / name / "2013-02.parquet", index=False)
        with (features / name / "2013-02.parquet").open("wb") as handle:
            frame.to_parquet(handle, index=False)
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", lake.as_uri())
    local.apply()
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", "s3://feast-lake/lake")
    remote = scale_out()
    remote.apply()
    assert remote.get_conn().config.registry.registry_type == "sql"
    rows = add_entity_keys(february.sample(300, random_state=5))
    key = ["flight_id"]
    joined = remote.get_historical_features(rows, SERVICE).sort_values(key).reset_index(drop=True)
    expected = local.get_historical_features(rows, SERVICE).sort_values(key).reset_index(drop=True)
    assert len(joined) == 300 and joined["carrier_delay_rate_30d"].notna().any()
    pd.testing.assert_frame_equal(joined, expected[joined.columns], check_dtype=False)

    end = datetime(2013, 3, 1, tzinfo=UTC)
    remote.materialize(datetime(2012, 12, 1, tzinfo=UTC), end)
    assert remote.get_conn().config.online_store.type == "redis"
    assert_online_matches_offline(remote, end)
