"""The scale-out stack on one machine, from Debian and PyPI packages (no Docker engine needed).

``python -m devtools stack up --dir D`` starts, each as its own process (group) with its log in ``D/logs``:
PostgreSQL (databases ``airflow``, ``mlflow``, ``optuna``, ``flights``, ``feast``), Redis (the
Celery broker on db 0, Feast's online store on db 1, the replicas' shared state on db 2), moto's
S3/SQS server (``s3``: the bucket ``mlops`` with the lake ``s3://mlops/lake``, the request log and
MLflow's artifacts; the bucket ``landing``, whose object-created notifications go to the SQS queue
``flights-landing``), an MLflow tracking server on Postgres with its artifacts in the bucket, and
Airflow with the CeleryExecutor: api-server, scheduler, dag-processor, triggerer and two Celery
workers; two model-server replicas (``airflow-mlops serve``, each with its own deployments and
model cache, one request log in S3) behind nginx, the address of the ``mlops_model_server``
connection (whose extra lists the replicas, so deployments reach both). The Feast operators use
the ``feast_default`` connection: the repository's ``feature_store.scaleout.yaml`` (registry in
Postgres, online store in Redis, the feature tables in S3).

**No service reads another's disk** (:func:`machine`): each has its own Airflow home, scratch
folders and temporary folder under ``D/machines/<service>``, as on a host of its own; what they
share is in S3, Postgres and Redis. The Airflow processes share their keys (JWT secret, API secret
key, Fernet key) through the environment, made once in ``D/secrets.json`` (owner-only, with the
model servers' admin token). ``stack down --dir D`` stops the services in reverse order. The
Airflow components, the workers and MLflow are started again when they exit (``SUPERVISED``). Run
as root, PostgreSQL runs as the ``postgres`` user with its data in a folder of its own under the
system's temporary folder (named in ``D/stack.json``). ``D/stack.env`` holds the environment a shell
needs to talk to the stack (``set -a; . D/stack.env``; owner-only: it holds the secrets),
``D/stack.json`` the processes and ports.

``stop_service``/``start_service`` stop and start one recorded service again (the fault tests
use them: a worker killed during training, a replica killed under load, Redis and Postgres
restarted). ``docker/compose.yaml`` declares the same services, ports and variables
(``tests/unit/test_compose.py`` compares them with ``PORTS``, ``SERVICES`` and ``environment``).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devtools.processes import group_alive, kill_tree, stop_process_group


class StackError(RuntimeError):
    """The stack could not start or stop; the message names the service and its log."""


#: Default ports; ``offset`` moves all of them (a second stack, or the tests beside a running one).
PORTS = {
    "postgres": 25432,
    "redis": 26379,
    "s3": 29000,
    "mlflow": 25000,
    "api": 28080,
    "triggerer_logs": 28794,
    "worker1_logs": 28795,
    "worker2_logs": 28796,
    "model_server": 28765,
    "replica1": 28766,
    "replica2": 28767,
}
AIRFLOW_PROCESSES = (
    ("api-server", ["api-server"]),
    ("scheduler", ["scheduler"]),
    ("dag-processor", ["dag-processor"]),
    ("triggerer", ["triggerer"]),
)
WORKERS = ("worker1", "worker2")
REPLICAS = ("replica1", "replica2")
DATABASES = ("airflow", "mlflow", "optuna", "flights", "feast")
#: The object store (moto's S3 and SQS server): the lake, the request log, lineage and MLflow's
#: artifacts in one bucket; month files land in another, whose notifications go to an SQS queue.
BUCKET = "mlops"
LANDING_BUCKET = "landing"
LANDING_QUEUE = "flights-landing"
#: moto's fixed account id, part of every queue URL it gives.
MOTO_ACCOUNT = "123456789012"
#: moto accepts any key; these stand for the store's credentials in the stack's connection.
S3_KEY, S3_SECRET = "mlops", "mlops-secret"
#: Every service of the stack, in start order (the compose file declares the same).
SERVICES = (
    "postgres",
    "redis",
    "s3",
    "mlflow",
    *(name for name, _ in AIRFLOW_PROCESSES),
    *WORKERS,
    *REPLICAS,
    "model-server",
)


def ports(offset: int = 0) -> dict[str, int]:
    return {name: port + offset for name, port in PORTS.items()}


def environment(
    root: Path, port: dict[str, int], dags_folder: Path, secrets: dict[str, str]
) -> dict[str, str]:
    """What every Airflow process of the stack (and a shell talking to it) needs. ``secrets``: the
    model servers' admin token (the connection's password) and the secrets the Airflow processes
    share (``jwt_secret``, ``secret_key``, ``fernet_key``), which processes with homes of their own
    cannot take from one airflow.cfg. The lake, the request log and MLflow's artifacts are in S3;
    ``root/data`` is only the scratch of a shell that talks to the stack (each service has its own,
    :func:`machine`)."""
    pg = f"mlops@127.0.0.1:{port['postgres']}"
    s3 = f"http://127.0.0.1:{port['s3']}"
    model_server = {
        "conn_type": "mlopsmodelserver",
        "host": "127.0.0.1",
        "port": port["model_server"],
        "password": secrets["token"],
        "extra": {"replicas": [f"127.0.0.1:{port[name]}" for name in REPLICAS]},
    }
    feast = {
        "conn_type": "feast",
        "extra": {
            "config_file": "feature_store.scaleout.yaml",
            "variables": {
                "MLOPS_REDIS": f"127.0.0.1:{port['redis']},db=1",
                "MLOPS_FEAST_REGISTRY": f"postgresql+psycopg2://{pg}/feast",
            },
        },
    }
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
        # A worker that dies is noticed after a minute (default 5) and its task retried elsewhere.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "10",
        "AIRFLOW__CORE__FERNET_KEY": secrets["fernet_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": secrets["secret_key"],
        "AIRFLOW__MLOPS__LAKE_URI": f"s3://{BUCKET}/lake",
        "AIRFLOW__MLOPS__LAKE_CONN_ID": "aws_default",
        "AIRFLOW__MLOPS__REQUEST_LOG_URI": f"s3://{BUCKET}/serving/requests",
        "AIRFLOW__MLOPS__INGEST_QUEUE_URL": f"{s3}/{MOTO_ACCOUNT}/{LANDING_QUEUE}",
        "AIRFLOW__MLOPS__DATA_ROOTS": f"s3://{LANDING_BUCKET}",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": S3_KEY,
                "password": S3_SECRET,
                "extra": {"endpoint_url": s3, "region_name": "us-east-1"},
            }
        ),
        "AIRFLOW__MLOPS__LANDING_DIR": str(root / "data" / "landing"),
        "AIRFLOW__MLOPS__FEAST_DIR": str(root / "data" / "feast"),
        "AIRFLOW__MLOPS__FEATURE_REPO": str(dags_folder.parent / "feature_repo"),
        "AIRFLOW__MLOPS__SERVING_DIR": str(root / "data" / "serving"),
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "mlflow", "host": "127.0.0.1", "port": port["mlflow"], "schema": "http"}
        ),
        "AIRFLOW_CONN_OPTUNA_DEFAULT": f"postgresql://{pg}/optuna",
        "AIRFLOW__MLOPS__FEAST_CONN_ID": "feast_default",
        "AIRFLOW_CONN_FLIGHTS_SOURCE": f"postgresql://{pg}/flights",
        "AIRFLOW__MLOPS__SOURCE_CONN_ID": "flights_source",
        "AIRFLOW_CONN_MLOPS_MODEL_SERVER": json.dumps(model_server),
        "AIRFLOW_CONN_FEAST_DEFAULT": json.dumps(feast),
        "MLOPS_SERVER_TOKEN": secrets["token"],
    }


def machine(root: Path, name: str) -> dict[str, str]:
    """A service's own folders, as on a host of its own: Airflow's home (its airflow.cfg and task
    logs), the suite's scratch folders and the temporary folder. No service reads another's: what
    they share is in S3, Postgres and Redis."""
    own = root / "machines" / name
    return {
        "AIRFLOW_HOME": str(own / "airflow"),
        "AIRFLOW__MLOPS__LANDING_DIR": str(own / "landing"),
        "AIRFLOW__MLOPS__FEAST_DIR": str(own / "feast"),
        "AIRFLOW__MLOPS__SERVING_DIR": str(own / "serving"),
        "TMPDIR": str(own / "tmp"),
    }


def s3_environment(port: dict[str, int]) -> dict[str, str]:
    """The object store for the processes that start without Airflow connections (the MLflow
    server, the model-server replicas): AWS's variables, and fsspec's (the request log)."""
    endpoint = f"http://127.0.0.1:{port['s3']}"
    return {
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "FSSPEC_S3": json.dumps({"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": endpoint}),
    }


def create_object_store(endpoint: str) -> None:
    """The stack's buckets and the landing queue on the S3/SQS server at ``endpoint``: object-created
    notifications of the landing bucket go to the queue (the ``flights_ingest_s3`` DAG's trigger)."""
    import boto3

    options = {
        "endpoint_url": endpoint,
        "aws_access_key_id": S3_KEY,
        "aws_secret_access_key": S3_SECRET,
        "region_name": "us-east-1",
    }
    s3, sqs = boto3.client("s3", **options), boto3.client("sqs", **options)
    for bucket in (BUCKET, LANDING_BUCKET):
        s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName=LANDING_QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=LANDING_BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )


