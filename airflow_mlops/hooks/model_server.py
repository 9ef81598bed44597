"""Thin wrapper around the model server's HTTP API (``airflow-mlops serve``), from an Airflow connection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

from airflow_mlops.exceptions import ModelServerError

if TYPE_CHECKING:
    from airflow.sdk import Connection


class ModelServerHook(BaseHook):
    """The model server of a connection of type ``mlopsmodelserver``.

    The connection's host and port locate the server, its schema is ``http`` (default) or
    ``https``, and its password is the admin token (sent as ``Authorization: Bearer``, never logged).
    Methods are named after the server's verbs: ``deploy``, ``rollback``, ``deployments``,
    ``stats``, ``predict``.

    Replicas behind a load balancer: the connection's host and port are the balancer's (predictions
    and reads go there), and its extra ``{"replicas": ["host:port", ...]}`` lists every replica.
    ``deploy`` and ``rollback`` then go to each replica in turn (each switches atomically); if a
    deployment fails on one, the replicas already switched are rolled back and the error names them,
    so the replicas do not stay on different deployments (a failed rollback names the replicas that
    rolled back and those that did not). ``stats`` adds up the replicas' counts (requests, rows,
    errors) and takes the highest p50/p99 of any replica (percentiles do not add up; the highest is
    the bound a canary check may rely on).

    :param model_server_conn_id: the connection (default ``mlops_model_server``).
    :param timeout: seconds per request (a deployment downloads and loads models: give it time).
    """

    conn_name_attr = "model_server_conn_id"
    default_conn_name = "mlops_model_server"
    conn_type = "mlopsmodelserver"
    hook_name = "MLOps model server"

    def __init__(self, model_server_conn_id: str = default_conn_name, *, timeout: float = 120.0) -> None:
        super().__init__()
        self.model_server_conn_id, self.timeout = model_server_conn_id, timeout

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["login", "extra"],
            "relabeling": {"password": "Admin token", "schema": "Scheme"},
            "placeholders": {"host": "127.0.0.1", "port": "8765", "schema": "http"},
        }

    def _target(self, conn: Connection, admin: bool) -> tuple[str, dict[str, str]]:
        if not conn.host:
            raise ModelServerError(
                f"connection {self.model_server_conn_id!r}: host is empty (the model server's address)"
            )
        port = f":{conn.port}" if conn.port else ""
        headers = {"Authorization": f"Bearer {conn.password}"} if admin and conn.password else {}
        return f"{conn.schema or 'http'}://{conn.host}{port}", headers

    def _replicas(self, conn: Connection) -> list[str]:
        """The base URLs of every replica (extra ``replicas``), or the connection's one address."""
        base = self._target(conn, admin=False)[0]
        replicas = (conn.extra_dejson or {}).get("replicas")
        if replicas is None:
            return [base]
        if (
            not isinstance(replicas, list)
            or not replicas
            or not all(isinstance(r, str) and r for r in replicas)
        ):
            raise ModelServerError(
                f"connection {self.model_server_conn_id!r}: extra 'replicas' must be a non-empty "
                f"list of 'host:port' strings, got {replicas!r}"
            )
        scheme = conn.schema or "http"
        return [r.rstrip("/") if "://" in r else f"{scheme}://{r}" for r in replicas]

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

    def _request(
        self, method: str, path: str, *, admin: bool = False, json: Any = None, base: str | None = None
    ) -> Any:
        import httpx

        address, headers = self._target(self.get_connection(self.model_server_conn_id), admin)
        base = base or address
        self.log.debug("%s %s%s", method, base, path)
        try:
            response = httpx.request(
                method, f"{base}{path}", json=json, headers=headers, timeout=self.timeout
            )
        except httpx.TransportError as err:
            raise ModelServerError(
                f"model server {base} ({self.model_server_conn_id}): {type(err).__name__}: {err}"
            ) from err
        return self._answer(method, path, response)

    async def _arequest(self, method: str, path: str, *, admin: bool = False, base: str | None = None) -> Any:
        import httpx

        address, headers = self._target(await self.aget_connection(self.model_server_conn_id), admin)
        base = base or address
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.request(method, f"{base}{path}", headers=headers)
        except httpx.TransportError as err:
            raise ModelServerError(
                f"model server {base} ({self.model_server_conn_id}): {type(err).__name__}: {err}"
            ) from err
        return self._answer(method, path, response)

    def _switch_all(
        self, method: str, path: str, body: dict[str, Any], endpoint: str, who: str, *, undo: bool
    ) -> dict[str, Any]:
        """A deploy or rollback on every replica in turn. If one fails after others switched: with
        ``undo`` (a deployment) those roll back to what they served; a rollback cannot be undone
        that way (a second rollback goes one further back), so the error names the replicas that
        rolled back and the ones that did not, for a person to decide."""
        replicas = self._replicas(self.get_connection(self.model_server_conn_id))
        switched: list[str] = []
        answer: dict[str, Any] = {}
        for base in replicas:
            try:
                answer = self._request(method, path, admin=True, json=body, base=base)
            except ModelServerError as err:
                if not switched:
                    raise
                if not undo:
                    raise ModelServerError(
                        f"{err}; rolled back already: {', '.join(switched)}; not rolled back: "
                        f"{', '.join(replicas[len(switched) :])}"
                    ) from err
                undone = []
                for done in switched:
                    try:
                        self.rollback_replica(done, endpoint, who, f"undo: replica {base} failed")
                        undone.append(f"{done} rolled back")
                    except ModelServerError as undo_err:
                        undone.append(f"{done} NOT rolled back ({undo_err})")
                raise ModelServerError(
                    f"{err}; the replicas switched before it: {'; '.join(undone)}"
                ) from err
            switched.append(base)
        return {**answer, "replicas": len(replicas)} if len(replicas) > 1 else answer

    def rollback_replica(self, base: str, endpoint: str, who: str = "", why: str = "") -> dict[str, Any]:
        """Roll back one replica only (``rollback`` rolls back all of them)."""
        return self._request(
            "POST",
            f"/v1/admin/deployments/{endpoint}/rollback",
            admin=True,
            json={"who": who, "why": why},
            base=base,
        )

    def deploy(
        self,
        endpoint: str,
        variants: Mapping[str, Mapping[str, str]],
        policy: Mapping[str, Any],
        who: str = "",
        why: str = "",
        feature_service: str | None = None,
        log_fields: Sequence[str] = (),
    ) -> dict[str, Any]:
        body = {
            "variants": variants,
            "policy": policy,
            "who": who,
            "why": why,
            "feature_service": feature_service,
            "log_fields": list(log_fields),
        }
        return self._switch_all("PUT", f"/v1/admin/deployments/{endpoint}", body, endpoint, who, undo=True)

    def rollback(self, endpoint: str, who: str = "", why: str = "") -> dict[str, Any]:
        return self._switch_all(
            "POST",
            f"/v1/admin/deployments/{endpoint}/rollback",
            {"who": who, "why": why},
            endpoint,
            who,
            undo=False,
        )

    def deployments(self) -> dict[str, Any]:
        return self._request("GET", "/v1/admin/deployments", admin=True)

    def stats(self, endpoint: str) -> dict[str, Any]:
        replicas = self._replicas(self.get_connection(self.model_server_conn_id))
        path = f"/v1/admin/deployments/{endpoint}/stats"
        return combine_stats([self._request("GET", path, admin=True, base=base) for base in replicas])

    async def astats(self, endpoint: str) -> dict[str, Any]:
        """``stats`` for triggers: the connection is read asynchronously in the triggerer."""
        import asyncio

        replicas = self._replicas(await self.aget_connection(self.model_server_conn_id))
        path = f"/v1/admin/deployments/{endpoint}/stats"
        return combine_stats(
            await asyncio.gather(*(self._arequest("GET", path, admin=True, base=base) for base in replicas))
        )

    def predict(
        self, endpoint: str, rows: Sequence[Mapping[str, Any]], key: str | None = None
    ) -> dict[str, Any]:
        return self._request("POST", f"/v1/models/{endpoint}/predict", json={"rows": list(rows), "key": key})


