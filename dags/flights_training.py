"""Reference DAG: train the flights delay model on the newest training set, in DDP processes."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, task

from airflow_mlops import settings
from airflow_mlops.events import latest_event_value, run_input
from airflow_mlops.layout import RUN_FOLDER
from airflow_mlops.operators.train import LightningTrainOperator
from airflow_mlops.release import release_task_group

LAKE = settings.lake_uri()
DATA = LAKE.removeprefix("file://")

# Emitted by flights_features.py.
FLIGHT_FEATURES = Asset(name="flight_features", group="flights")
# Emitted by flights_tuning.py: extra["best_params"] of the newest event override the defaults below.
FLIGHT_DELAY_HYPERPARAMETERS = Asset(name="flight_delay_hyperparameters", group="flights")
# Emitted by flights_monitoring.py when the served model drifts or its performance drops.
MODEL_DRIFT = Asset(name="model_drift", group="flights")
DEFAULT_HYPERPARAMETERS = {"hidden": 64, "layers": 2, "lr": 0.002}
MODEL = "flight_delay"
MLFLOW = settings.mlflow_conn_id()
GATE = str(Path(__file__).parent / "gates" / "flight_delay.yaml")

with DAG(
    dag_id="flights_training",
    schedule=(FLIGHT_FEATURES | MODEL_DRIFT),
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["mlops", "flights", "training", "lightning", "event-driven"],
    doc_md="""
### Train the flights delay model
Runs when a new training set exists (`flight_features`) OR when the served model drifted
(`model_drift`, from `flights_monitoring`): the run's triggering Asset events show which, and
`training_set` logs them (drifted features and scores). `training_set` names the training set: conf
`{"manifest_uri": ...}`, the triggering `flight_features` event, or (a drift-triggered run) the
newest `flight_features` event. `train` checks the spec (class paths, the data) and starts the
training driver `python -m airflow_mlops.training`, which checks the classes and hyperparameters
(a bad spec fails the task without a retry, nothing started) and then starts 2 DDP processes
through torchrun (gloo on CPU). `hyperparameters` are the defaults, or those of the newest
`flight_delay_hyperparameters` event (the best trial of `flights_tuning`), or conf
`{"hyperparameters": ...}`. The model is a network with embeddings for carrier, origin and
destination, the preprocessing statistics of the training split stored with it. The workers'
output is in the task log. Params, metrics (test AUC and log loss against the trivial baseline,
samples/s) and the model files go to MLflow (the `mlflow_default` connection); the model is saved as
a state dict (loaded with `weights_only=True`) plus `config.json`. A retry resumes from the last
epoch's checkpoint. The result (MLflow run id, model URI, metrics) is the task's XCom.

Then the release path. `evaluate` scores the held-out split with the new model and with the
current champion (`models:/flight_delay@champion`). It computes metrics overall and per carrier,
origin and month, fairness gaps, and permutation importance. It writes `evaluation.html`
(plots) and `.json`, and logs them to the run. `gate` applies `dags/gates/flight_delay.yaml`.
If a rule fails, the run is tagged rejected with the reasons, and `gate` and everything after
it are skipped (the run itself does not fail). `register` creates a model version with lineage
tags, a signature and a model card (alias `challenger`). `approve` waits in the triggerer for a person: the
approve or reject button on the **MLOps → Models** page (which shows the version's metrics, its
slices against the champion and its model card), or
`airflow-mlops approve|reject --model flight_delay --version N --why ...`; with
`[mlops] auto_approve` (the demo's home) the policy approves at once. `promote` moves the
`champion` alias and archives the previous champion. Runs of this DAG never overlap
(`max_active_runs=1`), so neither do promotions.

Before it takes traffic, `infra_validate` proves the registered version servable: the model server
runs as a sandbox on the worker (its own process and loopback port), the version is deployed there
as production would, and its input example, the champion's and the endpoint's 200 most recent
logged requests are replayed. It must load, answer, accept every request the champion accepts, and
stay within the latency and memory limits; the verdict is the version's `infra_blessing` tag (a
version that fails is recorded rejected and the rest is skipped). Approval comes after it.

