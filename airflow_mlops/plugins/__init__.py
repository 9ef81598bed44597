"""The Airflow plugin of airflow-mlops (entry point ``airflow.plugins``): the MLOps API mounted at
``/mlops`` in the Airflow API server (``plugins/api.py``)."""

from __future__ import annotations

import functools
from typing import Any

from airflow.plugins_manager import AirflowPlugin


@functools.cache
def _app() -> Any:
    from airflow_mlops.plugins.api import create_app

    return create_app()


class _FastAPIApps:
    """Builds the app when Airflow asks for it (the API server), not in every process that loads plugins."""

    def __get__(self, instance: Any, owner: Any) -> list[dict[str, Any]]:
        return [{"app": _app(), "url_prefix": "/mlops", "name": "airflow-mlops"}]


class MLOpsPlugin(AirflowPlugin):
    """Registers airflow-mlops with Airflow's plugin manager: the API and pages at ``/mlops`` and an
    "MLOps" entry in the UI's navigation that opens the Models page."""

    name = "airflow_mlops"
    fastapi_apps = _FastAPIApps()
    external_views = [
        {
            "name": "MLOps",
            "href": "/mlops/models",
            "destination": "nav",
            "url_route": "mlops",
            "category": "browse",
        }
    ]
