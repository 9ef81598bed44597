"""Reference DAG: an A/B test of a challenger version against the champion on live traffic, ended by
its analysis (intervals, the probability of being better, the samples needed) and a promotion only
when the evidence is there."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, Param, PokeReturnValue, task

from airflow_mlops import settings
from airflow_mlops.events import latest_event_value
from airflow_mlops.layout import RUN_FOLDER
from airflow_mlops.operators.deploy import DeployModelOperator
from airflow_mlops.operators.experiment import ExperimentAnalysisOperator
from airflow_mlops.operators.monitor import write_dataset_labels
from airflow_mlops.operators.registry import PromoteModelOperator

LAKE = settings.lake_uri()
DATA = LAKE.removeprefix("file://")
MODEL = "flight_delay"
MLFLOW = settings.mlflow_conn_id()
REQUEST_LOG = settings.request_log_uri()
#: The smallest AUC difference worth acting on: the analysis reports the predictions per variant
#: it needs, and no winner is declared before both variants have them.
MIN_EFFECT = 0.02
DEPLOYED_AT = "{{ ti.xcom_pull(task_ids='deploy')['deployment']['deployed_at'] }}"

# Emitted by flights_validate.py: its newest version has the labels (is_delayed) of every validated month.
FLIGHTS_DELAY_DATASET = Asset(name="flights_delay_dataset", group="flights")

with DAG(
    dag_id="flights_experiment",
    schedule=None,  # triggered with the challenger to test (the trigger form asks for it)
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,  # one experiment on the endpoint at a time
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "challenger": Param(
            type="string",
            minLength=1,
            description="The flight_delay version to test against the champion (it must be infra-blessed).",
        ),
        "samples_per_variant": Param(
            2000,
            type="integer",
            minimum=50,
            description="Predictions each variant serves before the one analysis (the planned sample size).",
        ),
    },
    tags=["mlops", "flights", "experiment", "serving"],
    doc_md=f"""
### A/B test a challenger against the champion
Trigger with `{{"challenger": "<version>", "samples_per_variant": 2000}}` (the trigger form asks).

1. `deploy`: the `flight_delay` endpoint splits its traffic evenly: variant `a` follows the
   `champion` alias (the control), variant `b` serves the challenger. A challenger without an
   infra blessing (`InfraValidateOperator`, part of `flights_training`'s release) is refused.
2. `enough_traffic`: waits (rescheduled every 30 s, for up to a day) until each variant has
   served `samples_per_variant` predictions. The sample size is fixed before the test starts:
   looking at the results until one variant happens to lead crowns winners that are not.
3. `labels`: `flight_id, is_delayed` of the newest `flights_delay` dataset version (or conf
   `manifest_uri`), the outcome of each served flight once it has landed.
4. `analysis`: `ExperimentAnalysisOperator` over the window from the deployment to the sensor's
   end: each variant's AUC with its 95 % bootstrap interval, the difference `b - a` with its
   interval, P(b better than a), and the predictions per variant an effect of {MIN_EFFECT} AUC
   needs. Its gate passes when P(b better) >= 0.95 and both variants have those samples; a failed
   gate skips the promotion. The report goes to `data/lake/experiments/flight_delay/<run>/`,
   the figures to the MLflow experiment `flight_delay-experiments`, and **MLOps -> Deployments**
   shows the newest analysis under the endpoint.
5. `promote`: the challenger becomes the champion (it must be approved, as for any promotion).
6. `conclude` (a teardown: it runs whatever happened before it, without hiding a failure): the
   endpoint goes back to one variant following the `champion` alias, the new one when promoted.
""",
):
    deploy = DeployModelOperator(
        task_id="deploy",
        endpoint=MODEL,
        variants={
            "a": {"name": MODEL, "alias": "champion"},
            "b": {"name": MODEL, "version": "{{ params.challenger }}"},
        },
        policy={"kind": "ab", "weights": {"a": 1, "b": 1}},
        log_fields=["flight_id"],  # kept in the request log: the labels join by it
        require_infra_blessing=True,
        reason="A/B test of v{{ params.challenger }} against the champion ({{ run_id }})",
        mlflow_conn_id=MLFLOW,
    )

    @task.sensor(poke_interval=30, timeout=24 * 3600, mode="reschedule")
    def enough_traffic(since: str, samples: int) -> PokeReturnValue:
        """Done (its XCom: the window's end) once variants ``a`` and ``b`` each served ``samples``."""
        from datetime import UTC

        from airflow_mlops.operators.experiment import predictions_per_variant

        now = datetime.now(UTC).isoformat()
        served = predictions_per_variant(REQUEST_LOG, MODEL, since, now)
        print(f"predictions per variant since {since}: {served} (each needs {samples})")
        done = all(served.get(variant, 0) >= int(samples) for variant in ("a", "b"))
        return PokeReturnValue(is_done=done, xcom_value=now if done else None)

    @task(inlets=[FLIGHTS_DELAY_DATASET])
    def labels(**context: Any) -> str:
        """``flight_id, is_delayed`` of the newest dataset version's flights, as one Parquet file."""
        return write_dataset_labels(
            latest_event_value(context, FLIGHTS_DELAY_DATASET, "manifest_uri"),
            ["flight_id", "is_delayed"],
            f"{LAKE}/labels/{MODEL}",
            settings.lake_conn_id(),
        )

    window_end = enough_traffic(DEPLOYED_AT, "{{ params.samples_per_variant }}")
    analysis = ExperimentAnalysisOperator(
        task_id="analysis",
        endpoint=MODEL,
        request_log=REQUEST_LOG,
        start=DEPLOYED_AT,
        end="{{ ti.xcom_pull(task_ids='enough_traffic') }}",
        control="a",
        variants=["a", "b"],  # not the single variant answering until the switch
        labels=labels(),
        label_key="flight_id",
        label_column="is_delayed",
        min_effect=MIN_EFFECT,
        gate={
            "rules": [
                {"experiment": "probability_better", "min": 0.95},
                {"experiment": "sample_fraction", "min": 1.0},
            ]
        },
        report_dir=f"{DATA}/experiments/{MODEL}/{RUN_FOLDER}",
        mlflow_conn_id=MLFLOW,
    )
    promote = PromoteModelOperator(
        task_id="promote",
        name=MODEL,
        version="{{ params.challenger }}",
        reason="won the A/B test: {{ ti.xcom_pull(task_ids='analysis')['decision'] }}",
        mlflow_conn_id=MLFLOW,
    )
    conclude = DeployModelOperator(
        task_id="conclude",
        endpoint=MODEL,
        model_name=MODEL,
        alias="champion",
        log_fields=["flight_id"],
        reason="A/B test over ({{ run_id }}): the champion serves all traffic",
        mlflow_conn_id=MLFLOW,
    )
    deploy >> window_end >> analysis >> promote >> conclude.as_teardown(setups=deploy)
