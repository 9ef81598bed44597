"""Benchmark: the flights feature store through FeastHook vs Feast's own API, and vs pandas merge_asof.

In one process run, on the full year of 2013 (feature tables built from the package data):

- online: ``FeastHook.get_online_features("flight_delay_v1", [one row])`` vs
  ``FeatureStore.get_online_features(features=service, entity_rows=[one row])``, alternating,
  the same random entity rows, p50 and p99 in ms; on the SQLite online store and, when
  ``redis-server`` is installed, on Redis;
- historical: ``FeastHook.get_historical_features`` (DuckDB offline store) for every flight that
  landed in 2013 vs ``pandas.merge_asof`` per feature view with the same TTLs, checked to give the
  same values.

    .venv/bin/python benchmarks/features.py [--requests 500]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import devtools  # noqa: E402  (the flights package on the path, as in Airflow)

devtools.export_python_path()

WORK = Path(tempfile.mkdtemp(prefix="bench-features-"))
os.environ["AIRFLOW__MLOPS__LAKE_URI"] = (WORK / "lake").as_uri()
os.environ["AIRFLOW__MLOPS__FEAST_DIR"] = str(WORK / "feast")
os.environ["AIRFLOW__MLOPS__FEATURE_REPO"] = str(ROOT / "feature_repo")
SERVICE = "flight_delay_v1"
#: view -> (join keys, TTL), as declared in feature_repo/features.py
VIEWS = {
    "weather_hourly": (["origin"], timedelta(hours=3)),
    "carrier_stats": (["carrier"], timedelta(days=2)),
    "route_stats": (["route"], timedelta(days=2)),
    "plane_attributes": (["tailnum"], timedelta(days=3650)),
}


def build_tables() -> pd.DataFrame:
    """Feature tables for the 12 months under the lake; returns every landed flight as an entity row."""
    from flights.features import add_entity_keys, month_feature_tables, plane_features
    from flights.source import read_table

    flights, weather = read_table("flights"), read_table("weather")
    for frame in (flights, weather):
        frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    features = WORK / "lake" / "features"
    for month in range(1, 13):
        period = f"2013-{month:02d}"
        tables = month_feature_tables(
            period, [flights[flights["month"].isin([month - 1, month])]], weather[weather["month"] == month]
        )
        for name, frame in tables.items():
            (features / name).mkdir(parents=True, exist_ok=True)
            frame.to_parquet(features / name / f"{period}.parquet", index=False)
    (features / "plane_attributes").mkdir(parents=True, exist_ok=True)
    plane_features(read_table("planes")).to_parquet(
        features / "plane_attributes" / "planes.parquet", index=False
    )
    landed = flights[flights["arr_delay"].notna()]
    return add_entity_keys(landed)[["flight_id", "event_timestamp", "origin", "carrier", "tailnum", "route"]]


def merge_asof_baseline(entities: pd.DataFrame) -> pd.DataFrame:
    """The same point-in-time join written with pandas.merge_asof, one feature view at a time."""
    features = WORK / "lake" / "features"
    result = entities.assign(event_timestamp=entities["event_timestamp"].dt.as_unit("ns"))
    result = result.sort_values("event_timestamp").reset_index(drop=True)
    for view, (keys, ttl) in VIEWS.items():
        table = pd.concat([pd.read_parquet(p) for p in sorted((features / view).glob("*.parquet"))])
        table = table.assign(event_timestamp=table["event_timestamp"].dt.as_unit("ns")).sort_values(
            "event_timestamp"
        )
        result = pd.merge_asof(
            result, table, on="event_timestamp", by=keys, direction="backward", tolerance=ttl
        )
    return result


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)) * 1000, float(np.percentile(samples, 99)) * 1000


def online(hook, rows: list[dict], label: str, results: dict[str, float]) -> None:
    store = hook.get_conn()
    service = hook.get_feature_service(SERVICE)
    for row in rows[:20]:  # warm both paths
        hook.get_online_features(SERVICE, [row])
        store.get_online_features(features=service, entity_rows=[row])
    ours, theirs = [], []
    for row in rows:
        started = time.perf_counter()
        a = hook.get_online_features(SERVICE, [row])
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        b = store.get_online_features(features=service, entity_rows=[row]).to_dict()
        theirs.append(time.perf_counter() - started)
        assert a == b
    (op50, op99), (fp50, fp99) = percentiles(ours), percentiles(theirs)
    print(
        f"online {label}: hook p50 {op50:.2f} ms p99 {op99:.2f} ms; Feast p50 {fp50:.2f} ms p99 {fp99:.2f} ms; "
        f"p50 ratio {op50 / fp50:.3f}"
    )
    results.update(
        {
            f"online_{label}_hook_p50_ms": op50,
            f"online_{label}_hook_p99_ms": op99,
            f"online_{label}_feast_p50_ms": fp50,
            f"online_{label}_feast_p99_ms": fp99,
            f"online_{label}_p50_ratio": op50 / fp50,
        }
    )


def start_redis() -> tuple[subprocess.Popen | None, str | None]:
    server = shutil.which("redis-server")
    if server is None:
        return None, None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [server, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    from airflow_mlops.hooks.feast import FeastHook

    entities = build_tables()
    hook = FeastHook()
    hook.apply()
    results: dict[str, float] = {}

    started = time.perf_counter()
    ours = hook.get_historical_features(entities, SERVICE)
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    baseline = merge_asof_baseline(entities)
    baseline_s = time.perf_counter() - started
    columns = [f for view in VIEWS for f in hook.get_conn().get_feature_view(view).features]
    names = [f.name for f in columns]
    a = ours.sort_values("flight_id").reset_index(drop=True)[["flight_id", *names]]
    b = baseline.sort_values("flight_id").reset_index(drop=True)[["flight_id", *names]]
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    print(
        f"historical, {len(entities):,} flights x {len(names)} features: Feast (DuckDB) {ours_s:.2f}s, "
        f"merge_asof {baseline_s:.2f}s, ratio {ours_s / baseline_s:.2f}; identical values"
    )
    results.update(
        historical_feast_s=ours_s,
        historical_merge_asof_s=baseline_s,
        historical_ratio=ours_s / baseline_s,
        historical_rows=len(entities),
    )

    hook.materialize(datetime(2012, 12, 1, tzinfo=UTC), datetime(2014, 1, 1, tzinfo=UTC))
    rng = np.random.default_rng(5)
    sample = entities.iloc[rng.integers(0, len(entities), args.requests)]
    rows = [{k: r[k] for k in ("origin", "carrier", "tailnum", "route")} for r in sample.to_dict("records")]
    online(hook, rows, "sqlite", results)

    process, url = start_redis()
    if process is None:
        print("online redis: skipped (redis-server not installed)")
    else:
        try:
            redis = FeastHook(config_file="feature_store.redis.yaml", variables={"MLOPS_REDIS": url})
            redis.apply()
            redis.materialize(datetime(2012, 12, 1, tzinfo=UTC), datetime(2014, 1, 1, tzinfo=UTC))
            online(redis, rows, "redis", results)
        finally:
            process.terminate()
    shutil.rmtree(WORK, ignore_errors=True)
    for key, value in results.items():
        print(f"RESULT {key}={value:.3f}" if isinstance(value, float) else f"RESULT {key}={value}")


if __name__ == "__main__":
    sys.exit(main())
