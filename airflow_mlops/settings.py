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
    """Absolute path of the landing folder an ingest DAG watches for new files (``[mlops] landing_dir``)."""
    return _get("landing_dir", str(airflow_home() / "data" / "landing"))


def data_roots() -> list[str]:
    """Where data operators may read, write and move data: the lake, the landing folder and the
    URIs of ``[mlops] data_roots`` (comma-separated, e.g. an S3 landing bucket ``s3://landing``)."""
    extra = [r.strip() for r in _get("data_roots", "").split(",") if r.strip()]
    return [lake_uri(), landing_dir(), *extra]


def source_conn_id() -> str:
    """Airflow connection id of the source database the extract DAGs read (``[mlops] source_conn_id``)."""
    return _get("source_conn_id", "mlops_source")


def ingest_queue_url() -> str:
    """SQS queue receiving the landing bucket's S3 notifications (``[mlops] ingest_queue_url``; empty
    when none is configured)."""
    return _get("ingest_queue_url", "")


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
    """Whether a training DAG approves registered models without a person (``[mlops] auto_approve``,
    default False; a development home may turn it on)."""
    return _get("auto_approve", "False").lower() in ("true", "1", "yes")


def approver_must_differ() -> bool:
    """Separation of duties (``[mlops] approver_must_differ``, default False): a version cannot be
    approved by the person who triggered the DAG run that trained it."""
    return _get("approver_must_differ", "False").lower() in ("true", "1", "yes")


def require_infra_blessing() -> bool:
    """Whether ``DeployModelOperator`` deploys only versions ``InfraValidateOperator`` blessed
    (``[mlops] require_infra_blessing``, default False)."""
    return _get("require_infra_blessing", "False").lower() in ("true", "1", "yes")


def alert_email_to() -> list[str]:
    """Who gets the suite's alerts by mail (``[mlops] alert_email_to``, comma-separated; none by default)."""
    return [a.strip() for a in _get("alert_email_to", "").split(",") if a.strip()]


def alert_email_from() -> str:
    """The sender of alert mail (``[mlops] alert_email_from``, default ``airflow-mlops@localhost``)."""
    return _get("alert_email_from", "airflow-mlops@localhost")


def alert_smtp_conn_id() -> str:
    """The SMTP connection alert mail goes through (``[mlops] alert_smtp_conn_id``, default ``smtp_default``)."""
    return _get("alert_smtp_conn_id", "smtp_default")


def alert_slack_conn_id() -> str:
    """The Slack incoming-webhook connection alerts are posted to (``[mlops] alert_slack_conn_id``; none by default)."""
    return _get("alert_slack_conn_id", "")


def alerts_base_url() -> str:
    """The Airflow UI's address for links in alerts (``[mlops] alerts_base_url``; default ``[api] base_url``)."""
    return _get("alerts_base_url", "")


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


def request_log_uri() -> str:
    """The model servers' request log, which the monitors read (``[mlops] request_log_uri``): a
    folder or an object store URI such as ``s3://bucket/requests`` (read through ``[mlops]
    lake_conn_id``); default ``<serving_dir>/requests``, the embedded server's own."""
    return _get("request_log_uri", str(Path(serving_dir()) / "requests"))


def trusted_model_modules() -> list[str]:
    """Modules besides ``airflow_mlops`` the model server may import to load a registered model
    (``[mlops] trusted_model_modules``, comma-separated; default none): a network module a package
    does not carry, or an MLflow flavor's loader (``mlflow.sklearn``). See the README's Security."""
    return [m.strip() for m in _get("trusted_model_modules", "").split(",") if m.strip()]


def code_paths() -> list[str]:
    """Folders of the project's own modules that the training driver and the model server import:
    ``[mlops] code_path`` (folders separated by ``os.pathsep``), then the DAG folder (``[core]
    dags_folder``), where a package beside the DAGs (a network, a data module) lives."""
    from airflow.sdk.configuration import conf

    paths = [p for p in _get("code_path", "").split(os.pathsep) if p.strip()]
    dags_folder = conf.get("core", "dags_folder", fallback=None)
    if dags_folder:
        paths.append(os.path.expanduser(str(dags_folder)))
    return list(dict.fromkeys(str(Path(p).resolve()) for p in paths))


def python_path(extra: list[str] | None = None) -> str:
    """``PYTHONPATH`` for a process that must import the project's modules: ``extra`` folders, the
    :func:`code_paths` and the current ``PYTHONPATH``, without repeats."""
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys([*(extra or []), *code_paths(), *current]))
