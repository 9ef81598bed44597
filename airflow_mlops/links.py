"""Extra links on our operators' task instances: the MLflow run, the model version, the reports.

Airflow 3's API server shows a link by reading the XCom stored under the link's ``xcom_key``, so
an operator stores each URL when it knows it (``persist``). Reports and model versions open in the
plugin's pages (``/mlops``, same origin as the UI); the MLflow run opens in MLflow's own UI when
``[mlops] mlflow_ui_url`` names it (an embedded SQLite store has no UI to link to).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey


class _StoredLink(BaseOperatorLink):
    """A link whose URL the operator stored in XCom while it ran ("" when it stored none)."""

    name = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=self.xcom_key) or ""

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        """Store ``url`` for this task instance; nothing when empty, or when the operator runs
        outside a task instance (``execute`` called directly: no ``ti`` to push to)."""
        ti: Any = context.get("ti") if hasattr(context, "get") else None
        if url and hasattr(ti, "xcom_push"):
            ti.xcom_push(key=cls().xcom_key, value=url)


class MLflowRunLink(_StoredLink):
    name = "MLflow run"


class ModelVersionLink(_StoredLink):
    name = "Model version"


class EvaluationReportLink(_StoredLink):
    name = "Evaluation report"


class ValidationReportLink(_StoredLink):
    name = "Validation report"


class MonitoringReportLink(_StoredLink):
    name = "Monitoring report"


def report_url(uri: str) -> str:
    """The plugin's URL of a report in the lake ("" for none)."""
    return f"/mlops/files?uri={quote(uri, safe='')}" if uri else ""


def model_version_url(name: str, version: Any) -> str:
    return f"/mlops/models#{quote(name)}-v{version}"


def mlflow_run_url(run_id: str, experiment_id: str = "") -> str:
    """The run in MLflow's UI, when ``[mlops] mlflow_ui_url`` is set ("" otherwise)."""
    from airflow_mlops import settings

    base = settings.mlflow_ui_url().rstrip("/")
    if not (base and run_id):
        return ""
    return f"{base}/#/experiments/{experiment_id or '0'}/runs/{run_id}"
