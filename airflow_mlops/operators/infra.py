"""Infra validation as an Airflow task: a registered version proven servable before any deployment."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlops.audit import actor
from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.xcom import InfraValidation

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The model version tags a validation writes; ``DeployModelOperator`` reads ``BLESSING_TAG``.
BLESSING_TAG = "infra_blessing"
REPORT_TAG = "infra_report"


class InfraValidateOperator(MlflowOperatorMixin, BaseOperator):
    """Prove a registered model version servable before it takes traffic (as TFX's InfraValidator).

    Starts the model server (``airflow-mlops serve``) as a sandbox on the worker: its own process,
    a loopback port, its own folder and token, no request log. The candidate is deployed there
    exactly as in production (downloaded from the registry, its digest checked, its modules
    vetted), then sent its own input example, the champion's, and a sample of the requests the
    endpoint's callers sent recently (the request log). The checks (``serving.infra``): it
    **loads**; it **answers** its example and no request gets a server error; it accepts the
    **inputs** the champion accepts (every request the champion answers, it answers; a field the
    champion does not take is named); its p99 **latency** and the server's peak **memory** stay
    within ``limits``.

    The verdict goes on the model version: tag ``infra_blessing`` (``blessed`` or
    ``not_blessed``) and ``infra_report`` (the report's URI), which ``DeployModelOperator``
    requires with ``require_infra_blessing`` (or ``[mlops] require_infra_blessing``). A version
    that fails is also recorded ``rejected`` with the failed checks as the reason, and the task is
    skipped, so the deployment after it is skipped and the DAG run does not fail (as a failed
    gate). A sandbox that cannot start at all fails the task: that is the worker's problem, not the model's.

    :param model_name: the registered model (templated).
    :param version: the candidate version (templated).
    :param endpoint: the endpoint whose logged requests are replayed (templated; empty: none).
    :param champion_alias: the alias of the version the candidate must accept the inputs of
        (``champion``; none yet, or the candidate itself: no comparison).
    :param request_log_uri: the request log (default ``[mlops] request_log_uri``).
    :param sample_requests: how many of the most recent logged requests to replay (default 200).
    :param lookback_days: how far back the sample may reach (default 7).
    :param limits: ``{"max_p99_ms": 1000, "max_rss_mb": 4096, "startup_timeout_s": 120}``.
    :param report_dir: where the report goes (templated; default ``<lake>/reports/infra_validation``).
    :param trusted_modules: modules besides airflow_mlops the sandbox may import to load a model
        (default ``[mlops] trusted_model_modules``).
    :param mlflow_conn_id: the ``mlflow`` connection of the registry.
    :param storage_conn_id: the connection of an object store holding the request log or the report folder.

    XCom: ``{"blessed", "model", "version", "champion", "checks", "report_uri", "p50_ms", "p99_ms",
    "peak_rss_mb", "requests"}``.
    """

    template_fields: Sequence[str] = ("model_name", "version", "endpoint", "report_dir")
    ui_color = "#e8eaf6"

    def __init__(
        self,
        *,
        model_name: str,
        version: str,
        endpoint: str = "",
        champion_alias: str = "champion",
        request_log_uri: str | None = None,
        sample_requests: int = 200,
        lookback_days: float = 7,
        limits: Mapping[str, Any] | None = None,
        report_dir: str | None = None,
        trusted_modules: Sequence[str] | None = None,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        from airflow_mlops.exceptions import MLOpsConfigError
        from airflow_mlops.serving.infra import InfraLimits

        super().__init__(**kwargs)
        self.limits = InfraLimits.from_dict(limits).to_dict()  # a bad limit fails at parse time
        if isinstance(sample_requests, bool) or not isinstance(sample_requests, int) or sample_requests < 0:
            raise MLOpsConfigError(
                f"{kwargs.get('task_id')}: sample_requests must be a whole number >= 0, got {sample_requests!r}"
            )
        if lookback_days <= 0:
            raise MLOpsConfigError(
                f"{kwargs.get('task_id')}: lookback_days must be positive, got {lookback_days!r}"
            )
        self.model_name, self.version, self.endpoint = model_name, version, endpoint
        self.champion_alias, self.request_log_uri = champion_alias, request_log_uri
        self.sample_requests, self.lookback_days = sample_requests, lookback_days
        self.report_dir, self.trusted_modules = report_dir, trusted_modules
        self.mlflow_conn_id, self.storage_conn_id = mlflow_conn_id, storage_conn_id

    def execute(self, context: Context) -> InfraValidation:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops import settings
        from airflow_mlops.registry.governance import alias_version, record
        from airflow_mlops.serving.infra import InfraLimits, failed_reasons, validate
        from airflow_mlops.storage import object_path, uri_of

        version = str(self.version)
        hook = self.mlflow_hook
        client = hook.get_conn()
        champion_version = (
            alias_version(client, self.model_name, self.champion_alias) if self.champion_alias else None
        )
        champion = (
            {"name": self.model_name, "version": champion_version}
            if champion_version and champion_version != version
            else None
        )
        logged = self.logged_requests(settings)
        self.log.info(
            "Infra validation of %s v%s against %s with %d logged requests",
            self.model_name,
            version,
            f"the champion v{champion_version}" if champion else "no champion",
            len(logged),
        )
        tracking_uri = hook.tracking_uri
        report = validate(
            {"name": self.model_name, "version": version},
            champion,
            tracking_uri,
            logged,
            InfraLimits(**self.limits),
            env=hook.credentials_env(),  # the worker's own environment (AWS_* for S3 artifacts) goes too
            trusted_modules=self.trusted_modules
            if self.trusted_modules is not None
            else settings.trusted_model_modules(),
        )
        for check in report["checks"]:
            self.log.info("%s %s: %s", "pass" if check["passed"] else "FAIL", check["check"], check["detail"])
        folder = self.report_dir or f"{settings.lake_uri().rstrip('/')}/reports/infra_validation"
        target = object_path(f"{folder.rstrip('/')}/{self.model_name}/v{version}.json", self.storage_conn_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(report, indent=2))
        report_uri = uri_of(target)
        client.set_model_version_tag(
            self.model_name, version, BLESSING_TAG, "blessed" if report["blessed"] else "not_blessed"
        )
        client.set_model_version_tag(self.model_name, version, REPORT_TAG, report_uri)
        if not report["blessed"]:
            why = f"infra validation failed: {failed_reasons(report)}"
            record(client, self.model_name, version, "rejected", actor(context, type(self).__name__), why)
            raise AirflowSkipException(f"{self.model_name} v{version}: {why} (report {report_uri})")
        result: InfraValidation = {**report, "report_uri": report_uri}  # type: ignore[typeddict-item]
        return result

    def logged_requests(self, settings: Any) -> list[list[dict[str, Any]]]:
        """The most recent ``sample_requests`` logged rows of ``endpoint``, each as a request of one row."""
        if not self.endpoint or self.sample_requests == 0:
            return []
        from airflow_mlops.operators.monitor import read_request_log

        uri = self.request_log_uri or settings.request_log_uri()
        since = datetime.now(UTC) - timedelta(days=self.lookback_days)
        log = read_request_log(uri, self.storage_conn_id, since, None)
        if len(log) == 0:
            return []
        log = log[log["endpoint"] == self.endpoint].sort_values("at").tail(self.sample_requests)
        return [[json.loads(text)] for text in log["features"]]
