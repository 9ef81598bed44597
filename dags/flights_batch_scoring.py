"""Reference DAG: score flights in batch with the champion model, without the model server."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, task

from airflow_mlops import settings
from airflow_mlops.events import latest_event_value
from airflow_mlops.operators.predict import BatchPredictionOperator

DATA = settings.lake_uri().removeprefix("file://")
# Emitted by flights_features.py.
FLIGHT_FEATURES = Asset(name="flight_features", group="flights")
FLIGHT_DELAY_PREDICTIONS = Asset(name="flight_delay_predictions", group="flights")

with DAG(
    dag_id="flights_batch_scoring",
    schedule=None,
    start_date=datetime(2013, 1, 1),
    catchup=False,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["mlops", "flights", "serving", "batch"],
    doc_md="""
### Score flights in batch with the champion
Trigger it by hand (or call it from your own schedule). `scoring_input` picks the held-out split
of the newest training set (the newest `flight_features` event, or conf `{"manifest_uri": ...,
"split": "test"}`); `score` resolves `models:/flight_delay@champion` to one version, scores every
row in 64k-row chunks with the model's own preprocessing and writes
`data/lake/predictions/flight_delay/<run>.parquet` (`flight_id`, `prediction_id`, `probability`,
`model`, `version`, `scored_at`) with a manifest naming the input and the model version. The
`flight_delay_predictions` event carries the URI, the row count, the version and the mean
probability.
""",
):

    @task(inlets=[FLIGHT_FEATURES])
    def scoring_input(**context: Any) -> str:
        """The split to score: a Parquet file of the newest training set."""
        import json

        from airflow_mlops.training.spec import manifest_path

        manifest_uri = latest_event_value(context, FLIGHT_FEATURES, "manifest_uri")
        split = (context["dag_run"].conf or {}).get("split", "test")
        splits = json.loads(manifest_path(manifest_uri).read_text())["splits"]
        if split not in splits:
            raise ValueError(
                f"split {split!r} is not in training set {manifest_uri} (splits: {sorted(splits)})"
            )
        return str(manifest_path(splits[split]["uri"], manifest_uri))

    BatchPredictionOperator(
        task_id="score",
        input_uri=scoring_input(),
        model_uri="models:/flight_delay@champion",
        output_uri=f"{DATA}/predictions/flight_delay/"
        + "{{ run_id | replace(':', '_') | replace('+', '_') }}.parquet",
        key_columns=["flight_id"],
        mlflow_conn_id=settings.mlflow_conn_id(),
        storage_conn_id=settings.lake_conn_id(),
        outlets=[FLIGHT_DELAY_PREDICTIONS],
    )
