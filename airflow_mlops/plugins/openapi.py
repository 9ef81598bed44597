"""The plugin's JSON API in Airflow's own API docs (``/docs``, ``/redoc``).

Airflow mounts a plugin's FastAPI app as a sub-application, and FastAPI leaves mounted apps out of
the parent's OpenAPI schema, so Airflow's ``/docs`` would not list ``/mlops/api/...``. This root
middleware (``fastapi_root_middlewares``) adds them to the schema Airflow's API server answers at
``/openapi.json``: the plugin app's ``/api`` paths under its mount point, tagged ``MLOps``, and
its components renamed ``MLOps<Name>`` so they cannot collide with Airflow's. Anything that goes
wrong leaves Airflow's schema as it was (and says so in the log): the docs are never the reason
Airflow's own schema fails.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TAG = "MLOps"
PREFIX = "MLOps"


def merge_schemas(airflow: dict[str, Any], plugin: dict[str, Any], mount: str) -> dict[str, Any]:
    """``airflow``'s schema with ``plugin``'s JSON API paths (``/api/...``) added under ``mount``.

    The plugin's HTML pages stay out (they are pages, not API); its component schemas are renamed
    ``MLOps<Name>`` and its references with them; its operations are tagged ``MLOps``.
    """
    own = {name: f"{PREFIX}{name}" for name in plugin.get("components", {}).get("schemas", {})}
    text = re.sub(
        r'"#/components/schemas/([^"]+)"',
        lambda m: json.dumps(f"#/components/schemas/{own.get(m.group(1), m.group(1))}"),
        json.dumps(plugin),
    )
    renamed = json.loads(text)
    merged = dict(airflow)
    paths = dict(airflow.get("paths", {}))
    for path, operations in renamed.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        tagged = {}
        for method, operation in operations.items():
            operation = dict(operation)
            operation["tags"] = [TAG]
            operation["operationId"] = f"mlops_{operation.get('operationId', method + path)}"
            tagged[method] = operation
        paths[f"{mount.rstrip('/')}{path}"] = tagged
    merged["paths"] = paths
    components = dict(airflow.get("components", {}))
    schemas = dict(components.get("schemas", {}))
    for name, schema in renamed.get("components", {}).get("schemas", {}).items():
        schemas[own[name]] = schema
    components["schemas"] = schemas
    merged["components"] = components
    tags = [t for t in airflow.get("tags", []) if t.get("name") != TAG]
    tags.append({"name": TAG, "description": plugin.get("info", {}).get("description", "").split("\n")[0]})
    merged["tags"] = tags
    return merged


class OpenAPIWithPlugin:
    """ASGI middleware on Airflow's root app: its ``GET /openapi.json`` answer gains the plugin's
    API (``merge_schemas``). Every other request passes through untouched."""

    def __init__(self, app: ASGIApp, mount: str = "/mlops") -> None:
        self.app, self.mount = app, mount

    def is_root_schema(self, scope: Scope) -> bool:
        if scope.get("type") != "http" or scope.get("method") != "GET":
            return False
        root = str(scope.get("root_path", "")).rstrip("/")
        return str(scope.get("path", "")) in (f"{root}/openapi.json", "/openapi.json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.is_root_schema(scope):
            await self.app(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        body = b"".join(chunks)
        if start.get("status") == 200:
            try:
                from airflow_mlops.plugins import mlops_app

                body = json.dumps(merge_schemas(json.loads(body), mlops_app().openapi(), self.mount)).encode()
            except Exception:  # Airflow's schema as it was: the plugin's paths are an addition
                log.exception("airflow-mlops could not add its API to Airflow's OpenAPI schema")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
