"""Second reference pipeline: arrival delay in minutes (regression) with a user's own network and a
user's own scikit-learn model, each through the release path."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Asset, task

from airflow_mlops import settings
from airflow_mlops.layout import RUN_FOLDER, partition_periods
from airflow_mlops.operators.dataset import MaterializeDatasetOperator
from airflow_mlops.operators.features import FeastTrainingDatasetOperator
from airflow_mlops.operators.predict import BatchPredictionOperator
from airflow_mlops.operators.train import LightningTrainOperator
from airflow_mlops.release import release_task_group

LAKE = settings.lake_uri()
DATA = LAKE.removeprefix("file://")
MODEL = "arrival_delay"
GBM = "arrival_delay_gbm"
MLFLOW = settings.mlflow_conn_id()
HERE = Path(__file__).parent
ARRIVAL_DELAY_DATASET = Asset(name="flights_arrival_delay_dataset", group="flights")
#: The feature spec: the flights model's columns, the label in minutes.
FEATURES = {
    "label": "arr_delay_minutes",
    "task": "regression",
    "numeric": [
        "distance", "sched_dep_time", "sched_arr_time", "hour", "month", "day",
        "temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib",
        "carrier_flights_30d", "carrier_delay_rate_30d", "carrier_mean_arr_delay_30d",
        "route_flights_30d", "route_delay_rate_30d", "route_mean_arr_delay_30d",
        "plane_year", "plane_seats", "plane_engines",
    ],
    "categorical": ["carrier", "origin", "dest"],
}  # fmt: skip

with DAG(
    dag_id="flights_arrival_delay",
    # Triggered by hand once flights_features has applied the Feast repository and built its tables
    # (schedule it on the flight_features Asset to follow every month; the demo and the scale-out
    # stack run the flights pipeline alone).
    schedule=None,
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=10)},
    tags=["mlops", "flights", "training", "regression", "bring-your-own-model"],
    doc_md="""
### The second reference pipeline: arrival delay in minutes
The same validated flights and the same Feast features as `flights_training`, another task and
another model: the README's "Bring your own model" network (`dags/flights/arrival.py`,
`flights.arrival:DelayMinutes`) predicting the arrival delay in minutes.

1. `periods` lists every validated month; `dataset` materializes `dags/datasets/flights_arrival_delay.yaml`
   (label `arr_delay_minutes`: the delay itself, a regression label) and emits
   `flights_arrival_delay_dataset`.
2. `training_set` joins the `flight_delay_v1` features from Feast point in time (the Feast
   repository applied and its tables built by `flights_features` first).
3. `train`: `LightningTrainOperator` on the generic `TabularDataModule` with the feature spec
   `FEATURES` (task `regression`), one process.
4. The release group (`airflow_mlops.release.release_task_group`): `evaluate` (RMSE, MAE, R² overall,
   per carrier and origin, the MAE gap between origins), `gate` (`dags/gates/arrival_delay.yaml`),
   `register` (model `arrival_delay`, its signature and card), `approve` (`[mlops] auto_approve` or
   a person), `promote`, `rollout` to the model server's `arrival_delay` endpoint (no canary).
5. `batch_score`: the champion scores the training set's test split (`prediction` per flight).

