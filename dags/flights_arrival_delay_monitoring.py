"""Second reference pipeline: monitor both arrival delay models (the network and the scikit-learn one)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, TaskGroup, task

from airflow_mlops import settings
from airflow_mlops.events import latest_event_value
from airflow_mlops.layout import RUN_FOLDER
from airflow_mlops.operators.monitor import (
    DriftMonitorOperator,
    ModelDriftAlertOperator,
    PerformanceMonitorOperator,
    write_dataset_labels,
)

LAKE = settings.lake_uri()
DATA = LAKE.removeprefix("file://")
MODELS = ("arrival_delay", "arrival_delay_gbm")
MLFLOW = settings.mlflow_conn_id()
REQUEST_LOG = settings.request_log_uri()
START = "{{ (dag_run.conf or {}).get('start', '') }}"
END = "{{ (dag_run.conf or {}).get('end', '') }}"

# Emitted by flights_arrival_delay's dataset task: its newest version has the delays of every validated month.
ARRIVAL_DELAY_DATASET = Asset(name="flights_arrival_delay_dataset", group="flights")
#: Emitted when a monitor of either model breaches; ``extra`` names the endpoint, features and scores.
ARRIVAL_DELAY_DRIFT = Asset(name="arrival_delay_drift", group="flights")

with DAG(
    dag_id="flights_arrival_delay_monitoring",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    # Paused until its endpoints exist: flights_arrival_delay is triggered by hand, and a home that
    # unpauses every DAG (the demo's, the scale-out stack's) would otherwise monitor nothing daily.
    is_paused_upon_creation=True,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["mlops", "flights", "monitoring", "regression", "bring-your-own-model"],
    doc_md="""
### Monitor the arrival delay models
Daily over the previous day's requests (or conf `{"start": ..., "end": ...}`), for each endpoint
that `flights_arrival_delay` deploys: `arrival_delay` (the README's network) and
`arrival_delay_gbm` (the README's scikit-learn pipeline, an MLflow model). The same operators
watch both: the drift monitor reads each model's features from its signature, whatever the model.

1. `labels`: `flight_id, arr_delay_minutes` of every flight of the newest
   `flights_arrival_delay_dataset` version (or conf `{"manifest_uri": ...}`).
2. Per model, a group `<model>`:
   - `drift`: the served features against the training set of the version that served them (PSI
     and Kolmogorov-Smirnov, Jensen-Shannon, schema anomalies) and the served predictions against
     the model's on its training rows; `month` and `day` are left out (calendar columns).
   - `performance`: RMSE, MAE and R² of the served predictions against the flights' delays (joined by
     `flight_id`, then by `prediction_id`); RMSE over 60 minutes is a breach (the release gate's bound).
   - `model_drift`: on a breach, the `arrival_delay_drift` Asset event naming the endpoint and the reasons
     (schedule `flights_arrival_delay` on it to retrain); skipped otherwise.

Reports go to `data/lake/monitoring/<model>/<run>/`, metrics to the MLflow experiment `<model>-monitoring`.
The DAG is created paused: unpause it once `flights_arrival_delay` has deployed the endpoints.
""",
):

    @task(inlets=[ARRIVAL_DELAY_DATASET])
    def labels(**context: Any) -> str:
        """``flight_id, arr_delay_minutes`` of every flight of the newest dataset version, as one Parquet file."""
        manifest_uri = latest_event_value(context, ARRIVAL_DELAY_DATASET, "manifest_uri")
        return write_dataset_labels(
            manifest_uri,
            ["flight_id", "arr_delay_minutes"],
            f"{LAKE}/labels/{'arrival_delay'}",
            settings.lake_conn_id(),
        )

    delays = labels()
    for model in MODELS:
        with TaskGroup(group_id=model):
            drift = DriftMonitorOperator(
                task_id="drift",
                endpoint=model,
                request_log=REQUEST_LOG,
                start=START,
                end=END,
                model_name=model,
                ignore=["month", "day"],
                report_dir=f"{DATA}/monitoring/{model}/{RUN_FOLDER}",
                mlflow_conn_id=MLFLOW,
            )
            performance = PerformanceMonitorOperator(
                task_id="performance",
                endpoint=model,
                request_log=REQUEST_LOG,
                start=START,
                end=END,
                labels=delays,
                label_key="flight_id",
                label_column="arr_delay_minutes",
                task="regression",
                bounds={"rmse": {"max": 60.0}},
                report_dir=f"{DATA}/monitoring/{model}/{RUN_FOLDER}",
                mlflow_conn_id=MLFLOW,
            )
            alert = ModelDriftAlertOperator(
                task_id="model_drift",
                endpoint=model,
                monitor_task_ids=[drift.task_id, performance.task_id],
                outlets=[ARRIVAL_DELAY_DRIFT],
                trigger_rule="none_failed",
            )
            [drift, performance] >> alert
