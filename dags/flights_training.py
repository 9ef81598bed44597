"""Reference DAG: train the flights delay model on the newest training set, in DDP processes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, task

from airflow_mlops import settings
from airflow_mlops.events import conf_or_latest_event
from airflow_mlops.operators.train import LightningTrainOperator

LAKE = settings.lake_uri()
DATA = LAKE.removeprefix("file://")

# Emitted by flights_features.py.
FLIGHT_FEATURES = Asset(name="flight_features", group="flights")

with DAG(
    dag_id="flights_training",
    schedule=[FLIGHT_FEATURES],
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["mlops", "flights", "training", "lightning", "event-driven"],
    doc_md="""
### Train the flights delay model
Runs when a new training set exists (`flight_features`). `training_set` names it (the event, or
conf `{"manifest_uri": ...}`); `train` checks the spec (model and data classes, hyperparameters,
the data), then starts 2 DDP processes with torchrun (gloo on CPU) running
`python -m airflow_mlops.training`: a network with embeddings for carrier, origin and
destination, the preprocessing statistics of the training split stored with it. The workers'
output is in the task log. Params, metrics (test AUC and log loss against the trivial baseline,
samples/s) and the model files go to MLflow (`[mlops] mlflow_tracking_uri`); the model is saved as
a state dict (loaded with `weights_only=True`) plus `config.json`. A retry resumes from the last
epoch's checkpoint. The result (MLflow run id, model URI, metrics) is the task's XCom.
""",
):

    @task
    def training_set(**context: Any) -> str:
        """The training set manifest: from the triggering event, or the run's conf."""
        return str(conf_or_latest_event(context, FLIGHT_FEATURES, "manifest_uri"))

    LightningTrainOperator(
        task_id="train",
        training_set=training_set(),
        output_dir=DATA + "/models/flight_delay/{{ run_id | replace(':', '_') | replace('+', '_') }}",
        checkpoint_root=f"{DATA}/checkpoints",
        hyperparameters={"hidden": 64, "layers": 2, "lr": 0.002},
        batch_size=512,
        devices=2,
        max_epochs=3,
        mlflow_tracking_uri=settings.mlflow_tracking_uri(),
        execution_timeout=timedelta(minutes=30),
    )
