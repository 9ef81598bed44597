"""The native scale-out stack (issue 10, first part): Postgres, Redis, an MLflow server on Postgres,
and Airflow with the CeleryExecutor and two workers, started and stopped by `airflow-mlops stack`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from airflow_mlops.demo import group_alive
from airflow_mlops.stack import StackError, down, up
from tests.conftest import _apt_install, _postgres_bin

pytestmark = pytest.mark.integration
OFFSET = 1000  # beside a stack a developer may run on the default ports


def test_the_stack_runs_a_dag_on_celery_workers_with_mlflow_on_postgres_and_stops_clean(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    if _postgres_bin() is None or not shutil.which("redis-server"):
        _apt_install("postgresql", "redis-server")
    root = tmp_path / "stack"
    started = time.monotonic()
    record = up(root, offset=OFFSET)
    try:
        took = time.monotonic() - started
        port = record["ports"]
        assert port["api"] == 28080 + OFFSET and all(group_alive(pid) for pid in record["pids"].values())
        with pytest.raises(StackError, match="a stack is recorded in"):
            up(root, offset=OFFSET)

        # The MLflow server keeps its runs in Postgres.
        tracking = f"http://127.0.0.1:{port['mlflow']}"
        experiment = MlflowClient(tracking).create_experiment("stack-check")
        psql = [*record["postgres"]["run_as"], str(Path(record["postgres"]["bin"]) / "psql"), "-h", "127.0.0.1",
                "-p", str(port["postgres"]), "-U", "mlops", "-tAc"]
        names = subprocess.run([*psql, f"SELECT name FROM experiments WHERE experiment_id = {experiment}", "mlflow"],
                               check=True, capture_output=True, text=True).stdout.split()
        assert names == ["stack-check"]

        # A DAG run through the API: the scheduler queues its tasks in Redis, Celery workers run them.
        url = f"http://127.0.0.1:{port['api']}"
        password = json.loads((root / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": password}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/api/v2/dags/flights_seed", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "the dag-processor did not parse flights_seed"
            time.sleep(2)
        answer = httpx.post(f"{url}/api/v2/dags/flights_seed/dagRuns", headers=headers,
                            json={"logical_date": None, "dag_run_id": "on_celery"})
        assert answer.status_code == 200, answer.text
        state = ""
        while state not in ("success", "failed"):
            assert time.monotonic() < deadline + 120, f"flights_seed still {state}: {(root / 'logs').iterdir()}"
            time.sleep(2)
            state = httpx.get(f"{url}/api/v2/dags/flights_seed/dagRuns/on_celery", headers=headers).json()["state"]
        tasks = httpx.get(f"{url}/api/v2/dags/flights_seed/dagRuns/on_celery/taskInstances", headers=headers).json()
        assert state == "success", tasks
        ran = sum((root / "logs" / f"{worker}.log").read_text().count("Task execute_workload[")
                  for worker in ("worker1", "worker2"))
        assert ran >= tasks["total_entries"] >= 1 and all(t["executor"] in (None, "CeleryExecutor")
                                                           for t in tasks["task_instances"])
        flights = subprocess.run([*psql, "SELECT count(*) FROM flights", "flights"], check=True, capture_output=True,
                                 text=True).stdout.strip()
        assert flights == "336776"  # seeded into the stack's Postgres through the connection
    finally:
        stopped = down(root)
    assert stopped[-1] == "postgres" and set(stopped) >= {"redis", "mlflow", "api-server", "scheduler", "worker1",
                                                          "worker2"}
    assert not any(group_alive(pid) for pid in record["pids"].values())
    assert not (root / "stack.json").exists()
    with pytest.raises(StackError, match="no stack recorded"):
        down(root)
    print(f"stack up in {took:.0f} s")
