"""The native scale-out stack (issues 10 and 21), started by `python -m devtools stack up` for this module:
Postgres, Redis, an S3/SQS server (moto), an MLflow server on Postgres with its artifacts in S3, Airflow with
the CeleryExecutor and two workers, two model-server replicas behind nginx. The lake, the request log and
the checkpoints are in S3; every service has folders of its own and none shared (devtools.stack.machine).
On it: one month of the continuous-training loop (the month lands as an object in the landing bucket;
the first model; its served traffic drifts; the retraining loses its Celery worker, resumes on the
other from the checkpoint in S3 and is released through a canary), then the other fault tests (a
replica killed under load and a canary switch during it, a bandit over both replicas learning from
feedback that reaches either, Redis restarted, Postgres restarted during a DAG run), then `stack down`.

The tests run in file order and build on each other (the month's model is the one served under load);
everything talks to the stack as a user would: the REST API, the model server through nginx, the CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.load import run_load
from devtools.processes import alive, group_alive, process_tree, processes
from devtools.stack import (
    BUCKET,
    LANDING_BUCKET,
    REPLICAS,
    StackError,
    down,
    machine,
    start_service,
    stop_service,
    up,
)
from tests.conftest import _apt_install, _postgres_bin
from tests.connections import mlflow_conn

pytestmark = pytest.mark.integration
OFFSET = 1000  # beside a stack a developer may run on the default ports
MONTH_LANDED = 2  # the month the loop walks: landed as a file, as in the standalone (LocalExecutor) test
AIRFLOW_MLOPS = str(Path(sys.executable).with_name("airflow-mlops"))
#: The stack's `aws_default` connection under a name of its own in this process (and its
#: `[mlops] lake_conn_id` here): Airflow keeps one object-store filesystem per connection id for the
#: process's life, and in the other tests of this worker `aws_default` is another moto server.
STACK_S3 = "stack_s3"


class Api:
    """The stack's Airflow REST API as the admin user."""

    def __init__(self, root: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        home = Path(machine(root, "api-server")["AIRFLOW_HOME"])
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": password}).json()
        self.headers = {"Authorization": f"Bearer {token['access_token']}"}

    def get(self, path: str, **params: Any) -> Any:
        answer = httpx.get(f"{self.url}/api/v2{path}", headers=self.headers, params=params, timeout=30)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def post(self, path: str, body: Any) -> Any:
        answer = httpx.post(f"{self.url}/api/v2{path}", headers=self.headers, json=body, timeout=30)
        assert answer.status_code in (200, 201), f"POST {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="run_after")["dag_runs"]

    def task(self, dag_id: str, run_id: str, task_id: str) -> dict:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")[
            "value"
        ]

    def trigger(self, dag_id: str, run_id: str, conf: dict | None = None) -> None:
        self.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "dag_run_id": run_id, "conf": conf or {}})

    def finished(self, dag_id: str, run_id: str | None = None, timeout: float = 300) -> dict:
        """The run (or the first run of the DAG) once it succeeded or failed."""

        def done() -> dict | None:
            runs = [r for r in self.runs(dag_id) if run_id is None or r["dag_run_id"] == run_id]
            return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

        return wait_for(f"{dag_id} {run_id or ''} to finish", done, timeout)