Beside it, the same training set trains **a scikit-learn model** (`dags/flights/arrival_gbm.py`,
the README's example: a gradient-boosted tree pipeline, logged by the user's own code as an MLflow
model with its signature and `mlops_task: regression`). `train_gbm` returns the training result
the release group reads; the group `release_gbm` evaluates, gates (the same gate), registers
(model `arrival_delay_gbm`, the logged model as it is), approves, promotes and rolls it out to
the `arrival_delay_gbm` endpoint, and `batch_score_gbm` scores the test split with it. Both
endpoints are watched by `flights_arrival_delay_monitoring`.
""",
):

    @task
    def periods() -> list[str]:
        """Every validated month of flights (``YYYY-MM``)."""
        return partition_periods(f"{LAKE}/validated/flights", settings.lake_conn_id())

    dataset = MaterializeDatasetOperator(
        task_id="dataset",
        definition=str(HERE / "datasets" / "flights_arrival_delay.yaml"),
        output_uri=f"{LAKE}/datasets",
        periods=periods(),
        variables={"lake": LAKE},
        storage_conn_id=settings.lake_conn_id(),
        outlets=[ARRIVAL_DELAY_DATASET],
    )
    training_set = FeastTrainingDatasetOperator(
        task_id="training_set",
        dataset_manifest=dataset.output,
        feature_service="flight_delay_v1",
        output_uri=f"{LAKE}/training_sets/arrival_delay",
        prepare_entities="flights.features:add_entity_keys",
        storage_conn_id=settings.lake_conn_id(),
    )
    train = LightningTrainOperator(
        task_id="train",
        training_set=training_set.output,
        model="flights.arrival:DelayMinutes",
        features=FEATURES,
        mlflow_experiment="flights_arrival_delay",
        output_dir=f"{DATA}/models/{MODEL}/{RUN_FOLDER}",
        checkpoint_root=f"{DATA}/checkpoints",
        hyperparameters={"hidden": 32, "lr": 0.003},
        batch_size=512,
        max_epochs=3,
        mlflow_conn_id=MLFLOW,
        storage_conn_id=settings.lake_conn_id(),
        execution_timeout=timedelta(minutes=30),
    )
    release = release_task_group(
        model_name=MODEL,
        train=train,
        training_set="{{ ti.xcom_pull(task_ids='training_set') }}",
        report_dir=f"{DATA}/evaluations/{MODEL}/{RUN_FOLDER}",
        card_dir=f"{DATA}/model_cards/{MODEL}/{RUN_FOLDER}",
        gate=str(HERE / "gates" / "arrival_delay.yaml"),
        slices=["carrier", "origin"],
        auto_approve=settings.auto_approve(),
        log_fields=["flight_id"],  # kept in the request log: the monitors join labels by it
        canary_weight=None,
        intended_use="Estimate how late a scheduled flight will arrive, in minutes, for planning.",
        limitations="Trained on New York City departures of 2013 only; delays over a few hours are rare and underestimated.",
        mlflow_conn_id=MLFLOW,
        storage_conn_id=settings.lake_conn_id(),
    )

    @task
    def test_split(manifest_uri: str) -> str:
        """The training set's test split (scored by the champion after the release)."""
        import json

        from airflow.sdk import ObjectStoragePath

        from airflow_mlops.training.spec import manifest_path

        manifest = json.loads(ObjectStoragePath(manifest_uri, conn_id=settings.lake_conn_id()).read_text())
        return str(manifest_path(manifest["splits"]["test"]["uri"], manifest_uri))

    split = test_split(training_set.output)
    batch_score = BatchPredictionOperator(
        task_id="batch_score",
        input_uri=split,
        model_uri=f"models:/{MODEL}@champion",
        output_uri=f"{LAKE}/predictions/{MODEL}/{RUN_FOLDER}.parquet",
        key_columns=["flight_id"],
        mlflow_conn_id=MLFLOW,
        storage_conn_id=settings.lake_conn_id(),
    )
    train >> release >> batch_score

    @task
    def train_gbm(manifest_uri: str) -> dict:
        """The user's scikit-learn training (``flights.arrival_gbm.train``), logged to MLflow."""
        from airflow_mlops.hooks.mlflow import MlflowHook
        from flights.arrival_gbm import train

        with MlflowHook(MLFLOW).activated("flights_arrival_delay") as experiment_id:  # MLflow's API on it
            return train(manifest_uri, FEATURES, str(experiment_id))

    trained = train_gbm(training_set.output)
    release_gbm = release_task_group(
        model_name=GBM,
        train=trained,
        training_set="{{ ti.xcom_pull(task_ids='training_set') }}",
        report_dir=f"{DATA}/evaluations/{GBM}/{RUN_FOLDER}",
        card_dir=f"{DATA}/model_cards/{GBM}/{RUN_FOLDER}",
        gate=str(HERE / "gates" / "arrival_delay.yaml"),
        slices=["carrier", "origin"],
        auto_approve=settings.auto_approve(),
        log_fields=["flight_id"],  # kept in the request log: the monitors join labels by it
        canary_weight=None,
        intended_use="Estimate how late a scheduled flight will arrive, in minutes, for planning.",
        limitations="Trained on New York City departures of 2013 only; a tree ensemble cannot "
        "predict delays beyond those it saw.",
        mlflow_conn_id=MLFLOW,
        storage_conn_id=settings.lake_conn_id(),
        group_id="release_gbm",
        prefix_group_id=True,  # a second release group in the DAG: its tasks are release_gbm.<task>
    )
    gbm_batch_score = BatchPredictionOperator(
        task_id="batch_score_gbm",
        input_uri=split,
        model_uri=f"models:/{GBM}@champion",
        output_uri=f"{LAKE}/predictions/{GBM}/{RUN_FOLDER}.parquet",
        key_columns=["flight_id"],
        mlflow_conn_id=MLFLOW,
        storage_conn_id=settings.lake_conn_id(),
    )
    trained >> release_gbm
    release_gbm >> gbm_batch_score
