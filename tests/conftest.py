"""Test session set-up: a throw-away AIRFLOW_HOME with a migrated SQLite metadata DB.

The environment is set here, at import, before anything imports Airflow (Airflow reads its
configuration once, at import).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="airflow-mlops-test-"))
DATA_DIR = _HOME / "data"
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__MLOPS__LAKE_URI": (DATA_DIR / "lake").as_uri(),
        "AIRFLOW__MLOPS__LANDING_DIR": str(DATA_DIR / "landing"),
        "AIRFLOW__MLOPS__SOURCE_CONN_ID": "flights_source",
        "AIRFLOW__MLOPS__FEATURE_REPO": str(ROOT / "feature_repo"),
        "AIRFLOW__MLOPS__FEAST_DIR": str(DATA_DIR / "feast"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # The flights reference package (dags/flights) for the processes tests start themselves (the
        # training driver, model servers), as `make demo` exports it; pytest's own `pythonpath`
        # setting reaches only this interpreter.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "dags"), os.environ.get("PYTHONPATH")])),
        # The embedded default's connections, as `airflow-mlops init-home` adds them.
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {
                "conn_type": "mlflow",
                "extra": {"tracking_uri": f"sqlite:///{DATA_DIR / 'mlflow' / 'mlflow.db'}"},
            }
        ),
        "AIRFLOW_CONN_OPTUNA_DEFAULT": json.dumps(
            {"conn_type": "sqlite", "host": str(DATA_DIR / "optuna" / "optuna.db")}
        ),
    }
)


# `make test` runs two pytest-xdist workers, one module at a time each (--dist loadfile, with the
# scheduler below). The two modules that run Airflow's scheduler with its whole process family (the
# standalone pipeline and the scale-out stack) are one unit of work, so one worker runs them one
# after the other: side by side on two cores they starved each other (three to four times their
# time alone, and the waits sized for a loaded machine ran out). They go first, with the training
# module on the other worker; xdist gives each worker a second unit up front, so the third one is
# short (it waits behind the scheduler unit), and the other worker runs everything else meanwhile.
# (xdist's own --dist loadgroup would say this with marks, but it renames node ids through an
# attribute pytest 9 no longer reads, so its groups do nothing.)
SCHEDULER_GROUP = ("tests/integration/test_event_ingest.py", "tests/integration/test_stack.py")
ORDER = (
    *SCHEDULER_GROUP,
    "tests/integration/test_training.py",
    "tests/unit/test_exceptions.py",
    "tests/integration/test_sagemaker.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(ORDER)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable otherwise


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Units of work: a module each, the scheduler modules together (in ORDER's order)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndTheSchedulerUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "scheduler modules" if module in SCHEDULER_GROUP else module

    return ModulesAndTheSchedulerUnit(config, log)


@pytest.fixture(scope="session", autouse=True)
def no_default_mlflow_store() -> Iterator[None]:
    """Every MLflow call names its store: MLflow's default (``./mlflow.db``) must never appear."""
    stray = Path.cwd() / "mlflow.db"
    existed = stray.exists()
    yield
    assert existed or not stray.exists(), "something used MLflow's default store and wrote ./mlflow.db"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the session's metadata DB once (in a subprocess, like `make demo` does)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _HOME


@pytest.fixture(scope="session")
def source_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite source database seeded with January and February 2013 (all dimension tables)."""
    from sqlalchemy import create_engine

    from flights.source import seed_source_db

    path = tmp_path_factory.mktemp("source") / "flights.db"
    engine = create_engine(f"sqlite:///{path}")
    seed_source_db(engine, months=[1, 2])
    engine.dispose()
    return path


@pytest.fixture
def source_conn(source_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Airflow connection ``flights_source`` pointing at the seeded SQLite source database."""
    monkeypatch.setenv("AIRFLOW_CONN_FLIGHTS_SOURCE", f'{{"conn_type": "sqlite", "host": "{source_db}"}}')
    return "flights_source"


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh lake and landing folder for one test (the DAGs read them at parse time)."""
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("AIRFLOW__MLOPS__LANDING_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("AIRFLOW__MLOPS__FEAST_DIR", str(tmp_path / "feast"))
    (tmp_path / "landing").mkdir()
    yield tmp_path / "lake"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A local SMTP server that ``[mlops]`` sends alerts to (``tests.smtp``): ``inbox.wait(n)``."""
    from tests.smtp import smtp_inbox

    yield from smtp_inbox(monkeypatch)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3/SQS server on loopback; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_conn(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Airflow connection ``aws_default`` pointing at the moto server."""
    import json

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_server, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    return "aws_default"


def _postgres_bin() -> Path | None:
    """The PostgreSQL server's tools (initdb, pg_ctl) as the stack finds them, or None."""
    from devtools.stack import StackError
    from devtools.stack import _postgres_bin as find

    try:
        return find()
    except StackError:
        return None


def _apt_install(*packages: str) -> None:
    """Install Debian packages when running as root with apt (CI machines); otherwise do nothing.

    The two test workers may both need a package at once: a file lock takes them one at a time
    (apt allows one installer), and a failed install fails the test with apt's words instead of
    skipping it."""
    import fcntl
    import shutil

    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(Path(tempfile.gettempdir()) / "airflow-mlops-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, env=env)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=600", *packages],
            check=False,
            capture_output=True,
            text=True,
            env=env,
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"apt-get install {' '.join(packages)} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout)[-2000:]}"
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on loopback, started for the session (installed with apt when missing)."""
    import shutil

    bindir = _postgres_bin()
    if bindir is None:
        _apt_install("postgresql")
        bindir = _postgres_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb) not found and cannot be installed (not root or no apt-get)"
        )
    # Not under pytest's tmp dirs: those are private to the current user, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="airflow-mlops-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "mlops", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg2://mlops@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on loopback for the session (installed with apt when missing), ``host:port``."""
    import shutil
    import socket
    import time

    if shutil.which("redis-server") is None:
        _apt_install("redis-server")
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not found and cannot be installed (not root or no apt-get)")
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="airflow-mlops-redis-"))
    from devtools.stack import redis_command

    process = subprocess.Popen(
        [*redis_command(server, port), "--dir", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> dict:
    """A challenger (hidden 32, 2 epochs, logged to MLflow) and a weaker champion, trained for real."""
    from tests.training_sets import train, write_training_set

    root = tmp_path_factory.mktemp("evaluation")
    training_set = write_training_set(root / "set")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    return {
        "training_set": training_set,
        "tracking": tracking,
        "challenger": train(root / "challenger", training_set, hidden=32, epochs=2, tracking_uri=tracking),
        "champion": train(root / "champion", training_set, hidden=4, epochs=1),
    }