def wait_for(what: str, check: Any, timeout: float = 300, every: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def lake(path: str = "") -> Any:
    """The stack's lake in S3 (``s3://mlops/lake/<path>``) through its connection, named
    ``STACK_S3`` in this process (the ``stack_env`` fixture sets it)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"s3://{BUCKET}/lake/{path}".rstrip("/"), conn_id=STACK_S3)


def training_set_manifest() -> Any:
    (manifest,) = [
        p / "manifest.json"
        for p in lake("training_sets/flight_delay_v1").iterdir()
        if (p / "manifest.json").exists()
    ]
    return manifest


def read_test_split(manifest: Any) -> Any:
    """The training set's test split as a DataFrame, read from S3."""
    from airflow_mlops.storage import split_path
    from airflow_mlops.training.spec import read_parquet

    uri = json.loads(manifest.read_text())["splits"]["test"]["uri"]
    return read_parquet(split_path(uri, str(manifest.as_uri()), STACK_S3))


def workers_ran(root: Path) -> dict[str, int]:
    """How many task workloads each Celery worker received (from its own log)."""
    return {
        w: (root / "logs" / f"{w}.log").read_text().count("Task execute_workload[")
        for w in ("worker1", "worker2")
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if (
        _postgres_bin() is None
        or not shutil.which("redis-server")
        or not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())
    ):
        _apt_install("postgresql", "redis-server", "nginx-light")
    root = tmp_path_factory.mktemp("scale-out") / "stack"
    started = time.monotonic()
    record = up(root, offset=OFFSET)
    took = time.monotonic() - started
    saved = (line.split("=", 1) for line in (root / "stack.env").read_text().splitlines())
    env = {key: json.loads(value) for key, value in saved}
    try:
        yield {
            "root": root,
            "record": record,
            "ports": record["ports"],
            "env": env,
            "up_s": took,
            "api": Api(root, record["ports"]["api"]),
            "lb": f"http://127.0.0.1:{record['ports']['model_server']}",
        }
    finally:
        if (root / "stack.json").exists():  # the last test stops it; this is for a failure before it
            down(root)


@pytest.fixture
def stack_env(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process configured like the stack's own (its connections, lake, MLflow server)."""
    for key, value in stack["env"].items():
        if key not in ("AIRFLOW_HOME", "AIRFLOW_CONN_AWS_DEFAULT"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv(f"AIRFLOW_CONN_{STACK_S3.upper()}", stack["env"]["AIRFLOW_CONN_AWS_DEFAULT"])
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_CONN_ID", STACK_S3)
    return stack["env"]


def psql(stack: dict[str, Any], sql: str, database: str) -> str:
    postgres = stack["record"]["postgres"]
    command = [
        *postgres["run_as"],
        str(Path(postgres["bin"]) / "psql"),
        "-h",
        "127.0.0.1",
        "-p",
        str(stack["ports"]["postgres"]),
        "-U",
        "mlops",
        "-tAc",
        sql,
        database,
    ]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def test_stack_up_runs_a_dag_on_celery_workers_with_mlflow_on_postgres(stack: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    root, port, api = stack["root"], stack["ports"], stack["api"]
    assert port["api"] == 28080 + OFFSET and all(group_alive(pid) for pid in stack["record"]["pids"].values())
    with pytest.raises(StackError, match="a stack is recorded in"):
        up(root, offset=OFFSET)
    # The MLflow server keeps its runs in Postgres.
    experiment = MlflowClient(f"http://127.0.0.1:{port['mlflow']}").create_experiment("stack-check")
    assert (
        psql(stack, f"SELECT name FROM experiments WHERE experiment_id = {experiment}", "mlflow")
        == "stack-check"
    )
    # Both replicas answer through nginx.
    assert httpx.get(f"{stack['lb']}/readyz").json() == {"ready": True, "endpoints": [], "failed": {}}

    # A DAG run through the API: the scheduler queues its tasks in Redis, Celery workers run them.
    wait_for(
        "the dag-processor to parse flights_seed",
        lambda: httpx.get(f"{api.url}/api/v2/dags/flights_seed", headers=api.headers).status_code == 200,
        120,
    )
    api.trigger("flights_seed", "on_celery")
    run = api.finished("flights_seed", "on_celery", timeout=240)
    tasks = api.get("/dags/flights_seed/dagRuns/on_celery/taskInstances")
    assert run["state"] == "success", tasks
    assert sum(workers_ran(root).values()) >= tasks["total_entries"] >= 1
    assert psql(stack, "SELECT count(*) FROM flights", "flights") == "336776"  # seeded through the connection
    print(f"stack up in {stack['up_s']:.0f} s")


@pytest.mark.timeout(1200)
def test_one_month_of_continuous_training_on_the_stack(
    stack: dict[str, Any], stack_env: dict[str, str], tmp_path: Path
) -> None:
    """A month lands as an object in the landing bucket (S3 -> SQS -> the triggerer); ingestion,
    validation, the dataset, Feast and training follow on the Celery workers by Asset events alone,
    reading and writing the lake in S3; a person approves with the CLI; the model is rolled out to
    both replicas, and equals an embedded training of the same training set; served traffic
    (through nginx, to both replicas, logged to S3) is monitored, its drift starts the retraining."""
    import pyarrow.parquet as pq
    from airflow.sdk import ObjectStoragePath

    from devtools.demo import serve_rows
    from flights.source import write_landing_file

    root, api = stack["root"], stack["api"]
    started = time.monotonic()
    month_file = write_landing_file(MONTH_LANDED, tmp_path / "landing")
    ObjectStoragePath(f"s3://{LANDING_BUCKET}/{month_file.name}", conn_id=STACK_S3).write_bytes(
        month_file.read_bytes()
    )
    for dag_id in ("flights_ingest_s3", "flights_validate", "flights_dataset", "flights_features"):
        run = api.finished(dag_id, timeout=300)
        assert run["state"] == "success", (
            dag_id,
            api.get(f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances"),
        )
    period = f"2013-{MONTH_LANDED:02d}"
    # The embedded run's figures for this landed month (test_event_ingest, test_flights_ingest).
    raw = lake(f"raw/flights/{period}.parquet")
    with raw.open("rb") as handle:
        assert pq.read_metadata(handle).num_rows == 24951
    assert lake(f"validated/flights/{period}.parquet").read_bytes() == raw.read_bytes()
    training_set = training_set_manifest()

    def registered() -> str | None:
        runs = api.runs("flights_training")
        if not runs:
            return None
        register = api.task("flights_training", runs[0]["dag_run_id"], "register")
        assert register["state"] not in ("failed", "upstream_failed", "skipped"), register
        return runs[0]["dag_run_id"] if register["state"] == "success" else None

    run_id = wait_for("flights_training to register a model version", registered, 420)
    # The embedded run: the same training task, in this process, on the same training set; in a
    # thread meanwhile, while the stack's release mostly waits (approval, canary, rollout).
    from types import SimpleNamespace

    from airflow_mlops.operators.train import LightningTrainOperator

    operator = LightningTrainOperator(
        task_id="train",
        training_set=str(training_set.as_uri()),  # read from S3 through the stack's connection
        output_dir=str(tmp_path / "model"),
        checkpoint_root=str(tmp_path / "checkpoints"),
        hyperparameters={"hidden": 64, "layers": 2, "lr": 0.002},
        model="flights.model:FlightDelayModel",
        data="flights.model:FlightDataModule",
        batch_size=512,
        devices=2,
        max_epochs=3,
        mlflow_conn_id=None,
        storage_conn_id=STACK_S3,
    )
    spec = operator.build_spec({"dag": SimpleNamespace(dag_id="embedded"), "run_id": "embedded"})
    embedded = ThreadPoolExecutor(1).submit(operator.train, spec)
    version = str(api.xcom("flights_training", run_id, "register")["version"])
    tracking = stack_tracking_uri(stack_env)
    subprocess.run(
        [
            AIRFLOW_MLOPS,
            "approve",
            "--model",
            "flight_delay",
            "--version",
            version,
            "--by",
            "stack-test",
            "--why",
            "scale-out month",
            "--mlflow-conn-id",
            mlflow_conn(tracking),
        ],
        check=True,
        capture_output=True,
    )
    run = api.finished("flights_training", run_id, timeout=480)  # an upper bound; about 2 minutes idle
    assert run["state"] == "success", api.get(f"/dags/flights_training/dagRuns/{run_id}/taskInstances")
    month_s = time.monotonic() - started
    trained = api.xcom("flights_training", run_id, "train")
    assert trained["world_size"] == 2  # two DDP processes (gloo) started by the task on a Celery worker
    train = api.task("flights_training", run_id, "train")
    assert train["queue"] == "default" and train["state"] == "success"

    # Deployed to both replicas (the hook writes to each); served through nginx.
    token = {"Authorization": f"Bearer {stack_env['MLOPS_SERVER_TOKEN']}"}
    for name in REPLICAS:
        served = httpx.get(
            f"http://127.0.0.1:{stack['ports'][name]}/v1/admin/deployments", headers=token
        ).json()
        assert served["flight_delay"]["variants"]["main"] == {
            "name": "flight_delay",
            "version": version,
            "alias": "champion",  # the rollout follows the champion alias
        }, name
    result = embedded.result(timeout=600)
    assert result["metrics"]["test_auc"] == pytest.approx(trained["metrics"]["test_auc"], abs=1e-6)
    assert result["metrics"]["test_log_loss"] == pytest.approx(trained["metrics"]["test_log_loss"], abs=1e-6)
    print(
        f"the month's first model on the stack: {month_s:.0f} s from landing to rollout; "
        f"AUC {trained['metrics']['test_auc']:.4f} (embedded {result['metrics']['test_auc']:.4f})"
    )

    requests = ObjectStoragePath(f"s3://{BUCKET}/serving/requests", conn_id=STACK_S3)
    window = serve_rows(
        {"url": stack["lb"], "requests": requests, "log": root / "logs"},
        read_test_split(training_set).head(400).drop(columns=["is_delayed"]),
        per_request=4,
    )
    answered = {
        name: httpx.get(
            f"http://127.0.0.1:{stack['ports'][name]}/v1/admin/deployments/flight_delay/stats", headers=token
        ).json()["variants"]["main"]["rows"]
        for name in REPLICAS
    }
    assert sum(answered.values()) == 400 and min(answered.values()) > 0, answered  # both replicas served
    api.trigger("flights_monitoring", "month_check", window)
    run = api.finished("flights_monitoring", "month_check", timeout=300)
    assert run["state"] == "success", api.get("/dags/flights_monitoring/dagRuns/month_check/taskInstances")
    drift = api.xcom("flights_monitoring", "month_check", "drift")
    assert drift["rows"] == 400, drift  # the request log in S3 holds both replicas' predictions
    # No service wrote the lake, the request log or MLflow's artifacts to a disk of its own.
    assert not list((root / "machines").rglob("*.parquet")), list((root / "machines").rglob("*.parquet"))[:5]
    assert not list((root / "machines").rglob("*.ckpt"))
    assert (
        lake(f"raw/flights/{period}.parquet").exists()
        and ObjectStoragePath(f"s3://{BUCKET}/mlflow-artifacts", conn_id=STACK_S3).is_dir()
    )

    # The served flights drifted from the training data: model_drift alone starts flights_training
    # again (the next test kills its worker during `train`, then releases it through a canary).
    assert drift["breached"], drift

    def retraining() -> dict | None:
        return next((r for r in api.runs("flights_training") if r["dag_run_id"] != run_id), None)

    retrain = wait_for("model_drift to start flights_training", retraining, 120)
    assert retrain["run_type"] == "asset_triggered"
    stack["retrain"] = {"run_id": retrain["dag_run_id"], "started": started, "first_version": version}


@pytest.mark.timeout(1200)
def test_a_worker_lost_during_retraining_is_retried_from_its_checkpoint_and_the_release_completes(
    stack: dict[str, Any], stack_env: dict[str, str]
) -> None:
    """The drift-triggered run's `train`: its worker dies with its DDP processes, as with a lost
    machine; the scheduler notices the missing heartbeat, the retry runs on the other worker and
    resumes from last.ckpt. Then the candidate is approved, canaried on both replicas under traffic
    and promoted: the month's loop is closed."""
    from mlflow import MlflowClient

    from devtools.demo import canary_traffic

    root, api = stack["root"], stack["api"]
    run_id = stack["retrain"]["run_id"]
    checkpoint = lake(f"checkpoints/flights_training/{run_id.replace(':', '_').replace('+', '_')}/train")
    wait_for("the first epoch's checkpoint in S3", (checkpoint / "last.ckpt").exists, 300, every=0.5)
    # Only the stack's own: the other xdist worker may be running training tests of its own.
    everywhere = set(_training_processes())
    on = {
        name: everywhere & set(process_tree(stack["record"]["pids"][name])) for name in ("worker1", "worker2")
    }
    worker = next((name for name, found in on.items() if found), None)
    assert worker is not None, f"no worker runs the training processes {sorted(everywhere)}"
    trainers = sorted(on[worker])
    survivor = "worker2" if worker == "worker1" else "worker1"
    before = workers_ran(root)[survivor]

    def trained() -> dict | None:
        train = api.task("flights_training", run_id, "train")
        assert train["state"] not in ("failed", "upstream_failed"), train
        return train if train["state"] == "success" else None

    stop_service(root, worker, kill=True)  # the worker, its task runner and the DDP processes: a lost machine
    try:
        assert not [pid for pid in trainers if alive(pid)]
        train = wait_for("the retried train task", trained, 420)
    finally:
        start_service(root, worker)  # the stack has two workers again, whatever happened
    assert train["try_number"] == 2 and workers_ran(root)[survivor] > before
    result = api.xcom("flights_training", run_id, "train")
    assert result["resumed_from"] == f"{checkpoint.as_uri()}/last.ckpt" and result["world_size"] == 2

    def registered() -> str | None:
        register = api.task("flights_training", run_id, "register")
        assert register["state"] not in ("failed", "upstream_failed", "skipped"), register
        return (
            str(api.xcom("flights_training", run_id, "register")["version"])
            if register["state"] == "success"
            else None
        )

    version = wait_for("the retrained model's registration", registered, 300)
    stack["versions"] = (stack["retrain"]["first_version"], version)  # the bandit test's two arms
    tracking = stack_tracking_uri(stack_env)
    subprocess.run(
        [
            AIRFLOW_MLOPS,
            "approve",
            "--model",
            "flight_delay",
            "--version",
            version,
            "--by",
            "stack-test",
            "--why",
            "retrained after drift",
            "--mlflow-conn-id",
            mlflow_conn(tracking),
        ],
        check=True,
        capture_output=True,
    )
    flights = read_test_split(training_set_manifest()).head(500).drop(columns=["is_delayed"])
    with canary_traffic({"url": stack["lb"], "token": stack_env["MLOPS_SERVER_TOKEN"]}, flights) as traffic:
        run = api.finished("flights_training", run_id, timeout=600)
    assert run["state"] == "success", api.get(f"/dags/flights_training/dagRuns/{run_id}/taskInstances")
    blessing = api.xcom("flights_training", run_id, "infra_validate")  # the sandbox on a worker
    assert blessing["blessed"] and blessing["champion"] == stack["retrain"]["first_version"], blessing
    assert blessing["report_uri"].startswith("s3://"), blessing  # the lake is the bucket
    rollout = api.xcom("flights_training", run_id, "stepwise_rollout")
    steps = [(s["weight"], s["healthy"], s["replicas"]) for s in rollout["steps"]]
    assert steps == [(0.1, True, 2), (0.5, True, 2)] and traffic["sent"] >= 400, (rollout, traffic)
    assert all(s["candidate_requests"] >= 200 for s in rollout["steps"]), rollout
    champion = MlflowClient(tracking).get_model_version_by_alias("flight_delay", "champion")
    assert str(champion.version) == version != stack["retrain"]["first_version"]
    token = {"Authorization": f"Bearer {stack_env['MLOPS_SERVER_TOKEN']}"}
    for name in REPLICAS:
        served = httpx.get(
            f"http://127.0.0.1:{stack['ports'][name]}/v1/admin/deployments", headers=token
        ).json()
        assert served["flight_delay"]["variants"]["main"] == {
            "name": "flight_delay",
            "version": version,
            "alias": "champion",
        }, name
    month_s = time.monotonic() - stack["retrain"]["started"]
    print(
        f"one month on the stack: {month_s:.0f} s from landing to the retrained model's rollout; {worker} lost "
        f"during retraining, retried on {survivor} from {checkpoint.as_uri()}/last.ckpt; infra validated "
        f"(p99 {blessing['p99_ms']:.0f} ms), rolled out in {len(steps)} steps on 2 replicas with "
        f"{traffic['sent']} requests"
    )

    # A rollback on the Models page (the plugin's API, signed in as the admin) moves the champion
    # alias back in the registry; both replicas follow it (the stack looks every 2 s).
    first = stack["retrain"]["first_version"]
    rolled = httpx.post(
        f"{api.url}/mlops/api/models/flight_delay/rollback",
        headers=api.headers,
        json={"why": "rolled back on the Models page"},
        timeout=60,
    )
    assert rolled.status_code == 200 and rolled.json()["champion"] == first, rolled.text

    def followed() -> dict | None:
        served = {
            name: httpx.get(
                f"http://127.0.0.1:{stack['ports'][name]}/v1/admin/deployments", headers=token
            ).json()["flight_delay"]
            for name in REPLICAS
        }
        return served if all(s["variants"]["main"]["version"] == first for s in served.values()) else None

    served = wait_for("both replicas to follow the rollback made in the UI", followed, 60)
    assert all(s["deployed_by"] == "registry" for s in served.values()), served


def test_a_replica_killed_under_load_and_a_canary_switch_fail_no_request(
    stack: dict[str, Any], stack_env: dict[str, str]
) -> None:
    from airflow_mlops.hooks.model_server import ModelServerHook
    from airflow_mlops.serving.models import json_rows

    root = stack["root"]
    rows = json_rows(read_test_split(training_set_manifest()).head(200).drop(columns=["is_delayed"]))
    hook = ModelServerHook()
    version = hook.deployments()["flight_delay"]["variants"]["main"]["version"]
    model = {"name": "flight_delay", "version": version}
    switched: dict[str, Any] = {}

    def canary() -> None:
        switched["canary"] = hook.deploy(
            "flight_delay",
            {"primary": model, "candidate": model},
            {"kind": "canary", "primary": "primary", "candidate": "candidate", "weight": 0.5},
            who="stack-test",
            why="canary under load",
        )

    def rollout() -> None:
        switched["stats"] = hook.stats("flight_delay")
        switched["rollout"] = hook.deploy(
            "flight_delay", {"main": model}, {"kind": "single"}, who="stack-test", why="rollout under load"
        )

    events = [
        (3, lambda: stop_service(root, "replica1", kill=True)),  # a replica lost under load
        (3, lambda: start_service(root, "replica1")),  # it comes back serving its stored deployment
        (3, canary),
        (5, rollout),
    ]  # seconds after the previous event finished
    load = run_load(f"{stack['lb']}/v1/models/flight_delay/predict", rows, 16, 22, events)
    assert load["failures"] == [] and load["requests"] > 200, load["failures"][:5]
    assert switched["canary"]["replicas"] == 2 and switched["rollout"]["replicas"] == 2
    variants = switched["stats"]["variants"]
    assert switched["stats"]["replicas"] == 2 and variants["candidate"]["requests"] > 0
    assert variants["primary"]["errors"] == variants["candidate"]["errors"] == 0
    print(
        f"under load with a replica killed and a canary switch: {load['requests']} requests, 0 failed, "
        f"p99 {load['p99_ms']:.0f} ms"
    )


def test_a_bandit_on_both_replicas_learns_from_feedback_that_reaches_either(
    stack: dict[str, Any], stack_env: dict[str, str]
) -> None:
    """The month's two versions as a bandit's arms on both replicas (one deployment through the
    hook); predictions through nginx, each one's feedback posted to the replicas in turn, so about
    half reaches the replica that did not predict. Both route with one posterior in Redis, which
    learns the better arm and is still there after a replica is killed and started again."""
    import random

    from airflow_mlops.hooks.model_server import ModelServerHook
    from airflow_mlops.serving.models import json_rows

    root = stack["root"]
    first, retrained = stack["versions"]
    arms = {
        "a": {"name": "flight_delay", "version": first},
        "b": {"name": "flight_delay", "version": retrained},
    }
    ModelServerHook().deploy("delay_bandit", arms, {"kind": "bandit"}, who="stack-test", why="bandit")
    row = json_rows(read_test_split(training_set_manifest()).head(1).drop(columns=["is_delayed"]))
    replicas = [f"http://127.0.0.1:{stack['ports'][name]}" for name in REPLICAS]
    token = {"Authorization": f"Bearer {stack_env['MLOPS_SERVER_TOKEN']}"}
    success, world, chosen = {"a": 0.1, "b": 0.9}, random.Random(5), []
    with httpx.Client(timeout=30) as client:
        for i in range(160):
            answer = client.post(f"{stack['lb']}/v1/models/delay_bandit/predict", json={"rows": row})
            assert answer.status_code == 200, answer.text
            chosen.append(answer.json()["variant"])
            reward = float(world.random() < success[chosen[-1]])
            posted = client.post(
                f"{replicas[i % 2]}/v1/feedback",
                json={"prediction_id": answer.json()["predictions"][0]["prediction_id"], "reward": reward},
            )
            assert posted.status_code == 200, (i, posted.text)  # a replica that did not predict knows the id

        def seen() -> list[dict[str, Any]]:
            return [
                client.get(f"{url}/v1/admin/deployments/delay_bandit/stats", headers=token).json()
                for url in replicas
            ]

        stats = seen()
        served = [sum(v["requests"] for v in s["variants"].values()) for s in stats]
        assert sum(served) == 160 and min(served) > 0, served  # nginx sent predictions to both replicas
        assert stats[0]["arms"] == stats[1]["arms"]  # one posterior
        posterior = stats[0]["arms"]
        assert sum(a["alpha"] + a["beta"] for a in posterior.values()) == pytest.approx(160 + 4)
        assert posterior["b"]["mean"] > posterior["a"]["mean"] and chosen[-60:].count("b") > 45, (
            posterior,
            chosen[-60:],
        )
        stop_service(root, "replica2", kill=True)
        start_service(root, "replica2")  # restored from its own store; the posterior is in Redis
        assert seen()[1]["arms"] == posterior
    print(f"bandit on both replicas: the last 60 routed {chosen[-60:].count('b')} times to the better arm")


def _training_processes() -> list[int]:
    pids = []
    for pid in processes():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # exited meanwhile
            continue
        if "airflow_mlops.training" in command:
            pids.append(pid)
    assert pids, "no training process"
    return sorted(pids)


def test_online_features_come_back_after_redis_restarts_and_rematerialization(
    stack: dict[str, Any], stack_env: dict[str, str]
) -> None:
    """Redis (Celery's broker and Feast's online store, no persistence) restarts empty; clearing the
    features run's `materialize` task fills the online store again, run by a Celery worker through
    the restarted broker."""
    from airflow_mlops.hooks.feast import FeastHook

    root, api = stack["root"], stack["api"]
    features_run = next(r for r in api.runs("flights_features") if r["state"] == "success")["dag_run_id"]
    features = [f"carrier_stats:carrier_{stat}_30d" for stat in ("flights", "delay_rate", "mean_arr_delay")]
    entities = [{"carrier": carrier} for carrier in ("UA", "AA", "DL", "B6")]

    def read() -> dict[str, list]:
        store = FeastHook("feast_default").get_conn()
        return store.get_online_features(features=features, entity_rows=entities).to_dict()

    before = read()
    assert all(value is not None for value in before["carrier_flights_30d"]), before
    stop_service(root, "redis", kill=True)
    start_service(root, "redis")  # no persistence: the online store (and the broker's queues) are empty now
    assert all(value is None for value in read()["carrier_flights_30d"])
    tries = api.task("flights_features", features_run, "materialize")["try_number"]
    api.post(
        "/dags/flights_features/clearTaskInstances",
        {
            "dry_run": False,
            "task_ids": ["materialize"],
            "dag_run_id": features_run,
            "only_failed": False,
            "include_downstream": False,
            "include_upstream": False,
            "reset_dag_runs": True,
        },
    )

    def materialized() -> bool:
        task = api.task("flights_features", features_run, "materialize")
        return task["state"] == "success" and task["try_number"] > tries

    wait_for("materialize to run again", materialized, 240)
    assert read() == before


def test_postgres_restarted_during_a_dag_run_duplicates_nothing(stack: dict[str, Any]) -> None:
    root, api = stack["root"], stack["api"]
    api.trigger("flights_seed", "postgres_restart")
    wait_for(
        "flights_seed's task to run",
        lambda: any(
            t["state"] == "running"
            for t in api.get("/dags/flights_seed/dagRuns/postgres_restart/taskInstances")["task_instances"]
        ),
        120,
        every=0.5,
    )
    stop_service(root, "postgres")
    time.sleep(3)
    start_service(root, "postgres")
    run = wait_for(
        "flights_seed to finish after the restart", lambda: _finished_after_restart(api), 420, every=3
    )
    tasks = api.get("/dags/flights_seed/dagRuns/postgres_restart/taskInstances")["task_instances"]
    assert run["state"] == "success", tasks
    assert psql(stack, "SELECT count(*) FROM flights", "flights") == "336776"  # nothing duplicated
    assert [r["dag_run_id"] for r in api.runs("flights_seed")] == ["on_celery", "postgres_restart"]
    restarted = [
        name
        for name in ("scheduler", "dag-processor", "triggerer", "api-server", "worker1", "worker2", "mlflow")
        if "[stack] " in (root / "logs" / f"{name}.log").read_text()
    ]
    print(
        f"postgres restarted during flights_seed: tasks {[(t['task_id'], t['try_number']) for t in tasks]}; "
        f"started again by the stack after they exited: {restarted}"
    )


def _finished_after_restart(api: Api) -> dict | None:
    try:
        run = api.get("/dags/flights_seed/dagRuns/postgres_restart")
    except (AssertionError, httpx.TransportError):  # the API server reconnects to the database
        return None
    return run if run["state"] in ("success", "failed") else None


def test_stack_down_stops_everything(stack: dict[str, Any]) -> None:
    root, record = stack["root"], json.loads((stack["root"] / "stack.json").read_text())
    stopped = down(root)
    assert stopped[-1] == "postgres" and set(stopped) >= {
        "redis",
        "mlflow",
        "api-server",
        "scheduler",
        "worker1",
        "worker2",
        "replica1",
        "replica2",
        "model-server",
    }
    assert not any(group_alive(pid) for pid in record["pids"].values())
    assert not (root / "stack.json").exists()
    with pytest.raises(StackError, match="no stack recorded"):
        down(root)


def stack_tracking_uri(stack_env: dict[str, str]) -> str:
    """The stack's MLflow server, from its ``mlflow_default`` connection."""
    conn = json.loads(stack_env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    return f"{conn['schema']}://{conn['host']}:{conn['port']}"