def combine_stats(answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One endpoint's statistics over its replicas: counts added, the highest percentiles kept.

    The replicas must serve the same policy; if they do not (a deployment between two reads), the
    caller gets an error rather than a mixture."""
    first = dict(answers[0])
    if len(answers) == 1:
        return first
    policies = {repr(a.get("policy")) for a in answers}
    if len(policies) > 1:
        raise ModelServerError(
            f"endpoint {first.get('endpoint')!r}: the replicas serve different policies "
            f"{sorted(policies)} (a deployment in progress?); ask again"
        )
    variants: dict[str, dict[str, Any]] = {}
    for answer in answers:
        for name, s in answer.get("variants", {}).items():
            total = variants.setdefault(
                name, {"requests": 0, "rows": 0, "errors": 0, "refused": 0, "p50_ms": None, "p99_ms": None}
            )
            for count in ("requests", "rows", "errors", "refused"):
                total[count] += s.get(count) or 0
            for percentile in ("p50_ms", "p99_ms"):
                if s.get(percentile) is not None:
                    total[percentile] = max(total[percentile] or 0.0, s[percentile])
    for total in variants.values():
        total["error_rate"] = total["errors"] / total["requests"] if total["requests"] else None
        total["refused_rate"] = total["refused"] / total["requests"] if total["requests"] else None
    return {**first, "variants": variants, "replicas": len(answers)}
