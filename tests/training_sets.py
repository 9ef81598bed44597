"""A real flights training set for training tests, without a Feast store: the same point-in-time
join written with merge_asof (benchmarks/features.py checks that Feast gives identical values)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd

from airflow_mlops.training.spec import TrainingSpec
from flights.features import add_entity_keys, month_feature_tables, plane_features
from flights.source import read_table
from tests.partitions import month_frame

VIEWS = {
    "weather_hourly": (["origin"], timedelta(hours=3)),
    "carrier_stats": (["carrier"], timedelta(days=2)),
    "route_stats": (["route"], timedelta(days=2)),
    "plane_attributes": (["tailnum"], timedelta(days=3650)),
}


def write_training_set(folder: Path, months: int = 2) -> str:
    """The first ``months - 1`` months split 6:1 into train and validation; the last month is the
    held-out test month (default: January to train, February to test)."""
    frames = [month_frame("flights", m) for m in range(1, months + 1)]
    tables = [
        month_feature_tables(f"2013-{m:02d}", frames[max(0, m - 2) : m], month_frame("weather", m))
        for m in range(1, months + 1)
    ]
    features = {
        name: pd.concat([t[name] for t in tables])
        for name in ("weather_hourly", "carrier_stats", "route_stats")
    }
    features["plane_attributes"] = plane_features(read_table("planes"))
    flights = pd.concat(frames)
    flights = add_entity_keys(flights[flights["arr_delay"].notna()]).assign(
        is_delayed=lambda f: (f["arr_delay"] > 15).astype("int64")
    )
    joined = flights.assign(event_timestamp=flights["event_timestamp"].dt.as_unit("ns")).sort_values(
        "event_timestamp"
    )
    for view, (keys, ttl) in VIEWS.items():
        table = features[view]
        table = table.assign(
            event_timestamp=pd.to_datetime(table["event_timestamp"], utc=True).dt.as_unit("ns")
        )
        joined = pd.merge_asof(
            joined,
            table.sort_values("event_timestamp"),
            on="event_timestamp",
            by=keys,
            direction="backward",
            tolerance=ttl,
        )
    joined = joined.drop(columns=["arr_delay", "dep_delay"]).sort_values("flight_id").reset_index(drop=True)
    training_months = joined["month"] < months
    splits = {
        "train": joined[training_months & (joined["flight_id"] % 7 != 0)],
        "validation": joined[training_months & (joined["flight_id"] % 7 == 0)],
        "test": joined[~training_months],
    }
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"splits": {}}
    for name, frame in splits.items():
        path = folder / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        manifest["splits"][name] = {"uri": path.as_uri(), "rows": len(frame)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return (folder / "manifest.json").as_uri()


def train(folder: Path, training_set: str, hidden: int, epochs: int, tracking_uri: str = "") -> Path:
    """Train the reference model with the runtime's driver (one process); returns the model folder."""
    spec = TrainingSpec(
        model="flights.model:FlightDelayModel",
        data="flights.model:FlightDataModule",
        training_set=training_set,
        output_dir=str(folder / "model"),
        checkpoint_dir=str(folder / "ckpt"),
        hyperparameters={"hidden": hidden},
        batch_size=512,
        trainer={"max_epochs": epochs},
        mlflow={
            "tracking_uri": tracking_uri,
            "experiment": "eval",
            "artifact_location": str(folder.parent / "artifacts"),
        }
        if tracking_uri
        else {},
    )
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(spec.to_json())
    done = subprocess.run(
        [sys.executable, "-m", "airflow_mlops.training", str(folder / "spec.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return folder / "model"
