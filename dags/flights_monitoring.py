"""Reference DAG: monitor the served flights delay model (skew, drift, performance) and raise model_drift."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, task

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
MODEL = "flight_delay"
MLFLOW = settings.mlflow_conn_id()
REQUEST_LOG = settings.request_log_uri()
# conf {"start": ..., "end": ...} (ISO times with a zone) overrides the run's data interval.
START = "{{ (dag_run.conf or {}).get('start', '') }}"
END = "{{ (dag_run.conf or {}).get('end', '') }}"

# Emitted by flights_validate.py: its newest version has the labels (is_delayed) of every validated month.
FLIGHTS_DELAY_DATASET = Asset(name="flights_delay_dataset", group="flights")
#: Emitted when a monitor breaches its threshold; ``extra`` names the features and scores.
#: flights_training is scheduled on it (or on new features).
MODEL_DRIFT = Asset(name="model_drift", group="flights")

with DAG(
    dag_id="flights_monitoring",
    # A data interval per run (the day before the run): Airflow 3's "@daily" gives zero-length intervals.
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["mlops", "flights", "monitoring", "drift"],
    doc_md="""
### Monitor the served flights delay model
Runs daily over the previous day's requests to the model server's `flight_delay` endpoint (the
request log in `[mlops] serving_dir`/requests), or over conf `{"start": ..., "end": ...}`.

1. `drift`: the features each prediction was served with, against the training set of the model
   version that served them (its registry lineage tag): PSI and Kolmogorov-Smirnov per numeric
   feature, Jensen-Shannon per categorical one, new categories and missing columns (schema
   anomalies), and the served probabilities against the model's on its training rows (prediction
   drift). `month` and `day` are left out: calendar columns move by design. A feature over its
   threshold (PSI 0.2, JS 0.1) is a breach.
2. `labels`: the ground truth, once flights have landed: `flight_id, is_delayed` from the newest
   version of the `flights_delay` dataset (the dataset's own label rule; cancelled flights have none).
3. `performance`: each prediction gets its flight's label (by `flight_id`, then joined by
   `prediction_id`): AUC, log loss, calibration per served version. AUC under 0.62 is a breach.
4. `model_drift`: when a monitor breached, emits the `model_drift` Asset event whose extra names
   the features, scores and reasons; otherwise it is skipped and emits nothing.
   `flights_training` is scheduled on `flight_features | model_drift`, so drift starts a retraining.

Both monitors write a JSON and an HTML report (plots) to `data/lake/monitoring/flight_delay/<run>/`
and log their metrics to the MLflow experiment `flight_delay-monitoring`. A window without
predictions (or labels) skips its monitor, not fails it. In the UI each monitor's **Monitoring
report** link opens its report; **MLOps → Data** charts the drift score and the served AUC per
window and lists every report.
""",
):

    @task(inlets=[FLIGHTS_DELAY_DATASET])
    def labels(**context: Any) -> str:
        """``flight_id, is_delayed`` of every flight of the newest dataset version (or conf
        ``{"manifest_uri": ...}``), as one Parquet file."""
        manifest_uri = latest_event_value(context, FLIGHTS_DELAY_DATASET, "manifest_uri")
        return write_dataset_labels(
            manifest_uri, ["flight_id", "is_delayed"], f"{LAKE}/labels/{MODEL}", settings.lake_conn_id()
        )

    drift = DriftMonitorOperator(
        task_id="drift",
        endpoint=MODEL,
        request_log=REQUEST_LOG,
        start=START,
        end=END,
        model_name=MODEL,
        ignore=["month", "day"],
        report_dir=f"{DATA}/monitoring/{MODEL}/{RUN_FOLDER}",
        mlflow_conn_id=MLFLOW,
    )
    performance = PerformanceMonitorOperator(
        task_id="performance",
        endpoint=MODEL,
        request_log=REQUEST_LOG,
        start=START,
        end=END,
        labels=labels(),
        label_key="flight_id",
        label_column="is_delayed",
        min_auc=0.62,
        report_dir=f"{DATA}/monitoring/{MODEL}/{RUN_FOLDER}",
        mlflow_conn_id=MLFLOW,
    )
    alert = ModelDriftAlertOperator(
        task_id="model_drift",
        endpoint=MODEL,
        monitor_task_ids=["drift", "performance"],
        outlets=[MODEL_DRIFT],
        trigger_rule="none_failed",
    )
    [drift, performance] >> alert
