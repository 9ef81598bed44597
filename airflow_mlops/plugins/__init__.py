"""The Airflow plugin of airflow-mlops (entry point ``airflow.plugins``): the MLOps API mounted at
``/mlops`` in the Airflow API server (``plugins/api.py``) and the React views that Airflow's own
UI shows from it (``react_apps``; their bundle, ``plugins/static/mlops.js``, is built from ``ui/``
by ``make ui`` and ships in the package, so users need no Node.js)."""

from __future__ import annotations

import functools
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_mlops.plugins.openapi import OpenAPIWithPlugin

MOUNT = "/mlops"


@functools.cache
def mlops_app() -> Any:
    """The plugin's FastAPI app (one per process), mounted at ``MOUNT`` by Airflow's API server."""
    from airflow_mlops.plugins.api import create_app

    return create_app()


class _FastAPIApps:
    """Builds the app when Airflow asks for it (the API server), not in every process that loads plugins."""

    def __get__(self, instance: Any, owner: Any) -> list[dict[str, Any]]:
        return [{"app": mlops_app(), "url_prefix": MOUNT, "name": "airflow-mlops"}]


# Relative to the UI's base URL (Airflow resolves it against document.baseURI), so a deployment
# under a path prefix loads it too. Airflow imports the bundle once; the bundle registers one
# component per view name below on globalThis, which is where Airflow looks for it.
BUNDLE = "mlops/static/mlops.js"
ICON = "mlops/static/icon.svg"
REACT_APPS = [
    # The MLOps pages (Models, Deployments, Data) as a top-level entry of Airflow's navigation.
    {
        "name": "MLOps",
        "bundle_url": BUNDLE,
        "destination": "nav",
        "url_route": "mlops",
        "nav_top_level": True,
        "icon": ICON,
    },
    # A "Model" tab on every DAG run and task instance: the versions that run registered.
    {"name": "Model", "bundle_url": BUNDLE, "destination": "dag_run", "url_route": "mlops-run-model"},
    {"name": "Model", "bundle_url": BUNDLE, "destination": "task_instance", "url_route": "mlops-task-model"},
    # A "Data" tab on task instances: a validation task's report (passed or quarantined).
    {"name": "Data", "bundle_url": BUNDLE, "destination": "task_instance", "url_route": "mlops-task-data"},
]


class MLOpsPlugin(AirflowPlugin):
    """Registers airflow-mlops with Airflow's plugin manager: the API and the plain HTML pages at
    ``/mlops``, an "MLOps" entry in the UI's navigation (Models, Deployments, Data inside
    Airflow's own UI), a "Model" tab on DAG runs and task instances and a "Data" tab on task
    instances; and the API's paths in the schema of Airflow's own API docs (``/docs``)."""

    name = "airflow_mlops"
    fastapi_apps = _FastAPIApps()
    # The API's paths in Airflow's own /docs (a mounted app is missing from its parent's schema).
    fastapi_root_middlewares = [
        {
            "middleware": OpenAPIWithPlugin,
            "args": [],
            "kwargs": {"mount": MOUNT},
            "name": "airflow-mlops OpenAPI",
        }
    ]
    react_apps = REACT_APPS
