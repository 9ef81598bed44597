"""The plugin's React views as Airflow's plugin manager and UI API see them."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_mlops.plugins import BUNDLE, ICON, REACT_APPS, MLOpsPlugin

STATIC = Path(__file__).resolve().parents[2] / "airflow_mlops" / "plugins" / "static"


def test_every_view_is_a_valid_react_app_with_a_unique_route_and_a_shipped_bundle() -> None:
    from airflow.api_fastapi.core_api.datamodels.plugins import ReactAppResponse

    answers = [ReactAppResponse.model_validate(app) for app in MLOpsPlugin.react_apps]
    assert {(a.name, a.destination) for a in answers} == {
        ("MLOps", "nav"),
        ("Model", "dag_run"),
        ("Model", "task_instance"),
        ("Data", "task_instance"),
    }
    routes = [a.url_route for a in answers]
    assert len(set(routes)) == len(routes)  # Airflow finds a view's page by its route alone
    # Relative to the UI's base URL, served by the plugin's app from the package.
    assert not BUNDLE.startswith("/") and not ICON.startswith("/")
    assert (STATIC / Path(BUNDLE).name).stat().st_size > 0 and (STATIC / Path(ICON).name).is_file()


def test_airflows_plugin_manager_loads_the_views_from_the_entry_point() -> None:
    from airflow import plugins_manager

    external_views, react_apps = plugins_manager._get_ui_plugins()
    ours = [app for app in react_apps if app["bundle_url"] == BUNDLE]
    assert ours == REACT_APPS
    assert not [view for view in external_views if view.get("url_route") == "mlops"]


def test_a_rollout_tag_reads_as_its_steps_and_anything_else_as_none() -> None:
    from airflow_mlops.plugins.api import rollout_steps

    steps = [{"step": 1, "weight": 0.05, "healthy": True, "reasons": ["ok"], "candidate_requests": 40}]
    assert rollout_steps(json.dumps(steps)) == steps
    assert rollout_steps(None) == [] and rollout_steps("") == []
    assert rollout_steps("not json") == []  # a tag is anyone's text
    assert rollout_steps('{"step": 1}') == [] and rollout_steps('[1, {"step": 2}]') == [{"step": 2}]


def test_the_published_openapi_schema_is_the_apps() -> None:
    """``docs/api/mlops-openapi.json`` (the API's reference for scripts) is what the app serves at
    ``/mlops/openapi.json``; ``make openapi`` regenerates it."""
    from airflow_mlops.plugins.api import create_app

    published = Path(__file__).resolve().parents[2] / "docs" / "api" / "mlops-openapi.json"
    assert json.loads(published.read_text()) == create_app().openapi(), (
        "docs/api/mlops-openapi.json is stale: run `make openapi`"
    )
