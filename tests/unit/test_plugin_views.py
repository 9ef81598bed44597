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


def _refs(node: object) -> set[str]:
    """Every ``$ref`` in a schema."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_the_api_joins_airflows_schema_under_its_mount_without_touching_airflows_own() -> None:
    """Airflow's /docs shows its root app's schema, which leaves mounted apps out: the plugin's JSON
    API is added under /mlops, tagged MLOps, its components renamed so that Airflow's "Model" (if it
    had one) stays Airflow's; the HTML pages stay out; every reference resolves."""
    from airflow_mlops.plugins.api import create_app
    from airflow_mlops.plugins.openapi import merge_schemas

    airflow = {
        "openapi": "3.1.0",
        "info": {"title": "Airflow API"},
        "paths": {"/api/v2/dags": {"get": {"operationId": "get_dags", "tags": ["DAG"]}}},
        "components": {"schemas": {"Model": {"title": "Airflow's own"}}},
        "tags": [{"name": "DAG"}],
    }
    plugin = create_app().openapi()
    merged = merge_schemas(airflow, plugin, "/mlops")
    assert merged["paths"]["/api/v2/dags"] == airflow["paths"]["/api/v2/dags"]
    assert merged["components"]["schemas"]["Model"] == {"title": "Airflow's own"}
    ours = {p for p in merged["paths"] if p.startswith("/mlops/")}
    assert ours == {f"/mlops{p}" for p in plugin["paths"] if p.startswith("/api/")}
    assert "/mlops/models" not in merged["paths"] and "/mlops/api/models/{name}" in ours
    operations = [op for p in ours for op in merged["paths"][p].values()]
    assert all(op["tags"] == ["MLOps"] and op["operationId"].startswith("mlops_") for op in operations)
    ids = [op["operationId"] for p in merged["paths"].values() for op in p.values()]
    assert len(ids) == len(set(ids))
    answer = merged["paths"]["/mlops/api/models/{name}"]["get"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/MLOpsModel"}
    defined = {f"#/components/schemas/{name}" for name in merged["components"]["schemas"]}
    assert _refs(merged) <= defined and "#/components/schemas/MLOpsVersion" in _refs(merged)
    assert {"name": "DAG"} in merged["tags"] and [t["name"] for t in merged["tags"]].count("MLOps") == 1
    assert airflow["components"]["schemas"] == {"Model": {"title": "Airflow's own"}}  # not modified


def test_the_schema_middleware_touches_only_the_root_schema_and_keeps_a_schema_it_cannot_read() -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from airflow_mlops.plugins.openapi import OpenAPIWithPlugin

    answers = {"schema": b'{"openapi": "3.1.0", "paths": {}}'}

    def schema(request: object) -> Response:
        return Response(answers["schema"], media_type="application/json")

    def other(request: object) -> JSONResponse:
        return JSONResponse({"paths": {}})

    app = Starlette(routes=[Route("/openapi.json", schema), Route("/mlops/openapi.json", other)])
    client = TestClient(OpenAPIWithPlugin(app, mount="/mlops"))
    merged = client.get("/openapi.json")
    assert merged.status_code == 200 and int(merged.headers["content-length"]) == len(merged.content)
    assert "/mlops/api/models" in merged.json()["paths"]
    assert client.get("/mlops/openapi.json").json() == {"paths": {}}  # the plugin's own: untouched
    answers["schema"] = b"not json"
    assert client.get("/openapi.json").content == b"not json"  # Airflow's answer, as it was


def test_quarantined_rows_are_read_from_the_lake_only_and_say_why_they_were_not(tmp_path: Path) -> None:
    import pandas as pd

    from airflow_mlops.plugins.api import quarantined_rows

    lake = tmp_path / "lake"
    (lake / "raw" / "_quarantine").mkdir(parents=True)
    frame = pd.DataFrame(
        {
            "origin": ["EWR"] * 25,
            "wind_speed": [1048.0] + [float("nan")] * 24,
            "time_hour": pd.date_range("2013-02-01", periods=25, freq="h", tz="UTC"),
        }
    )
    inside = lake / "raw" / "_quarantine" / "2013-02.invalid.parquet"
    frame.to_parquet(inside)
    found = quarantined_rows(inside.as_uri(), lake.as_uri(), None)
    assert found["error"] is None and found["rows"] == 25
    assert found["columns"] == ["origin", "wind_speed", "time_hour"] and len(found["sample"]) == 20
    assert found["sample"][0] == {
        "origin": "EWR",
        "wind_speed": 1048.0,
        "time_hour": "2013-02-01T00:00:00.000Z",
    }
    assert found["sample"][1]["wind_speed"] is None  # NaN, as JSON can say it
    assert len(quarantined_rows(str(inside), str(lake), None, limit=3)["sample"]) == 3

    outside = tmp_path / "elsewhere.parquet"
    frame.to_parquet(outside)
    for uri in (outside.as_uri(), f"{lake.as_uri()}/raw/../../elsewhere.parquet"):
        refused = quarantined_rows(uri, lake.as_uri(), None)
        assert refused["rows"] is None and refused["sample"] == []
        assert "outside the lake" in refused["error"] and "only the lake's files are read" in refused["error"]
    gone = quarantined_rows(f"{lake.as_uri()}/raw/_quarantine/gone.parquet", lake.as_uri(), None)
    assert gone["rows"] is None and "gone.parquet' could not be read: FileNotFoundError" in gone["error"]
