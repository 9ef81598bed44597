"""`airflow-mlops init-home` on a fresh folder: the config, the migrated DB and the embedded
default's connections, which the CLI and the hooks then find outside any task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__"))}
    env["AIRFLOW_HOME"] = str(home)
    return subprocess.run(args, env=env, capture_output=True, text=True, check=check, timeout=300)


def connections(home: Path) -> dict[str, dict]:
    """Every connection of the home's metadata DB with its values (one CLI call: each takes seconds)."""
    listed = run(home, str(BIN / "airflow"), "connections", "list", "--show-values", "-o", "json").stdout
    return {c["conn_id"]: c for c in json.loads(listed)}


def test_a_fresh_home_gets_its_connections_and_keeps_the_server_token(tmp_path: Path) -> None:
    home, data = tmp_path / "home", tmp_path / "data"
    init = (str(BIN / "airflow-mlops"), "init-home", "--home", str(home), "--data-dir", str(data))
    run(home, *init, "--dags-folder", str(ROOT / "dags"), "--option", "source_conn_id=my_source")

    made = connections(home)
    mlflow = made["mlflow_default"]
    assert mlflow["conn_type"] == "mlflow"
    assert mlflow["extra_dejson"] == {
        "tracking_uri": f"sqlite:///{data / 'mlflow' / 'mlflow.db'}",
        "artifact_location": str(data / "mlflow" / "artifacts"),
    }
    assert made["optuna_default"]["host"] == str(data / "optuna" / "optuna.db")
    # The MLflow store's tables exist before any task (its first training does not create them).
    import sqlite3

    with sqlite3.connect(data / "mlflow" / "mlflow.db") as store:
        tables = {row[0] for row in store.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"experiments", "runs", "registered_models", "model_versions", "alembic_version"} <= tables
    # A project's home: no source connection of the reference application, no approval without a person.
    airflow = str(BIN / "airflow")
    assert "flights_source" not in made
    assert "auto_approve = False" in (home / "airflow.cfg").read_text()
    assert "source_conn_id = my_source" in (home / "airflow.cfg").read_text()
    server = made["mlops_model_server"]
    assert server["conn_type"] == "mlopsmodelserver" and len(server["password"]) >= 30

    # Outside a task, the CLI finds the metadata DB's MLflow connection; a refused transition says why.
    refused = run(
        home,
        str(BIN / "airflow-mlops"),
        "approve",
        "--model",
        "m",
        "--version",
        "1",
        "--why",
        "ok",
        check=False,
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.strip().endswith(
        "airflow-mlops approve: the registry refused: Model Version (name=m, version=1) not found"
    )
    assert (data / "mlflow" / "mlflow.db").is_file() and not (tmp_path / "mlruns").exists()

    # A home made with the old connection type keeps its token and gets the new type.
    old = {"conn_type": "mlops_model_server", "host": "127.0.0.1", "port": 8765, "password": "kept-token"}
    (tmp_path / "old.json").write_text(json.dumps({"mlops_model_server": old}))
    run(home, airflow, "connections", "import", "--overwrite", str(tmp_path / "old.json"))
    assert connections(home)["mlops_model_server"]["conn_type"] == "mlops_model_server"
    run(home, *init, "--dags-folder", str(ROOT / "dags"))
    again = connections(home)["mlops_model_server"]
    assert (again["conn_type"], again["password"]) == ("mlopsmodelserver", "kept-token")
