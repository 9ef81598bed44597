"""Governance on a real MLflow registry (SQLite, and Postgres on a real server): states, promotion
under overlap, rollback twice, approval and rejection."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from airflow_mlops.exceptions import TriggerEventError
from airflow_mlops.registry.governance import GovernanceError, alias_version, decide, promote, rollback, state
from tests.connections import mlflow_conn

pytestmark = pytest.mark.integration
NAME = "flight_delay"


def registry(tracking_uri: str, folder: Path, versions: int):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(f"gov-{folder.name}", artifact_location=str(folder / "artifacts"))
    client.create_registered_model(NAME)
    for _ in range(versions):
        run = client.create_run(experiment)
        client.create_model_version(
            NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags={"state": "candidate"}
        )
    return client


@pytest.fixture
def client(tmp_path: Path):
    return registry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, versions=3)


def approve_and_promote(client, version: str) -> dict:
    decide(client, NAME, version, True, "alice", "gate passed, reviewed")
    return promote(client, NAME, version, "alice", "better AUC")


def test_promotion_records_who_when_why_and_archives_the_previous_champion(client) -> None:
    approve_and_promote(client, "1")
    outcome = approve_and_promote(client, "2")
    assert outcome == {"champion": "2", "previous": "1", "changed": True}
    assert (state(client, NAME, "1"), state(client, NAME, "2")) == ("archived", "champion")
    assert alias_version(client, NAME, "previous_champion") == "1"
    tags = client.get_model_version(NAME, "2").tags
    assert (
        tags["state_by"] == "alice"
        and tags["state_reason"] == "better AUC"
        and tags["previous_champion"] == "1"
    )
    assert [h["state"] for h in json.loads(tags["history"])] == ["approved", "champion"]
    assert "replaced by v2" in client.get_model_version(NAME, "1").tags["state_reason"]
    assert promote(client, NAME, "2", "bob", "again")["changed"] is False  # idempotent


def test_rollback_twice_walks_back_through_the_champions(client) -> None:
    for version in ("1", "2", "3"):
        approve_and_promote(client, version)
    assert rollback(client, NAME, "carol", "latency regression") == {"champion": "2", "rolled_back": "3"}
    assert rollback(client, NAME, "carol", "still bad") == {"champion": "1", "rolled_back": "2"}
    assert (
        alias_version(client, NAME, "champion") == "1"
        and alias_version(client, NAME, "previous_champion") is None
    )
    assert [state(client, NAME, v) for v in ("1", "2", "3")] == ["champion", "archived", "archived"]
    with pytest.raises(GovernanceError, match="champion v1 has no recorded predecessor"):
        rollback(client, NAME, "carol", "once more")


def test_overlapping_promotions_leave_exactly_one_champion_and_every_version_a_state(client) -> None:
    approve_and_promote(client, "1")
    for version in ("2", "3"):
        decide(client, NAME, version, True, "alice", "ok")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda v: promote(client, NAME, v, "dag", f"run {v}"), ["2", "3"]))
    champion = alias_version(client, NAME, "champion")
    states = {v: state(client, NAME, v) for v in ("1", "2", "3")}
    assert (
        champion in {"2", "3"}
        and list(states.values()).count("champion") == 1
        and states[champion] == "champion"
    )
    assert set(states.values()) == {"champion", "archived"}


def test_two_dag_runs_promoting_at_once_through_the_operator(client, tmp_path: Path) -> None:
    """Two runs' promote tasks (the operator, each with its own run's context) started together."""
    from types import SimpleNamespace

    from airflow_mlops.operators.registry import PromoteModelOperator

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    approve_and_promote(client, "1")
    for version in ("2", "3"):
        decide(client, NAME, version, True, "alice", "ok")
    barrier = threading.Barrier(2)

    def run(version: str) -> dict:
        operator = PromoteModelOperator(
            task_id="promote", name=NAME, version=version, mlflow_conn_id=mlflow_conn(tracking)
        )
        barrier.wait()  # both tasks start at the same moment
        return operator.execute(
            {"dag_run": SimpleNamespace(dag_id="flights_training", run_id=f"run_{version}")}
        )  # type: ignore[arg-type]

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(run, ["2", "3"]))
    champion = alias_version(client, NAME, "champion")
    assert {o["champion"] for o in outcomes} <= {"2", "3"} and champion in {"2", "3"}
    states = {v: state(client, NAME, v) for v in ("1", "2", "3")}
    assert list(states.values()).count("champion") == 1 and states[champion] == "champion"
    assert (
        states["1"] == "archived" and len(client.search_model_versions(f"name = '{NAME}'")) == 3
    )  # none lost
    history = json.loads(client.get_model_version(NAME, champion).tags["history"])
    assert history[-1]["by"] == f"PromoteModelOperator (flights_training/run_{champion})"


def test_rejection_and_refused_transitions(client) -> None:
    decide(client, NAME, "1", False, "bob", "fairness gap too large")
    assert state(client, NAME, "1") == "rejected"
    with pytest.raises(GovernanceError, match=r"v1 is 'rejected'; only an approved version can be promoted"):
        promote(client, NAME, "1", "bob", "try")
    with pytest.raises(GovernanceError, match=r"v1 is 'rejected'; only a candidate can be approved"):
        decide(client, NAME, "1", True, "bob", "changed my mind")
    with pytest.raises(GovernanceError, match=r"who .* and why .* are required"):
        decide(client, NAME, "2", True, "", "")
    with pytest.raises(GovernanceError, match="there is no champion"):
        rollback(client, NAME, "bob", "nothing")


def test_the_registry_on_a_real_postgres_backend(postgres_url: str, tmp_path: Path) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("DROP DATABASE IF EXISTS mlflow_registry"))
        connection.execute(sqlalchemy.text("CREATE DATABASE mlflow_registry"))
    client = registry(postgres_url.rsplit("/", 1)[0] + "/mlflow_registry", tmp_path, versions=2)
    approve_and_promote(client, "1")
    approve_and_promote(client, "2")
    assert rollback(client, NAME, "ops", "drill")["champion"] == "1"
    assert [state(client, NAME, v) for v in ("1", "2")] == ["champion", "archived"]


def test_the_approval_sensor_defers_and_its_trigger_sees_a_cli_approval(tmp_path: Path) -> None:
    import asyncio
    import os
    import subprocess
    import sys
    from datetime import timedelta

    from airflow.sdk.exceptions import TaskDeferred

    from airflow_mlops.sensors.approval import ModelApprovalSensor
    from airflow_mlops.triggers.approval import ModelApprovalTrigger

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry(tracking, tmp_path, versions=1)
    sensor = ModelApprovalSensor(
        task_id="approve",
        name=NAME,
        version="1",
        mlflow_conn_id=mlflow_conn(tracking),
        deferrable=True,
        timeout=600,
        poke_interval=0.2,
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, ModelApprovalTrigger) and deferred.value.timeout == timedelta(seconds=600)

    async def decision_after_cli_approval() -> dict:
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.5)
        assert not first.done()  # nothing decided yet: the trigger keeps polling
        cli = Path(sys.executable).with_name("airflow-mlops")
        await asyncio.to_thread(
            subprocess.run,
            [
                str(cli),
                "approve",
                "--model",
                NAME,
                "--version",
                "1",
                "--by",
                "alice",
                "--why",
                "card reviewed",
                "--mlflow-conn-id",
                mlflow_conn(tracking),
            ],
            check=True,
            capture_output=True,
            env=os.environ.copy(),
        )
        return (await asyncio.wait_for(first, 30)).payload

    payload = asyncio.run(decision_after_cli_approval())
    assert payload == {"status": "success", "decision": "approved", "name": NAME, "version": "1"}
    outcome = sensor.execute_complete({}, payload)  # type: ignore[arg-type]
    assert outcome["by"] == "alice" and outcome["why"] == "card reviewed"


def test_a_rejection_skips_promotion_with_the_reason_and_a_timeout_fails(tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_mlops.sensors.approval import ModelApprovalSensor

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry(tracking, tmp_path, versions=2)
    decide(client, NAME, "1", False, "bob", "TPR gap on carrier too large")
    sensor = ModelApprovalSensor(
        task_id="approve", name=NAME, version="1", mlflow_conn_id=mlflow_conn(tracking)
    )
    with pytest.raises(AirflowSkipException, match="rejected by bob: TPR gap on carrier too large"):
        sensor.execute_complete({}, {"status": "success", "decision": "rejected"})  # type: ignore[arg-type]
    with pytest.raises(TriggerEventError, match=r"approval of flight_delay v1: .*'error': registry down"):
        sensor.execute_complete({}, {"status": "error", "message": "registry down"})  # type: ignore[arg-type]

    waiting = ModelApprovalSensor(
        task_id="approve",
        name=NAME,
        version="2",
        mlflow_conn_id=mlflow_conn(tracking),
        deferrable=False,
        mode="poke",
        poke_interval=0.1,
        timeout=0.5,
    )
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        waiting.execute({})  # type: ignore[arg-type]
    assert state(client, NAME, "2") == "candidate"


def test_auto_approval_is_recorded_as_the_policy(tmp_path: Path) -> None:
    from airflow_mlops.sensors.approval import ModelApprovalSensor

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry(tracking, tmp_path, versions=1)
    outcome = ModelApprovalSensor(
        task_id="approve", name=NAME, version="1", mlflow_conn_id=mlflow_conn(tracking), auto_approve=True
    ).execute({})  # type: ignore[arg-type]
    assert outcome["decision"] == "approved" and outcome["by"].startswith("auto-approve policy")
    assert state(client, NAME, "1") == "approved"
