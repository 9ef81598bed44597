"""Thin wrapper around ``mlflow.MlflowClient``, built from an Airflow connection of type ``mlflow``."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.bases.hook import BaseHook

from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.extras import ExtraMixin
from airflow_mlops.storage import local_path

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from mlflow import MlflowClient

# MLflow reads a tracking server's credentials from these variables at each request.
TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"


def route_mlflow_logging() -> None:
    """MLflow's log lines through the process's own logging (Airflow's task log), at their level.

    MLflow gives its logger a handler of its own that writes to stderr, which Airflow's task log
    records at level error, and its downloads draw a progress bar per file there. The handler is
    removed in this process only; the progress bar is turned off by an environment default (a
    variable a person set wins), which the processes started later inherit.
    """
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logger = logging.getLogger("mlflow")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True


def mlflow_connection(tracking_uri: str, artifact_location: str | None = None) -> dict[str, Any]:
    """The fields of an ``mlflow`` connection to ``tracking_uri`` (a server's ``http(s)://host:port``
    or a local store's URI), e.g. for ``AIRFLOW_CONN_MLFLOW_DEFAULT=json.dumps(...)``."""
    from urllib.parse import urlsplit

    extra: dict[str, str] = {"artifact_location": artifact_location} if artifact_location else {}
    if tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        fields: dict[str, Any] = {"conn_type": "mlflow", "host": parts.hostname, "schema": parts.scheme}
        if parts.port:
            fields["port"] = parts.port
        return {**fields, "extra": extra} if extra else fields
    return {"conn_type": "mlflow", "extra": {"tracking_uri": tracking_uri, **extra}}


class MlflowHook(BaseHook):
    """The MLflow tracking server and model registry of a connection of type ``mlflow``.

    Two kinds of connection:

    - **A tracking server** (``mlflow server``): host, port and scheme (``http`` by default, or
      ``https``) locate it; a password with no login is a bearer token, a login and password are
      basic-auth credentials. MLflow reads them from ``MLFLOW_TRACKING_TOKEN`` /
      ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, which the hook sets in the task's
      process when it resolves the tracking URI (``credentials_env`` gives them to subprocesses): they
      never appear in a URI, a rendered field, a trigger row or a log line.
    - **A local store** (the embedded default): no host, and the extra
      ``{"tracking_uri": "sqlite:////abs/path/mlflow.db"}`` (any store URI MLflow accepts without a
      server).

    The extra ``artifact_location`` is where experiments created through the hook keep their
    artifacts; for a SQLite store it defaults to the folder ``artifacts`` beside the database, so
    nothing lands in the working directory's ``./mlruns``.

    :param mlflow_conn_id: the connection (default ``mlflow_default``).
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Scheme", "password": "Password or token"},
            "placeholders": {
                "host": "mlflow.example.com (empty for a local store)",
                "port": "5000",
                "schema": "http",
                "login": "user (empty with a token)",
                "extra": '{"tracking_uri": "sqlite:////srv/mlops/mlflow.db", '
                '"artifact_location": "s3://bucket/mlflow"}',
            },
        }

    @cached_property
    def _connection(self) -> Connection:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            # Outside a task (the CLI, the demo) the Task SDK knows only environment connections;
            # Airflow core reads the metadata DB's as well.
            from airflow.models.connection import Connection

            return Connection.get_connection_from_secrets(self.mlflow_conn_id)

    @cached_property
    def tracking_uri(self) -> str:
        """The tracking URI, without credentials (the server's URL or the local store's URI)."""
        conn = self._connection
        extra = conn.extra_dejson or {}
        if conn.host:
            if "://" in conn.host:
                raise MLOpsConfigError(
                    f"connection {self.mlflow_conn_id!r}: host must be a host name, without a scheme "
                    f"(put it in the Scheme field), got {conn.host!r}"
                )
            scheme = conn.schema or "http"
            if scheme not in ("http", "https"):
                raise MLOpsConfigError(
                    f"connection {self.mlflow_conn_id!r}: scheme must be 'http' or 'https', got {scheme!r}"
                )
            port = f":{conn.port}" if conn.port else ""
            os.environ.update(self.credentials_env())  # whatever uses the URI in this process authenticates
            return f"{scheme}://{conn.host}{port}"
        uri = extra.get("tracking_uri")
        if not isinstance(uri, str) or not uri:
            raise MLOpsConfigError(
                f"connection {self.mlflow_conn_id!r}: give a tracking server's host, or a local store's "
                f"URI as extra 'tracking_uri' (e.g. sqlite:////abs/path/mlflow.db); got host "
                f"{conn.host!r} and extra keys {sorted(extra)}"
            )
        if uri.startswith(("http://", "https://")):
            raise MLOpsConfigError(
                f"connection {self.mlflow_conn_id!r}: extra 'tracking_uri' is for a local store; a "
                f"tracking server goes in host, port and scheme (credentials in login/password), got {uri!r}"
            )
        return uri

    @cached_property
    def artifact_location(self) -> str | None:
        """Where experiments created through the hook keep artifacts (None: the server decides)."""
        location = (self._connection.extra_dejson or {}).get("artifact_location")
        if location:
            return str(location)
        uri = self.tracking_uri
        if uri.startswith("sqlite:///"):
            return str(Path(uri.removeprefix("sqlite:///")).parent / "artifacts")
        return None

    def credentials_env(self) -> dict[str, str]:
        """The variables MLflow reads a tracking server's credentials from (empty for a local store)."""
        conn = self._connection
        if not conn.host or not conn.password:
            return {}
        if conn.login:
            return {USERNAME_ENV: conn.login, PASSWORD_ENV: conn.password}
        return {TOKEN_ENV: conn.password}

    def prepare_store(self) -> str:
        """The tracking URI, with a SQLite store's folder made (SQLite creates the file, not its
        folder); imports nothing, so a task process that only launches others stays light."""
        uri = self.tracking_uri
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return uri

    def get_conn(self) -> MlflowClient:
        """An ``MlflowClient`` on the connection's tracking store and registry (cached)."""
        return self._client

    @cached_property
    def _client(self) -> MlflowClient:
        from mlflow import MlflowClient

        route_mlflow_logging()

        uri = self.prepare_store()
        self.log.debug("MLflow client on %s", uri)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    @contextmanager
    def activated(self, experiment: str | None = None) -> Iterator[str | None]:
        """MLflow's own API (``mlflow.start_run``, ``mlflow.sklearn.log_model``,
        ``mlflow.pyfunc.load_model("models:/...")``) on the connection inside the ``with`` block,
        for a model you train and log yourself::

            with MlflowHook("mlflow_default").activated("my_experiment") as experiment_id:
                with mlflow.start_run(experiment_id=experiment_id):
                    mlflow.sklearn.log_model(...)

        Sets the tracking and registry URI and the credentials in MLflow's environment variables
        (never logged), and yields the id of ``experiment`` (created with the connection's artifact
        location if new; None without one). On leaving, the URIs and variables are what they were:
        a process that runs several tasks (``dag.test()``) keeps no other task's store.
        """
        from airflow_mlops.registry.versions import mlflow_uris, restore_environ

        credentials = self.credentials_env()
        saved = {name: os.environ.get(name) for name in (TOKEN_ENV, USERNAME_ENV, PASSWORD_ENV)}
        os.environ.update(credentials)
        try:
            with mlflow_uris(self.prepare_store()):
                yield self.get_or_create_experiment(experiment) if experiment else None
        finally:
            restore_environ(saved)

    def get_or_create_experiment(self, name: str) -> str:
        """The id of experiment ``name``, created with the connection's artifact location if new."""
        client = self.get_conn()
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        from mlflow.exceptions import MlflowException

        try:
            return str(client.create_experiment(name, artifact_location=self.artifact_location))
        except MlflowException:  # created meanwhile by a parallel task
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def log_run(
        self,
        experiment: str,
        run_name: str,
        *,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float | None] | None = None,
        files: Sequence[Any] = (),
    ) -> str:
        """One finished run in ``experiment`` (created if new) with its params, the finite metrics and
        ``files`` (local paths or ``file://`` URIs, or path objects of an object store, streamed
        through a scratch copy) as artifacts; returns the run id. Values MLflow cannot store are
        cut to its limits
        (params 500 characters, metric keys 250), non-finite metrics are left out."""
        client = self.get_conn()
        run = client.create_run(
            self.get_or_create_experiment(experiment), run_name=run_name, tags=dict(tags or {})
        )
        run_id = str(run.info.run_id)
        for key, value in (params or {}).items():
            client.log_param(run_id, key, str(value)[:500])
        for key, number in (metrics or {}).items():
            if number is not None and math.isfinite(number):
                client.log_metric(run_id, key[:250], float(number))
        for file in files:
            if isinstance(file, str | Path):
                client.log_artifact(run_id, str(local_path(file, "artifact")))
                continue
            with tempfile.TemporaryDirectory(prefix="airflow-mlops-log-") as scratch:
                copy = Path(scratch) / file.name  # an object store's file: MLflow logs local files
                with file.open("rb") as source, copy.open("wb") as target:
                    shutil.copyfileobj(source, target)
                client.log_artifact(run_id, str(copy))
        client.set_terminated(run_id)
        self.log.debug("MLflow run %s in experiment %s", run_id, experiment)
        return run_id

    def test_connection(self) -> tuple[bool, str]:
        """Reach the store: list one experiment (for the Airflow UI's "Test" button)."""
        try:
            self.get_conn().search_experiments(max_results=1)
        except Exception as err:
            return False, f"MLflow at {self.tracking_uri}: {err}"
        return True, f"MLflow at {self.tracking_uri} answered"


class MlflowOperatorMixin(ExtraMixin):
    """``mlflow_hook``, built once from the operator's ``mlflow_conn_id`` (when the task runs); the
    task needs the ``registry`` extra (MLflow) unless the class names a larger one."""

    required_extra: ClassVar[str | None] = "registry"
    mlflow_conn_id: str | None

    @cached_property
    def mlflow_hook(self) -> MlflowHook:
        if not self.mlflow_conn_id:
            raise MLOpsConfigError(
                f"{type(self).__name__}: mlflow_conn_id is required here, got {self.mlflow_conn_id!r}"
            )
        return MlflowHook(self.mlflow_conn_id)

    @property
    def mlflow_store_uri(self) -> str | None:
        """The connection's tracking URI (credentials set up for this process); None without one."""
        return self.mlflow_hook.tracking_uri if self.mlflow_conn_id else None
