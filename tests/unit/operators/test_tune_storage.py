"""The Optuna storage comes from a connection: sqlite or postgres, anything else refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.operators.tune import storage_url


def test_sqlite_and_postgres_connections_become_storage_urls(tmp_path: Path, monkeypatch) -> None:
    database = tmp_path / "optuna" / "studies.db"
    monkeypatch.setenv("AIRFLOW_CONN_STUDIES", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    assert storage_url("studies") == f"sqlite:///{database}"
    assert database.parent.is_dir()  # SQLite makes the file, not its folder
    monkeypatch.setenv("AIRFLOW_CONN_STUDIES_PG", "postgres://ana:p%40ss@db.internal:5432/optuna")
    assert storage_url("studies_pg") == "postgresql+psycopg2://ana:p%40ss@db.internal:5432/optuna"


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ({"conn_type": "sqlite"}, r"connection 'bad': a sqlite storage needs host = the file's path"),
        ({"conn_type": "mysql", "host": "db"}, r"'sqlite' or 'postgres' connection, got conn_type 'mysql'"),
    ],
)
def test_other_connections_are_refused_by_name(monkeypatch, connection: dict, message: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BAD", json.dumps(connection))
    with pytest.raises(MLOpsConfigError, match=message):
        storage_url("bad")