Stepwise rollout on the model server (connection `mlops_model_server`, started with
`airflow-mlops serve`): `stepwise_rollout` sends 10 %, then 50 % of the `flight_delay` endpoint's
traffic to the blessed version beside the current model (the very first model is deployed alone).
Each step waits in the triggerer for 200 requests to the candidate and compares its failures
(server errors and the 422s its signature causes) and p99 latency with the primary's, on that
step's own traffic; a step that fails puts the current model back alone, records the version
rejected with the step and the reasons, and skips `promote` and `rollout`. After the last step the
version serves alone; `promote` makes it the registry's champion and `rollout` has the endpoint
follow the `champion` alias. Every step's decision is on the version (tag `rollout`) and in the
task's XCom. Behind a load balancer (the scale-out stack: `python -m devtools stack up`), the
connection's extra `replicas` lists the replicas: every deployment and rollback reaches each of
them, and each step's analysis adds up their traffic. A failed gate, a rollback and a pending
approval are alerts (`[mlops] alert_email_to`, `alert_slack_conn_id`).

In the UI: `train`, `evaluate` and `register` link to the **MLflow run** (with `[mlops]
mlflow_ui_url`), `evaluate` to its **Evaluation report**, `register` to the **Model version**;
**MLOps → Deployments** shows each step's traffic split, requests, errors and p99 live. Every
task's inputs and outputs go to OpenLineage (`airflow-mlops lineage --endpoint flight_delay`).
""",
):

    @task(inlets=[FLIGHT_FEATURES])
    def training_set(**context: Any) -> str:
        """The training set manifest: the run's conf, the triggering features event, or the newest one."""
        for asset, events in (context.get("triggering_asset_events") or {}).items():
            for event in events:
                logging.getLogger("airflow.task").info(
                    "triggered by %s at %s: %s", getattr(asset, "name", asset), event.timestamp, event.extra
                )
        # A run started by model_drift (or by hand) retrains on the newest training set.
        return str(run_input(context, FLIGHT_FEATURES, "manifest_uri"))

    @task(inlets=[FLIGHT_DELAY_HYPERPARAMETERS])
    def hyperparameters(**context: Any) -> dict[str, Any]:
        """The defaults, overridden by conf {"hyperparameters": ...} or the newest tuning study's best."""
        best = latest_event_value(context, FLIGHT_DELAY_HYPERPARAMETERS, "best_params", default={})
        chosen = (context["dag_run"].conf or {}).get("hyperparameters") or best
        return {**DEFAULT_HYPERPARAMETERS, **chosen}

    train = LightningTrainOperator(
        task_id="train",
        training_set=training_set(),
        model="flights.model:FlightDelayModel",
        data="flights.model:FlightDataModule",
        mlflow_experiment="flights",
        output_dir=f"{DATA}/models/flight_delay/{RUN_FOLDER}",
        checkpoint_root=f"{DATA}/checkpoints",
        hyperparameters=hyperparameters(),
        batch_size=512,
        devices=2,
        max_epochs=3,
        mlflow_conn_id=MLFLOW,
        storage_conn_id=settings.lake_conn_id(),  # an s3:// lake: checkpoints and the model in the bucket
        execution_timeout=timedelta(minutes=30),
    )
    # evaluate -> gate -> register -> infra_validate -> approve -> stepwise_rollout -> promote -> rollout
    train >> release_task_group(
        model_name=MODEL,
        train=train,
        training_set="{{ ti.xcom_pull(task_ids='training_set') }}",
        report_dir=f"{DATA}/evaluations/flight_delay/{RUN_FOLDER}",
        card_dir=f"{DATA}/model_cards/flight_delay/{RUN_FOLDER}",
        gate=GATE,
        slices=["carrier", "origin", "month"],
        auto_approve=settings.auto_approve(),
        log_fields=["flight_id"],  # kept in the request log: the monitors join labels by it
        rollout_steps=[0.1, 0.5, 1.0],  # infra validation first, then a canary per step
        canary_poke_interval=5,  # each step's statistics read every 5 s in the triggerer
        intended_use="Rank scheduled flights by the risk of arriving more than 15 minutes late.",
        limitations="Trained on New York City departures of 2013 only; not a causal model.",
        mlflow_conn_id=MLFLOW,
        storage_conn_id=settings.lake_conn_id(),
    )