def nginx_conf(root: Path, port: dict[str, int]) -> str:
    """The load balancer in front of the replicas: a request that fails to reach one (refused, reset,
    timed out, 502/503) is sent to the other, predictions included (``non_idempotent``: a
    prediction has no side effect but its log record)."""
    upstreams = "".join(
        f"    server 127.0.0.1:{port[name]} max_fails=1 fail_timeout=5s;\n" for name in REPLICAS
    )
    return f"""daemon off;
worker_processes 2;
pid {root}/nginx/nginx.pid;
error_log {root}/logs/model-server.log warn;
events {{ worker_connections 2048; }}
http {{
  access_log off;
  client_body_temp_path {root}/nginx/body;
  proxy_temp_path {root}/nginx/proxy;
  upstream replicas {{
{upstreams}    keepalive 128;
  }}
  server {{
    listen 127.0.0.1:{port["model_server"]};
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 2;
      proxy_connect_timeout 2s;
      proxy_read_timeout 300s;
      proxy_buffering off;
    }}
  }}
}}
"""


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _postgres_bin() -> Path:
    # Debian keeps the server's tools together (initdb, pg_ctl, psql) under /usr/lib/postgresql/<version>/bin.
    found = next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)), None
    ) or shutil.which("initdb")
    if not found:
        raise StackError("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql")
    return Path(found).parent


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(
            f"{' '.join(command)} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-2000:]}"
        )


