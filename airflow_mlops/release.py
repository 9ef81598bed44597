"""The release path of a trained model as one task group: evaluate -> gate -> register -> approve ->
canary -> canary analysis -> promote -> rollout; or, with ``rollout_steps``, evaluate -> gate ->
register -> infra validation -> approve -> stepwise rollout -> promote -> rollout.

A training DAG adds it in one call after its training task::

    from airflow_mlops.release import release_task_group

    train = LightningTrainOperator(task_id="train", ...)
    train >> release_task_group(
        model_name="arrival_delay",
        train=train,
        training_set="{{ ti.xcom_pull(task_ids='training_set') }}",
        report_dir="/srv/evaluations/arrival_delay/{{ run_id }}",
        card_dir="/srv/model_cards/arrival_delay/{{ run_id }}",
        gate={"rules": [{"metric": "rmse", "max": 45.0}]},
        slices=["carrier"],
    )

``rollout`` deploys the ``champion`` alias, not a version number: the endpoint then follows the
alias, so a rollback or promotion made later in the MLOps pages, with ``airflow-mlops rollback`` or
in MLflow's UI moves the traffic too (the model server looks the alias up every
``--follow-aliases-every`` seconds).

Every task is the operator a DAG would write by hand (the docstrings of each say what it pushes and
emits), wired through XCom by task id; the group only saves the copying. No heavy import here:
a DAG file that calls it still parses with ``airflow.sdk`` and our operators alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import TaskGroup, chain

from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.hooks.mlflow import MlflowHook
from airflow_mlops.operators.deploy import DeployModelOperator
from airflow_mlops.operators.evaluate import EvaluateModelOperator, EvaluationGateOperator
from airflow_mlops.operators.infra import InfraValidateOperator
from airflow_mlops.operators.registry import PromoteModelOperator, RegisterModelOperator
from airflow_mlops.operators.rollout import StepwiseRolloutOperator
from airflow_mlops.sensors.approval import ModelApprovalSensor
from airflow_mlops.sensors.canary import CanaryAnalysisSensor

#: The canary passes with at least 200 requests, at most one point more errors than the primary and
#: a p99 latency at most 1.5 times the primary's (``CanaryAnalysisSensor``'s criteria).
DEFAULT_CANARY_CRITERIA: Mapping[str, Any] = {
    "min_requests": 200,
    "max_error_rate_increase": 0.01,
    "max_latency_ratio": 1.5,
}


def release_task_group(
    *,
    model_name: str,
    train: Any,
    training_set: str,
    report_dir: str,
    card_dir: str,
    gate: str | Mapping[str, Any],
    slices: Sequence[str] = (),
    champion_alias: str | None = "champion",
    endpoint: str | None = None,
    deploy: bool = True,
    canary_weight: float | None = 0.1,
    canary_criteria: Mapping[str, Any] | None = None,
    canary_poke_interval: float = 15,
    canary_timeout: timedelta = timedelta(hours=6),
    rollout_steps: Sequence[float] | None = None,
    infra_limits: Mapping[str, Any] | None = None,
    auto_approve: bool = False,
    approval_timeout: timedelta = timedelta(days=7),
    intended_use: str = "",
    limitations: str = "",
    mlflow_conn_id: str = MlflowHook.default_conn_name,
    model_server_conn_id: str = "mlops_model_server",
    log_fields: Sequence[str] = (),
    storage_conn_id: str | None = None,
    group_id: str = "release",
    prefix_group_id: bool = False,
) -> TaskGroup:
    """The release tasks of ``train``'s model, in a task group (call it inside a ``DAG`` context).

    :param model_name: the registered model's name, and the endpoint's unless ``endpoint`` is given.
    :param train: the training task (``LightningTrainOperator``, ``SageMakerLightningTrainOperator``
        or any task whose XCom is a training result with ``model_uri`` and ``mlflow_run_id``).
    :param training_set: the training set manifest's URI (templated), whose test split is evaluated.
    :param report_dir, card_dir: where the evaluation report and the model card go (templated).
    :param gate: a gate file's path or the gate itself (``EvaluationGateOperator``).
    :param slices: columns to slice the evaluation by (and the gate's fairness rules).
    :param champion_alias: the alias of the model the candidate is compared with (None: no champion).
    :param endpoint: the model server's endpoint (default ``model_name``).
    :param deploy: False stops after promotion (a model that a batch job uses, not a server).
    :param canary_weight: the candidate's share of the traffic during the canary; None deploys it to
        all traffic at once after approval (no canary and no analysis).
    :param canary_criteria: ``CanaryAnalysisSensor``'s criteria (default ``DEFAULT_CANARY_CRITERIA``),
        or each rollout step's.
    :param rollout_steps: the candidate's traffic shares, e.g. ``[0.1, 0.5, 1.0]``: instead of one
        canary, ``infra_validate`` (``InfraValidateOperator``: the version proven servable in a
        sandboxed server, replaying the endpoint's recent requests, before approval) and
        ``stepwise_rollout`` (``StepwiseRolloutOperator``: a canary per step judged on its own
        traffic, requiring the infra blessing, rolled back automatically) replace ``canary`` and
        ``canary_analysis``. ``canary_timeout`` bounds each step, ``canary_poke_interval`` its polls.
    :param infra_limits: ``InfraValidateOperator``'s limits (with ``rollout_steps``).
    :param auto_approve: approve without a person (a development home's policy).
    :param approval_timeout: how long ``approve`` waits for a person.
    :param intended_use, limitations: the model card's sections.
    :param log_fields: request fields outside the model's signature the server's request log keeps
        (the ids a ``PerformanceMonitorOperator``'s ``label_key`` joins labels by, e.g. ``flight_id``).
    :param storage_conn_id: the ``aws`` connection of an object store (``s3://``) holding the model
        package, the training set, the reports and the model card (evaluate, gate, register); None:
        local paths.
    :param group_id: the group's id; with ``prefix_group_id`` (default False) the tasks keep their
        plain ids (``evaluate``, ``gate``, ``register``, ...), so the group is only a frame in the UI;
        a DAG with two release groups sets it True.

    Tasks: ``evaluate``, ``gate``, ``register``, ``approve``, then ``canary``,
    ``canary_analysis``, ``promote``, ``rollout`` (``promote``, ``rollout`` without a canary;
    ``promote`` alone when ``deploy`` is False); with ``rollout_steps``: ``evaluate``, ``gate``,
    ``register``, ``infra_validate``, ``approve``, ``stepwise_rollout``, ``promote``, ``rollout``.
    Each pushes what its operator's docstring says.
    """
    if rollout_steps is not None and not deploy:
        raise MLOpsConfigError(
            f"release {model_name!r}: rollout_steps roll a version out to the model server; with deploy=False there is none"
        )
    if canary_weight is not None and not 0 < canary_weight < 1:
        raise MLOpsConfigError(
            f"release {model_name!r}: canary_weight must be within (0, 1), got {canary_weight!r}"
        )
    train_id = train.task_id if hasattr(train, "task_id") else str(train.operator.task_id)
    endpoint = endpoint or model_name

    with TaskGroup(group_id=group_id, prefix_group_id=prefix_group_id) as group:

        def pull(task_id: str, key: str) -> str:
            return f"{{{{ ti.xcom_pull(task_ids='{task_id}')['{key}'] }}}}"

        evaluate = EvaluateModelOperator(
            task_id="evaluate",
            model_uri=pull(train_id, "model_uri"),
            training_set=training_set,
            report_dir=report_dir,
            champion_uri=f"models:/{model_name}@{champion_alias}" if champion_alias else "",
            slices=list(slices),
            mlflow_conn_id=mlflow_conn_id,
            mlflow_run_id=pull(train_id, "mlflow_run_id"),
            storage_conn_id=storage_conn_id,
        )
        gate_task = EvaluationGateOperator(
            task_id="gate",
            report_uri=pull(evaluate.task_id, "report_uri"),
            gate=gate,
            mlflow_conn_id=mlflow_conn_id,
            mlflow_run_id=pull(train_id, "mlflow_run_id"),
            storage_conn_id=storage_conn_id,
        )
        register = RegisterModelOperator(
            task_id="register",
            name=model_name,
            training_result=train.output if hasattr(train, "output") else train,
            report_uri=pull(evaluate.task_id, "report_uri"),
            card_dir=card_dir,
            mlflow_conn_id=mlflow_conn_id,
            intended_use=intended_use,
            limitations=limitations,
            storage_conn_id=storage_conn_id,
        )
        version = pull(register.task_id, "version")
        approve = ModelApprovalSensor(
            task_id="approve",
            name=model_name,
            version=version,
            mlflow_conn_id=mlflow_conn_id,
            auto_approve=auto_approve,
            deferrable=True,
            timeout=approval_timeout.total_seconds(),
        )
        promote = PromoteModelOperator(
            task_id="promote", name=model_name, version=version, mlflow_conn_id=mlflow_conn_id
        )
        steps: list[Any] = [evaluate, gate_task, register, approve]
        if rollout_steps is not None:
            infra = InfraValidateOperator(
                task_id="infra_validate",
                model_name=model_name,
                version=version,
                endpoint=endpoint,
                champion_alias=champion_alias or "",
                limits=infra_limits,
                mlflow_conn_id=mlflow_conn_id,
                storage_conn_id=storage_conn_id,
            )
            stepwise = StepwiseRolloutOperator(
                task_id="stepwise_rollout",
                endpoint=endpoint,
                model_name=model_name,
                version=version,
                steps=rollout_steps,
                criteria=dict(canary_criteria or DEFAULT_CANARY_CRITERIA),
                step_timeout=canary_timeout.total_seconds(),
                poll_interval=canary_poke_interval,
                deferrable=True,
                require_infra_blessing=True,
                mlflow_conn_id=mlflow_conn_id,
                model_server_conn_id=model_server_conn_id,
                log_fields=log_fields,
            )
            steps = [evaluate, gate_task, register, infra, approve, stepwise]
        elif deploy and canary_weight is not None:
            canary = DeployModelOperator(
                task_id="canary",
                endpoint=endpoint,
                model_name=model_name,
                version=version,
                canary_weight=canary_weight,
                model_server_conn_id=model_server_conn_id,
                log_fields=log_fields,
                reason="canary of the approved challenger",
            )
            analysis = CanaryAnalysisSensor(
                task_id="canary_analysis",
                endpoint=endpoint,
                criteria=dict(canary_criteria or DEFAULT_CANARY_CRITERIA),
                model_name=model_name,
                version=version,
                mlflow_conn_id=mlflow_conn_id,
                model_server_conn_id=model_server_conn_id,
                deferrable=True,
                timeout=canary_timeout.total_seconds(),
                poke_interval=canary_poke_interval,
            )
            steps += [canary, analysis]
        steps.append(promote)
        if deploy:
            steps.append(
                DeployModelOperator(
                    task_id="rollout",
                    endpoint=endpoint,
                    model_name=model_name,
                    alias="champion",  # what promote just set; the endpoint then follows it
                    model_server_conn_id=model_server_conn_id,
                    log_fields=log_fields,
                    reason="the champion takes all the traffic",
                )
            )
        chain(*steps)
    return group
