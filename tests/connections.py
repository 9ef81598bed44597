"""Airflow connections for tests, as environment variables (what the Task SDK reads in any process)."""

from __future__ import annotations

import hashlib
import json
import os

from airflow_mlops.hooks.mlflow import mlflow_connection


def mlflow_conn(tracking_uri: str) -> str:
    """An ``mlflow`` connection to ``tracking_uri``; returns its id (one id per URI, so session
    fixtures and tests can each have theirs side by side)."""
    conn_id = "mlflow_" + hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(mlflow_connection(tracking_uri))
    return conn_id


def optuna_conn(storage_url: str) -> str:
    """A ``sqlite`` (``sqlite:///path``) or ``postgres`` connection to an Optuna storage; returns its id."""
    conn_id = "optuna_" + hashlib.sha256(storage_url.encode()).hexdigest()[:12]
    if storage_url.startswith("sqlite:///"):
        value = json.dumps({"conn_type": "sqlite", "host": storage_url.removeprefix("sqlite:///")})
    else:
        value = storage_url.replace("postgresql+psycopg2://", "postgresql://")
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = value
    return conn_id
