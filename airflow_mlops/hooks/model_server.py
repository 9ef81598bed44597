"""Thin wrapper around the model server's HTTP API (``airflow-mlops serve``), from an Airflow connection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk.bases.hook import BaseHook

from airflow_mlops.exceptions import ModelServerError


class ModelServerHook(BaseHook):
    """The model server of a connection of type ``mlops_model_server``.

    The connection's host and port locate the server, its schema is ``http`` (default) or
    ``https``, and its password is the admin token (sent as ``Authorization: Bearer``, never logged).
    Methods are named after the server's verbs: ``deploy``, ``rollback``, ``deployments``,
    ``stats``, ``predict``.

    :param model_server_conn_id: the connection (default ``mlops_model_server``).
    :param timeout: seconds per request (a deployment downloads and loads models: give it time).
    """

    conn_name_attr = "model_server_conn_id"
    default_conn_name = "mlops_model_server"
    conn_type = "mlops_model_server"
    hook_name = "MLOps model server"

    def __init__(self, model_server_conn_id: str = default_conn_name, *, timeout: float = 120.0) -> None:
        super().__init__()
        self.model_server_conn_id, self.timeout = model_server_conn_id, timeout

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {"hidden_fields": ["login", "extra"], "relabeling": {"password": "Admin token", "schema": "Scheme"},
                "placeholders": {"host": "127.0.0.1", "port": "8765", "schema": "http"}}

    def _target(self, conn: Any, admin: bool) -> tuple[str, dict[str, str]]:
        if not conn.host:
            raise ModelServerError(f"connection {self.model_server_conn_id!r}: host is empty (the model server's address)")
        port = f":{conn.port}" if conn.port else ""
        headers = {"Authorization": f"Bearer {conn.password}"} if admin and conn.password else {}
        return f"{conn.schema or 'http'}://{conn.host}{port}", headers

    def base_url(self) -> str:
        return self._target(self.get_connection(self.model_server_conn_id), admin=False)[0]

    def _answer(self, method: str, path: str, response: Any) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ModelServerError(f"model server {method} {path}: HTTP {response.status_code}: {detail}")
        self.log.debug("%s %s -> %s", method, path, response.status_code)
        return response.json()

    def _request(self, method: str, path: str, *, admin: bool = False, json: Any = None) -> Any:
        import httpx

        base, headers = self._target(self.get_connection(self.model_server_conn_id), admin)
        self.log.debug("%s %s%s", method, base, path)
        try:
            response = httpx.request(method, f"{base}{path}", json=json, headers=headers, timeout=self.timeout)
        except httpx.TransportError as err:
            raise ModelServerError(f"model server {base} ({self.model_server_conn_id}): {type(err).__name__}: {err}") from err
        return self._answer(method, path, response)

    async def _arequest(self, method: str, path: str, *, admin: bool = False) -> Any:
        import httpx

        base, headers = self._target(await self.aget_connection(self.model_server_conn_id), admin)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.request(method, f"{base}{path}", headers=headers)
        except httpx.TransportError as err:
            raise ModelServerError(f"model server {base} ({self.model_server_conn_id}): {type(err).__name__}: {err}") from err
        return self._answer(method, path, response)

    def deploy(self, endpoint: str, variants: Mapping[str, Mapping[str, str]], policy: Mapping[str, Any],
               who: str = "", why: str = "", feature_service: str | None = None) -> dict[str, Any]:
        return self._request("PUT", f"/v1/admin/deployments/{endpoint}", admin=True,
                             json={"variants": variants, "policy": policy, "who": who, "why": why,
                                   "feature_service": feature_service})

    def rollback(self, endpoint: str, who: str = "", why: str = "") -> dict[str, Any]:
        return self._request("POST", f"/v1/admin/deployments/{endpoint}/rollback", admin=True,
                             json={"who": who, "why": why})

    def deployments(self) -> dict[str, Any]:
        return self._request("GET", "/v1/admin/deployments", admin=True)

    def stats(self, endpoint: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/admin/deployments/{endpoint}/stats", admin=True)

    async def astats(self, endpoint: str) -> dict[str, Any]:
        """``stats`` for triggers: the connection is read asynchronously in the triggerer."""
        return await self._arequest("GET", f"/v1/admin/deployments/{endpoint}/stats", admin=True)

    def predict(self, endpoint: str, rows: Sequence[Mapping[str, Any]], key: str | None = None) -> dict[str, Any]:
        return self._request("POST", f"/v1/models/{endpoint}/predict", json={"rows": list(rows), "key": key})
