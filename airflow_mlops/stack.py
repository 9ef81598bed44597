"""The scale-out stack on one machine, from Debian and PyPI packages (no Docker engine needed).

``airflow-mlops stack up --dir D`` starts, each as its own process (group) with its log in ``D/logs``:
PostgreSQL (databases ``airflow``, ``mlflow``, ``optuna``, ``flights``), Redis (the Celery broker
on db 0; db 1 is left for Feast's online store), an MLflow tracking server on Postgres with its
artifacts in ``D/mlflow-artifacts``, and Airflow with the CeleryExecutor: api-server, scheduler,
dag-processor, triggerer and two Celery workers. ``stack down --dir D`` stops them in reverse
order. Run as root, PostgreSQL runs as the ``postgres`` user with its data in a folder of its own
under the system's temporary folder (named in ``D/stack.json``). ``D/stack.env`` holds the environment a shell needs to talk to the stack
(``set -a; . D/stack.env``), ``D/stack.json`` the processes and ports.

Issue 10 builds on this (model-server replicas, the continuous-training month on the stack, fault
and load tests, the compose file); this module starts what exists so far and nothing more.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Default ports; ``offset`` moves all of them (a second stack, or the tests beside a running one).
PORTS = {"postgres": 25432, "redis": 26379, "mlflow": 25000, "api": 28080, "triggerer_logs": 28794,
         "worker1_logs": 28795, "worker2_logs": 28796}
AIRFLOW_PROCESSES = (("api-server", ["api-server"]), ("scheduler", ["scheduler"]),
                     ("dag-processor", ["dag-processor"]), ("triggerer", ["triggerer"]))
WORKERS = ("worker1", "worker2")
DATABASES = ("airflow", "mlflow", "optuna", "flights")


class StackError(RuntimeError):
    """The stack could not start or stop; the message names the service and its log."""


def ports(offset: int = 0) -> dict[str, int]:
    return {name: port + offset for name, port in PORTS.items()}


def environment(root: Path, port: dict[str, int], dags_folder: Path) -> dict[str, str]:
    """What every Airflow process of the stack (and a shell talking to it) needs."""
    pg = f"mlops@127.0.0.1:{port['postgres']}"
    return {
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}/airflow",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{port['redis']}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{pg}/airflow",
        "AIRFLOW__API__PORT": str(port["api"]),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port['api']}/execution/",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port["triggerer_logs"]),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__MLOPS__LAKE_URI": (root / "data" / "lake").as_uri(),
        "AIRFLOW__MLOPS__LANDING_DIR": str(root / "data" / "landing"),
        "AIRFLOW__MLOPS__FEAST_DIR": str(root / "data" / "feast"),
        "AIRFLOW__MLOPS__SERVING_DIR": str(root / "data" / "serving"),
        "AIRFLOW__MLOPS__MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port['mlflow']}",
        "AIRFLOW__MLOPS__OPTUNA_STORAGE": f"postgresql+psycopg2://{pg}/optuna",
        "AIRFLOW_CONN_FLIGHTS_SOURCE": f"postgresql://{pg}/flights",
    }


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _postgres_bin() -> Path:
    # Debian keeps the server's tools together (initdb, pg_ctl, psql) under /usr/lib/postgresql/<version>/bin.
    found = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None) or shutil.which("initdb")
    if not found:
        raise StackError("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql")
    return Path(found).parent


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"{' '.join(command)} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-2000:]}")


def _start(root: Path, name: str, command: list[str], env: dict[str, str]) -> int:
    log = root / "logs" / f"{name}.log"
    with log.open("a") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid


def _wait(what: str, check: Any, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise StackError(f"{what} did not start within {timeout:.0f} s; {log}:\n{tail}")


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def up(root: Path, *, offset: int = 0, dags_folder: Path | None = None) -> dict[str, Any]:
    """Start the stack under ``root`` (created; refused when a stack runs there). Returns its record."""
    import redis

    root = root.resolve()
    if (root / "stack.json").exists():
        raise StackError(f"a stack is recorded in {root / 'stack.json'}: `airflow-mlops stack down --dir {root}` first")
    port = ports(offset)
    dags = (dags_folder or Path(__file__).resolve().parents[1] / "dags").resolve()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **environment(root, port, dags)}
    pids: dict[str, int] = {}
    record: dict[str, Any] = {"root": str(root), "ports": port, "pids": pids}
    try:
        pg = _postgres_bin()
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if run_as:  # postgres refuses to run as root, and root's folders may be closed to the postgres user
            data = Path(tempfile.mkdtemp(prefix="airflow-mlops-stack-pg-"))
            shutil.chown(data, "postgres")
        else:
            data = root / "postgres"
            data.mkdir(exist_ok=True)
        _run([*run_as, str(pg / "initdb"), "-D", str(data / "data"), "-U", "mlops", "--auth=trust", "-E", "UTF8"])
        _run([*run_as, str(pg / "pg_ctl"), "-D", str(data / "data"), "-l", str(data / "server.log"),
                        "-w", "-o", f"-p {port['postgres']} -k {data} -c listen_addresses=127.0.0.1 "
                        "-c max_connections=300", "start"])
        record["postgres"] = {"data": str(data / "data"), "log": str(data / "server.log"), "bin": str(pg),
                              "run_as": run_as}
        for database in DATABASES:
            _run([*run_as, str(pg / "psql"), "-h", "127.0.0.1", "-p", str(port["postgres"]), "-U", "mlops",
                  "-d", "postgres", "-qc", f"CREATE DATABASE {database}"])
        redis_server = shutil.which("redis-server")
        if not redis_server:
            raise StackError("redis-server not found: install Debian's redis-server")
        pids["redis"] = _start(root, "redis", [redis_server, "--port", str(port["redis"]), "--bind", "127.0.0.1",
                                               "--save", "", "--appendonly", "no"], env)
        _wait("redis", lambda: redis.Redis(port=port["redis"], socket_timeout=1).ping(), root / "logs" / "redis.log")
        pids["mlflow"] = _start(root, "mlflow", [
            _bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port["mlflow"]),
            "--backend-store-uri", f"postgresql+psycopg2://mlops@127.0.0.1:{port['postgres']}/mlflow",
            "--artifacts-destination", str(root / "mlflow-artifacts")], env)
        migrate = subprocess.run([_bin("airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
        if migrate.returncode != 0:
            raise StackError(f"airflow db migrate failed: {migrate.stderr[-2000:]}")
        for name, args in AIRFLOW_PROCESSES:
            pids[name] = _start(root, name, [_bin("airflow"), *args], env)
        for name in WORKERS:
            worker_env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port[f"{name}_logs"])}
            pids[name] = _start(root, name, [_bin("airflow"), "celery", "worker", "--celery-hostname",
                                             f"{name}@%h", "--concurrency", "2"], worker_env)
        _wait("the MLflow server", lambda: _http_ok(f"http://127.0.0.1:{port['mlflow']}/health"), root / "logs" / "mlflow.log")
        _wait("the Airflow API server", lambda: _http_ok(f"http://127.0.0.1:{port['api']}/api/v2/monitor/health"),
              root / "logs" / "api-server.log")
        for name in WORKERS:
            _wait(f"Celery {name}", lambda n=name: " ready." in (root / "logs" / f"{n}.log").read_text(),
                  root / "logs" / f"{name}.log")
    except BaseException:
        _write(root, record)
        down(root)
        raise
    _write(root, record)
    (root / "stack.env").write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in environment(root, port, dags).items()))
    return record


def _write(root: Path, record: dict[str, Any]) -> None:
    (root / "stack.json").write_text(json.dumps(record, indent=2))


def down(root: Path, timeout: float = 30.0) -> list[str]:
    """Stop every process the stack record names, newest first (TERM, then KILL); then PostgreSQL.
    Returns what was stopped; the record is removed, the data kept."""
    root = root.resolve()
    path = root / "stack.json"
    if not path.exists():
        raise StackError(f"no stack recorded in {root} (nothing to stop)")
    record = json.loads(path.read_text())
    from airflow_mlops.demo import stop_process_group

    stopped = [name for name, pid in reversed(list(record["pids"].items())) if stop_process_group(pid, timeout)]
    postgres = record.get("postgres")
    if postgres:
        subprocess.run([*postgres["run_as"], str(Path(postgres["bin"]) / "pg_ctl"), "-D", postgres["data"], "-m",
                        "fast", "stop"], check=False, capture_output=True)
        stopped.append("postgres")
    path.unlink()
    return stopped
