"""Reference DAG: build the flights feature tables, register them in Feast, materialize, and build a training set."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, ObjectStoragePath, task

from airflow_mlops import settings
from airflow_mlops.events import conf_or_latest_event
from airflow_mlops.operators.features import (
    FeastApplyOperator,
    FeastMaterializeOperator,
    FeastTrainingDatasetOperator,
)
from flights.operators import FlightFeaturesOperator

LAKE = settings.lake_uri()

# Emitted by flights_validate.py (Assets are identified by name).
FLIGHTS_DELAY_DATASET = Asset(name="flights_delay_dataset", group="flights")
WEATHER_VALIDATED = Asset(name="weather_validated", group="flights")
#: A training set joined with `flight_delay_v1`; ``extra`` has manifest_uri, splits, feature_views.
FLIGHT_FEATURES = Asset(name="flight_features", group="flights")

with DAG(
    dag_id="flights_features",
    schedule=(FLIGHTS_DELAY_DATASET & WEATHER_VALIDATED),
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["mlops", "flights", "features", "feast", "event-driven"],
    doc_md="""
### Features for the flights delay model (Feast)
Runs when a new version of the `flights_delay` dataset exists and weather has been validated.

1. `dataset_manifest`: which dataset version (the triggering event, or conf `{"manifest_uri": ...}`)
   and which months it covers.
2. `build_feature_tables`: for each month, from the validated partitions, writes
   `lake/features/<table>/YYYY-MM.parquet`: hourly weather per origin, carrier and route delay
   statistics over the trailing 7/30 days (only flights landed before each day began: no
   leakage), and plane attributes. Months whose sources are unchanged are skipped.
3. `feast_apply`: logs the registry diff of `feature_repo/` and applies it (entities origin,
   carrier, plane, route; four feature views; feature service `flight_delay_v1`).
4. `materialize`: loads the months' values into the online store (SQLite by default).
5. `training_set`: point-in-time join of every split's flights with `flight_delay_v1`, written to
   `lake/training_sets/flight_delay_v1/<dataset version>/` with a manifest; emits `flight_features`,
   which the training DAG schedules on.
""",
):

    @task
    def dataset_manifest(**context: Any) -> dict[str, Any]:
        """The dataset version to featurize, and the months and time range it covers."""
        uri = conf_or_latest_event(context, FLIGHTS_DELAY_DATASET, "manifest_uri")
        manifest = json.loads(ObjectStoragePath(uri, conn_id=settings.lake_conn_id()).read_text())
        periods = sorted(source["period"] for source in manifest["sources"])
        last_year, last_month = (int(part) for part in periods[-1].split("-"))
        end = datetime(last_year + last_month // 12, last_month % 12 + 1, 1)
        return {
            "manifest_uri": uri,
            "periods": periods,
            "start": f"{periods[0]}-01T00:00:00+00:00",
            "end": f"{end:%Y-%m-%d}T00:00:00+00:00",
        }

    dataset = dataset_manifest()
    build = FlightFeaturesOperator(
        task_id="build_feature_tables",
        periods=dataset["periods"],
        validated_uri=f"{LAKE}/validated",
        features_uri=settings.features_uri(),
        source_conn_id=settings.source_conn_id(),
        storage_conn_id=settings.lake_conn_id(),
    )
    apply = FeastApplyOperator(task_id="feast_apply")
    materialize = FeastMaterializeOperator(task_id="materialize", start=dataset["start"], end=dataset["end"])
    training_set = FeastTrainingDatasetOperator(
        task_id="training_set",
        dataset_manifest=dataset["manifest_uri"],
        feature_service="flight_delay_v1",
        output_uri=f"{LAKE}/training_sets",
        prepare_entities="flights.features:add_entity_keys",
        storage_conn_id=settings.lake_conn_id(),
        outlets=[FLIGHT_FEATURES],
    )
    build >> apply >> [materialize, training_set]
