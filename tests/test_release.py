"""The release task group: the tasks a training DAG used to copy, wired to the training task."""

from __future__ import annotations

import pytest

from airflow_mlops.exceptions import MLOpsConfigError

ARGUMENTS = {
    "training_set": "{{ ti.xcom_pull(task_ids='training_set') }}",
    "report_dir": "/r/{{ run_id }}",
    "card_dir": "/c/{{ run_id }}",
    "gate": {"rules": [{"metric": "rmse", "max": 45.0}]},
    "slices": ["carrier"],
}


def training_dag(dag_id: str = "d", **release):
    from airflow.sdk import DAG

    from airflow_mlops.operators.train import LightningTrainOperator
    from airflow_mlops.release import release_task_group

    with DAG(dag_id, schedule=None) as dag:
        fit = LightningTrainOperator(
            task_id="fit", training_set="m.json", output_dir="o", checkpoint_root="c", model="my.net:Net"
        )
        fit >> release_task_group(model_name="minutes", train=fit, **{**ARGUMENTS, **release})
    return dag


def path(dag) -> list[str]:
    """The group's tasks in order: each the one downstream task of the one before (the training task
    is upstream of ``evaluate``, and of ``register`` through its XCom)."""
    order = ["evaluate"]
    assert dag.get_task("evaluate").upstream_task_ids == {"fit"}
    while downstream := dag.get_task(order[-1]).downstream_task_ids:
        (next_id,) = downstream
        order.append(next_id)
    assert len(order) == len(dag.tasks) - 1, sorted(dag.task_ids)
    return order


def test_the_group_releases_the_training_tasks_model_through_the_canary() -> None:
    dag = training_dag()
    assert path(dag) == [
        "evaluate", "gate", "register", "approve", "canary", "canary_analysis", "promote", "rollout"
    ]  # fmt: skip
    evaluate, register = dag.get_task("evaluate"), dag.get_task("register")
    assert evaluate.model_uri == "{{ ti.xcom_pull(task_ids='fit')['model_uri'] }}"
    assert evaluate.champion_uri == "models:/minutes@champion" and list(evaluate.slices) == ["carrier"]
    assert dag.get_task("gate").report_uri == "{{ ti.xcom_pull(task_ids='evaluate')['report_uri'] }}"
    assert register.training_result.operator.task_id == "fit"  # the training task's XCom, not a string
    assert dag.get_task("approve").auto_approve is False
    assert dag.get_task("canary").canary_weight == 0.1
    rollout = dag.get_task("rollout")
    assert rollout.alias == "champion" and rollout.version == ""  # follows the alias promote set
    assert dag.task_group_dict["release"].children.keys() >= {"evaluate", "rollout"}


def test_without_a_canary_or_a_deployment() -> None:
    assert path(training_dag(canary_weight=None)) == [
        "evaluate",
        "gate",
        "register",
        "approve",
        "promote",
        "rollout",
    ]
    assert path(training_dag(deploy=False)) == ["evaluate", "gate", "register", "approve", "promote"]


def test_two_groups_in_one_dag_keep_their_tasks_apart() -> None:
    from airflow.sdk import DAG

    from airflow_mlops.operators.train import LightningTrainOperator
    from airflow_mlops.release import release_task_group

    with DAG("two", schedule=None) as dag:
        for name in ("a", "b"):
            fit = LightningTrainOperator(
                task_id=f"fit_{name}", training_set="m", output_dir="o", checkpoint_root="c", model="m:N"
            )
            fit >> release_task_group(
                model_name=name, train=fit, group_id=f"release_{name}", prefix_group_id=True, **ARGUMENTS
            )
    gate = dag.get_task("release_b.gate")
    assert gate.report_uri == "{{ ti.xcom_pull(task_ids='release_b.evaluate')['report_uri'] }}"
    assert dag.get_task("release_a.evaluate").model_uri == "{{ ti.xcom_pull(task_ids='fit_a')['model_uri'] }}"


def test_a_canary_weight_outside_0_1_is_refused() -> None:
    with pytest.raises(
        MLOpsConfigError, match=r"release 'minutes': canary_weight must be within \(0, 1\), got 1.5"
    ):
        training_dag(canary_weight=1.5)


def test_rollout_steps_validate_the_infrastructure_before_approval_and_roll_out_in_steps() -> None:
    dag = training_dag(rollout_steps=[0.1, 0.5, 1.0], infra_limits={"max_p99_ms": 300}, log_fields=["id"])
    assert path(dag) == [
        "evaluate", "gate", "register", "infra_validate", "approve", "stepwise_rollout", "promote", "rollout"
    ]  # fmt: skip
    infra, stepwise = dag.get_task("infra_validate"), dag.get_task("stepwise_rollout")
    version = "{{ ti.xcom_pull(task_ids='register')['version'] }}"
    assert infra.version == stepwise.version == version and infra.endpoint == "minutes"
    assert infra.limits["max_p99_ms"] == 300 and infra.champion_alias == "champion"
    assert stepwise.steps == [0.1, 0.5, 1.0] and stepwise.require_infra_blessing is True
    assert stepwise.criteria["min_requests"] == 200 and stepwise.deferrable is True
    assert stepwise.log_fields == ["id"] and stepwise.step_timeout == 6 * 3600
    assert dag.get_task("rollout").alias == "champion"


def test_rollout_steps_without_a_deployment_or_with_bad_steps_are_refused() -> None:
    with pytest.raises(
        MLOpsConfigError, match="rollout_steps roll a version out to the model server; with deploy=False"
    ):
        training_dag(rollout_steps=[0.5, 1.0], deploy=False)
    with pytest.raises(MLOpsConfigError, match=r"steps must increase and end at 1.0"):
        training_dag(rollout_steps=[0.5, 0.2])
