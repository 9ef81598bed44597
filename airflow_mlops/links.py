"""Extra links on our operators' task instances: the MLflow run, the model version, the reports.

Airflow 3's API server shows a link by reading the XCom stored under the link's ``xcom_key``; the
task runner writes that XCom when the task finishes, with what ``get_link`` returns in the task's
process. An operator records each URL on itself when it knows it (``persist``), and ``get_link``
returns it from there: nothing is read back from XCom, so a task that has no URL to give (no
MLflow UI configured, say) stores an empty link instead of logging a missing XCom. Reports and model versions open in the
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


RECORDED = "_mlops_link_urls"  # the operator attribute holding the URLs recorded while it ran


class _StoredLink(BaseOperatorLink):
    """A link whose URL the operator recorded while it ran ("" when it recorded none)."""

    name = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return str(getattr(operator, RECORDED, {}).get(self.xcom_key, ""))

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        """Record ``url`` on the running task for the task runner to store as this link; nothing
        when empty, or when the operator runs outside a task instance (no ``task`` in context)."""
        task: Any = context.get("task") if hasattr(context, "get") else None
        if url and task is not None:
            task.__dict__.setdefault(RECORDED, {})[cls().xcom_key] = url


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