#: Restarted when they exit, as compose's ``restart: unless-stopped`` does: the scheduler and the
#: dag-processor exit when the metadata database goes away (a Postgres restart), by design.
SUPERVISED = ("mlflow", *(name for name, _ in AIRFLOW_PROCESSES), *WORKERS)
RESTART = 'while :; do "$@"; echo "[stack] $1 exited with $?; starting it again in 5 s"; sleep 5; done'


def _pg_ctl(postgres: dict[str, Any], action: str, *options: str) -> None:
    """``pg_ctl`` on the stack's cluster (as the ``postgres`` user when run as root), waiting for it."""
    _run(
        [
            *postgres["run_as"],
            str(Path(postgres["bin"]) / "pg_ctl"),
            "-D",
            postgres["data"],
            "-w",
            *options,
            action,
        ]
    )


def _start(root: Path, name: str, command: list[str], env: dict[str, str]) -> int:
    log = root / "logs" / f"{name}.log"
    if name in SUPERVISED:  # a shell loop in the service's process group: `down` and `stop` end both
        command = ["/bin/sh", "-c", RESTART, "sh", *command]
    with log.open("a") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return process.pid


def _wait(what: str, check: Any, log: Path, timeout: float = 360) -> None:
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

    root = root.resolve()
    if (root / "stack.json").exists():
        raise StackError(
            f"a stack is recorded in {root / 'stack.json'}: `python -m devtools stack down --dir {root}` first"
        )
    port = ports(offset)
    dags = (dags_folder or Path(__file__).resolve().parents[1] / "dags").resolve()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    stack_env = environment(root, port, dags, _secrets(root))
    env = {**os.environ, **stack_env}
    pids: dict[str, int] = {}
    commands: dict[str, list[str]] = {}
    record: dict[str, Any] = {"root": str(root), "ports": port, "pids": pids, "commands": commands}

    def start(name: str, command: list[str], extra: dict[str, str] | None = None) -> None:
        extra = {**machine(root, name), **(extra or {})}  # each service on a "host" of its own
        Path(extra["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        commands[name] = command
        record.setdefault("extra_env", {})[name] = extra
        pids[name] = _start(root, name, command, {**env, **extra})

    try:
        pg = _postgres_bin()
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if run_as:  # postgres refuses to run as root, and root's folders may be closed to the postgres user
            data = Path(tempfile.mkdtemp(prefix="airflow-mlops-stack-pg-"))
            shutil.chown(data, "postgres")
        else:
            data = root / "postgres"
            data.mkdir(exist_ok=True)
        _run(
            [
                *run_as,
                str(pg / "initdb"),
                "-D",
                str(data / "data"),
                "-U",
                "mlops",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
        record["postgres"] = {
            "data": str(data / "data"),
            "log": str(data / "server.log"),
            "bin": str(pg),
            "run_as": run_as,
            "options": f"-p {port['postgres']} -k {data} "
            "-c listen_addresses=127.0.0.1 -c max_connections=300",
        }
        _pg_ctl(
            record["postgres"], "start", "-l", record["postgres"]["log"], "-o", record["postgres"]["options"]
        )
        for database in DATABASES:
            _run(
                [
                    *run_as,
                    str(pg / "psql"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port["postgres"]),
                    "-U",
                    "mlops",
                    "-d",
                    "postgres",
                    "-qc",
                    f"CREATE DATABASE {database}",
                ]
            )
        _start_redis(root, port, start)
        _start_object_store(root, port, start)
        start(
            "mlflow",
            [
                _bin("mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port["mlflow"]),
                "--backend-store-uri",
                f"postgresql+psycopg2://mlops@127.0.0.1:{port['postgres']}/mlflow",
                "--artifacts-destination",  # served to clients through the tracking server
                f"s3://{BUCKET}/mlflow-artifacts",
            ],
            s3_environment(port),
        )
        migrate = subprocess.run([_bin("airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
        if migrate.returncode != 0:
            raise StackError(f"airflow db migrate failed: {migrate.stderr[-2000:]}")
        for name, args in AIRFLOW_PROCESSES:
            start(name, [_bin("airflow"), *args])
        for name in WORKERS:
            start(
                name,
                [
                    _bin("airflow"),
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{name}@%h",
                    "--concurrency",
                    "2",
                ],
                {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port[f"{name}_logs"])},
            )
        _wait(
            "the MLflow server",
            lambda: _http_ok(f"http://127.0.0.1:{port['mlflow']}/health"),
            root / "logs" / "mlflow.log",
        )
        _start_serving(
            root,
            port,
            start,
            f"http://127.0.0.1:{port['mlflow']}",
            f"s3://{BUCKET}/serving/requests",
            s3_environment(port),
        )
        _wait(
            "the Airflow API server",
            lambda: _http_ok(f"http://127.0.0.1:{port['api']}/api/v2/monitor/health"),
            root / "logs" / "api-server.log",
        )
        for name in WORKERS:
            _wait(
                f"Celery {name}",
                lambda n=name: " ready." in (root / "logs" / f"{n}.log").read_text(),
                root / "logs" / f"{name}.log",
            )
    except BaseException:
        _abandon(root, record)
        raise
    _record_stack(root, record, stack_env)
    return record


def _secrets(root: Path) -> dict[str, str]:
    """The stack's secrets, made at the first ``up`` and kept (owner-only) across ups: the model
    servers' admin token (their deployments keep it) and the Airflow processes' shared keys."""
    from cryptography.fernet import Fernet

    path = root / "secrets.json"
    if not path.exists():
        made = {
            "token": secrets.token_urlsafe(24),
            "jwt_secret": secrets.token_urlsafe(32),
            "secret_key": secrets.token_urlsafe(32),
            "fernet_key": Fernet.generate_key().decode(),
        }
        path.touch(0o600)
        path.write_text(json.dumps(made))
    return dict(json.loads(path.read_text()))


def _start_object_store(root: Path, port: dict[str, int], start: Any) -> None:
    """moto's S3 and SQS server (in memory), then the stack's buckets and landing queue."""
    start("s3", [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port["s3"])])
    endpoint = f"http://127.0.0.1:{port['s3']}"
    _wait("the S3 server", lambda: _http_ok(f"{endpoint}/moto-api/"), root / "logs" / "s3.log")
    create_object_store(endpoint)


def redis_command(server: str, port: int) -> list[str]:
    """``redis-server`` on loopback, in memory only (no snapshots, no append-only file)."""
    return [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def _start_redis(root: Path, port: dict[str, int], start: Any) -> None:
    """Redis, in memory only: the Celery broker (db 0), Feast's online store (db 1) and the
    replicas' shared state (db 2)."""
    import redis

    redis_server = shutil.which("redis-server")
    if not redis_server:
        raise StackError("redis-server not found: install Debian's redis-server")
    start("redis", redis_command(redis_server, port["redis"]))
    _wait(
        "redis", lambda: redis.Redis(port=port["redis"], socket_timeout=1).ping(), root / "logs" / "redis.log"
    )


def _start_serving(
    root: Path, port: dict[str, int], start: Any, tracking_uri: str, request_log: str, env: dict[str, str]
) -> None:
    """The model-server replicas and nginx in front of them; waits until both answer through it.
    The replicas get the registry's URI on their command line (no credentials: the stack's MLflow
    server has none), so they start without importing Airflow to resolve a connection."""
    for name in REPLICAS:  # own deployments and model cache each; one request log in S3 for monitoring
        start(
            name,
            [
                _bin("airflow-mlops"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port[name]),
                "--state-dir",
                machine(root, name)["AIRFLOW__MLOPS__SERVING_DIR"],
                "--request-log-dir",
                request_log,
                "--tracking-uri",
                tracking_uri,
                "--follow-aliases-every",  # a rollback in the UI reaches the traffic in seconds
                "2",
                "--redis-url",  # prediction ids and bandits shared by the replicas (db 0 is Celery's, 1 Feast's)
                f"redis://127.0.0.1:{port['redis']}/2",
            ],
            env,
        )
    nginx = shutil.which("nginx") or next(iter(glob.glob("/usr/sbin/nginx")), None)
    if not nginx:
        raise StackError("nginx not found (the replicas' load balancer): install Debian's nginx-light")
    for folder in ("body", "proxy"):
        (root / "nginx" / folder).mkdir(parents=True, exist_ok=True)
    (root / "nginx" / "nginx.conf").write_text(nginx_conf(root, port))
    start("model-server", [nginx, "-p", str(root / "nginx"), "-c", str(root / "nginx" / "nginx.conf")])
    for name in (*REPLICAS, "model-server"):
        _wait(
            name,
            lambda n=name: _http_ok(f"http://127.0.0.1:{port[n.replace('-', '_')]}/readyz"),
            root / "logs" / f"{name}.log",
        )


def serving_up(root: Path, tracking_uri: str, token: str, *, offset: int = 0) -> dict[str, Any]:
    """Only Redis, the model-server replicas and their load balancer, on models from
    ``tracking_uri`` (the load benchmark's stack); ``down`` stops it. Returns its record, as ``up`` does."""
    root = root.resolve()
    if (root / "stack.json").exists():
        raise StackError(
            f"a stack is recorded in {root / 'stack.json'}: `python -m devtools stack down --dir {root}` first"
        )
    port = ports(offset)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    saved = {"MLOPS_SERVER_TOKEN": token}
    env = {**os.environ, **saved}
    record: dict[str, Any] = {"root": str(root), "ports": port, "pids": {}, "commands": {}, "extra_env": {}}

    def start(name: str, command: list[str], extra: dict[str, str] | None = None) -> None:
        record["commands"][name], record["extra_env"][name] = command, extra or {}
        record["pids"][name] = _start(root, name, command, {**env, **(extra or {})})

    try:
        _start_redis(root, port, start)  # the replicas share prediction ids and bandits there
        _start_serving(root, port, start, tracking_uri, str(root / "data" / "serving" / "requests"), {})
    except BaseException:
        _abandon(root, record)
        raise
    _record_stack(root, record, saved)
    return record


def _write(root: Path, record: dict[str, Any]) -> None:
    (root / "stack.json").write_text(json.dumps(record, indent=2))


def _abandon(root: Path, record: dict[str, Any]) -> None:
    """A start that failed: stop what it started (``down`` reads the record)."""
    _write(root, record)
    down(root)


def _record_stack(root: Path, record: dict[str, Any], env: dict[str, str]) -> None:
    """The started stack's record (``stack.json``) and environment (``stack.env``, owner-only: it holds
    the model servers' admin token)."""
    _write(root, record)
    (root / "stack.env").write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in env.items()))
    (root / "stack.env").chmod(0o600)


def _record(root: Path) -> dict[str, Any]:
    path = root.resolve() / "stack.json"
    if not path.exists():
        raise StackError(f"no stack recorded in {root} (nothing to stop)")
    return json.loads(path.read_text())


def stop_service(root: Path, name: str, *, kill: bool = False, timeout: float = 30.0) -> None:
    """Stop one service of a running stack: ``kill`` is SIGKILL to its process group and every
    descendant in other groups (a machine lost), otherwise TERM and a wait. PostgreSQL stops with
    ``pg_ctl -m fast`` (connections cut), or ``-m immediate`` with ``kill``."""
    record = _record(root)
    if name == "postgres":
        _pg_ctl(record["postgres"], "stop", "-m", "immediate" if kill else "fast")
        return
    if name not in record["pids"]:
        raise StackError(
            f"stack service {name!r} is not recorded; services: {sorted(record['pids'])} and postgres"
        )
    if kill:  # the whole tree: task runners and training processes start groups of their own
        kill_tree(record["pids"][name])
    stop_process_group(record["pids"][name], timeout)


def start_service(root: Path, name: str, timeout: float = 120) -> None:
    """Start a stopped service of a running stack again, as ``up`` started it (and wait for it)."""
    root = root.resolve()
    record = _record(root)
    port = record["ports"]
    if name == "postgres":  # as up started it: the same log, port, socket folder and settings
        _pg_ctl(
            record["postgres"], "start", "-l", record["postgres"]["log"], "-o", record["postgres"]["options"]
        )
        return
    if name not in record["commands"]:
        raise StackError(
            f"stack service {name!r} is not recorded; services: {sorted(record['commands'])} and postgres"
        )
    if group_alive(record["pids"][name]):
        raise StackError(f"stack service {name!r} is running (pid {record['pids'][name]}): stop it first")
    saved = (line.split("=", 1) for line in (root / "stack.env").read_text().splitlines())
    env = {**os.environ, **{key: json.loads(value) for key, value in saved}}
    record["pids"][name] = _start(
        root, name, record["commands"][name], {**env, **record["extra_env"].get(name, {})}
    )
    _write(root, record)
    log = root / "logs" / f"{name}.log"
    if name == "redis":
        import redis

        _wait("redis", lambda: redis.Redis(port=port["redis"], socket_timeout=1).ping(), log, timeout)
    elif name in (*REPLICAS, "model-server"):
        _wait(name, lambda: _http_ok(f"http://127.0.0.1:{port[name.replace('-', '_')]}/readyz"), log, timeout)


def down(root: Path, timeout: float = 30.0) -> list[str]:
    """Stop every process the stack record names, newest first (TERM, then KILL); then PostgreSQL.
    Returns what was stopped; the record is removed, the data kept."""
    root = root.resolve()
    path = root / "stack.json"
    record = _record(root)
    stopped = [
        name for name, pid in reversed(list(record["pids"].items())) if stop_process_group(pid, timeout)
    ]
    postgres = record.get("postgres")
    if postgres:
        with contextlib.suppress(StackError):  # already stopped
            _pg_ctl(postgres, "stop", "-m", "fast")
        stopped.append("postgres")
    path.unlink()
    return stopped
