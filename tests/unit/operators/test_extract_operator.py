"""SqlExtractOperator: parse-time behaviour and the errors it raises before touching any output."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mlops.exceptions import SourceConnectionError, TargetError
from airflow_mlops.operators.extract import SqlExtractOperator


def make(**overrides) -> SqlExtractOperator:
    kwargs = {
        "task_id": "extract",
        "sql": "SELECT 1 AS x",
        "source_conn_id": "flights_source",
        "target": "file:///tmp/x.parquet",
    }
    return SqlExtractOperator(**{**kwargs, **overrides})


def test_init_only_stores_arguments_and_declares_templates() -> None:
    op = make(parameters={"month": "{{ ds }}"}, chunk_size=10)
    assert op.template_fields == ("sql", "parameters", "target", "parents")
    assert op.parameters == {"month": "{{ ds }}"} and op.chunk_size == 10


def test_missing_connection_is_a_clear_error(airflow_db, tmp_path: Path, monkeypatch) -> None:
    from airflow_mlops.hooks.sql import get_sqlalchemy_engine

    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_DB", raising=False)
    with pytest.raises(SourceConnectionError, match="'no_such_db' is not defined"):
        get_sqlalchemy_engine("no_such_db")


def test_target_must_name_a_parquet_file(tmp_path: Path) -> None:
    op = make(target=(tmp_path / "out.csv").as_uri())
    with pytest.raises(TargetError, match=r"must name a \.parquet file"):
        op.execute(context={})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_provider_info_lists_our_modules() -> None:
    import importlib

    from airflow_mlops import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == "airflow-mlops"
    for kind in ("operators", "hooks", "triggers"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    assert "lake_uri" in info["config"]["mlops"]["options"]


def test_no_rows_fails_without_a_retry_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    import json
    import sqlite3
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.exceptions import EmptyResultError

    with sqlite3.connect(tmp_path / "source.db") as conn:
        conn.execute("CREATE TABLE flights (month INTEGER)")
    monkeypatch.setenv(
        "AIRFLOW_CONN_EMPTY_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "source.db")})
    )
    op = make(
        sql="SELECT * FROM flights WHERE month = 7",
        source_conn_id="empty_source",
        target=(tmp_path / "out" / "2013-07.parquet").as_uri(),
    )
    with pytest.raises(AirflowFailException, match="no rows") as raised:
        op.execute(context={"dag": SimpleNamespace(dag_id="d"), "run_id": "r"})  # type: ignore[arg-type]
    assert isinstance(raised.value.__cause__, EmptyResultError)
    assert not (tmp_path / "out" / "2013-07.parquet").exists()
