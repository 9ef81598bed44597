"""Where the reference pipeline keeps its data: the ``[mlops]`` section of the Airflow configuration.

Each option can also be set as ``AIRFLOW__MLOPS__<OPTION>``. Defaults live under ``$AIRFLOW_HOME``.
Reading configuration is cheap (no database, no network), so DAG files call these at parse time.
"""

from __future__ import annotations

import os
from pathlib import Path


def _get(option: str, default: str) -> str:
    from airflow.sdk.configuration import conf

    value = conf.get("mlops", option, fallback=None)
    return str(value) if value else default


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")).resolve()


def lake_uri() -> str:
    """Root URI of the data lake, e.g. ``file:///srv/mlops/data/lake`` or ``s3://bucket/lake``."""
    return _get("lake_uri", (airflow_home() / "data" / "lake").as_uri()).rstrip("/")


def lake_conn_id() -> str | None:
    """Airflow connection for the lake's object storage (``aws_default`` for ``s3://``); none for ``file://``."""
    return _get("lake_conn_id", "") or None


def landing_dir() -> str:
    """Absolute path of the folder that ``flights_ingest`` watches for new month files."""
    return _get("landing_dir", str(airflow_home() / "data" / "landing"))


def source_conn_id() -> str:
    """Airflow connection id of the flights source database."""
    return _get("source_conn_id", "flights_source")


def ingest_queue_url() -> str:
    """SQS queue receiving S3 notifications for ``flights_ingest_s3``."""
    return _get("ingest_queue_url", "http://127.0.0.1:5000/123456789012/flights-landing")


def feature_repo() -> str:
    """Path of the Feast feature repository (``feature_repo/`` of the project by default)."""
    return _get("feature_repo", str(airflow_home().parent / "feature_repo"))


def feast_conn_id() -> str | None:
    """The ``feast`` connection the Feast operators use when a DAG names none (``[mlops] feast_conn_id``;
    unset: the repository's own ``feature_store.yaml``)."""
    return _get("feast_conn_id", "") or None


def feast_dir() -> str:
    """Folder of the Feast registry and the embedded SQLite online store."""
    return _get("feast_dir", str(airflow_home() / "data" / "feast"))


def features_uri() -> str:
    """Where the feature tables (Feast file sources) are written: ``<lake>/features``."""
    return f"{lake_uri()}/features"


def optuna_conn_id() -> str:
    """The connection of the Optuna storage (``[mlops] optuna_conn_id``, default ``optuna_default``):
    a ``sqlite`` connection whose host is the database file, or a ``postgres`` connection."""
    return _get("optuna_conn_id", "optuna_default")


def auto_approve() -> bool:
    """Whether ``flights_training`` approves registered models without a person (the demo's policy)."""
    return _get("auto_approve", "False").lower() in ("true", "1", "yes")


def mlflow_conn_id() -> str:
    """The ``mlflow`` connection of the tracking server and registry (``[mlops] mlflow_conn_id``,
    default ``mlflow_default``), for the plugin and the CLI; operators take ``mlflow_conn_id``."""
    return _get("mlflow_conn_id", "mlflow_default")


def mlflow_ui_url() -> str:
    """MLflow's web UI (``mlflow server``), for the MLflow run links on task instances; "" for none."""
    return _get("mlflow_ui_url", "")


def serving_dir() -> str:
    """The model server's folder: ``deployments.json``, the model cache and the request log."""
    return _get("serving_dir", str(airflow_home() / "data" / "serving"))
