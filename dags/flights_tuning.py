"""Reference DAG: tune the flights delay model's hyperparameters with Optuna, one mapped task per trial."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, task

from airflow_mlops import settings
from airflow_mlops.events import latest_event_value
from airflow_mlops.operators.tune import BestTrialOperator, CreateStudyOperator, TuneTrialOperator

LAKE = settings.lake_uri()
DATA = LAKE.removeprefix("file://")
STUDY = "flights-{{ run_id | replace(':', '_') | replace('+', '_') }}"

# Emitted by flights_features.py; read here as an inlet (the newest training set).
FLIGHT_FEATURES = Asset(name="flight_features", group="flights")
# Read by flights_training.py: the newest event's extra["best_params"] override its defaults.
FLIGHT_DELAY_HYPERPARAMETERS = Asset(name="flight_delay_hyperparameters", group="flights")

with DAG(
    dag_id="flights_tuning",
    schedule=None,
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=2,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=10)},
    tags=["mlops", "flights", "training", "optuna", "tuning"],
    doc_md="""
### Tune the flights delay model
Trigger by hand (conf `{"manifest_uri": ...}` picks a training set; the default is the newest
`flight_features` event). `create_study` opens an Optuna study for this run in the RDB storage
(the `optuna_default` connection: SQLite here, Postgres at scale) and an MLflow parent run;
`trial` is mapped, one task instance per trial (two at a time here, `max_active_tasks`), each
training the model in its own driver process with sampled hyperparameters; the median pruner
stops a trial whose validation loss after an epoch is worse than the median of earlier trials.
`best` writes the best parameters and every trial (`trials.csv`) to the parent run and emits
`flight_delay_hyperparameters`, whose newest event `flights_training` uses.
""",
):

    @task(inlets=[FLIGHT_FEATURES])
    def training_set(**context: Any) -> str:
        """The training set manifest: conf, else the newest flight_features event."""
        return str(latest_event_value(context, FLIGHT_FEATURES, "manifest_uri"))

    slots = CreateStudyOperator(
        task_id="create_study",
        study_name=STUDY,
        search_space={
            "hidden": {"type": "int", "low": 16, "high": 128, "log": True},
            "layers": {"type": "int", "low": 1, "high": 3},
            "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.3},
        },
        n_trials=4,
        metric="val_loss",
        mlflow_experiment="flights-tuning",
        mlflow_conn_id=settings.mlflow_conn_id(),
        optuna_conn_id=settings.optuna_conn_id(),
    )
    trials = TuneTrialOperator.partial(
        task_id="trial",
        study_name=STUDY,
        training_set=training_set(),
        model="flights.model:FlightDelayModel",
        data="flights.model:FlightDataModule",
        output_dir=DATA + "/models/flight_delay_tuning/{{ run_id | replace(':', '_') | replace('+', '_') }}",
        checkpoint_root=f"{DATA}/checkpoints",
        batch_size=512,
        max_epochs=3,
        mlflow_conn_id=settings.mlflow_conn_id(),
        optuna_conn_id=settings.optuna_conn_id(),
        mlflow_experiment="flights-tuning",
        storage_conn_id=settings.lake_conn_id(),
        execution_timeout=timedelta(minutes=30),
    ).expand(slot=slots.output)
    best = BestTrialOperator(
        task_id="best",
        study_name=STUDY,
        mlflow_conn_id=settings.mlflow_conn_id(),
        optuna_conn_id=settings.optuna_conn_id(),
        outlets=[FLIGHT_DELAY_HYPERPARAMETERS],
        trigger_rule="all_done",  # a failed trial does not stop the study from choosing among the others
    )
    trials >> best
