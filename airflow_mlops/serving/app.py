"""The model server's HTTP face: FastAPI routes over a ``ModelServer`` (no Airflow import).

Public routes:
    POST /v1/models/{endpoint}/predict   {"rows": [{feature: value, ...}, ...], "key": "optional sticky key"}
    POST /v1/models/{endpoint}/explain   {"row": {...}, "steps": 32} -> Captum attributions (explain.py)
    POST /v1/feedback                    {"prediction_id": "...", "reward": 0..1}
    GET  /healthz  (the process is up)   GET /readyz (deployments loaded; "failed": endpoints that
    could not be, with the reason)     GET /metrics (Prometheus)
Admin routes (``Authorization: Bearer <token>``):
    GET  /v1/admin/deployments                      PUT /v1/admin/deployments/{endpoint}
    POST /v1/admin/deployments/{endpoint}/rollback  GET /v1/admin/deployments/{endpoint}/stats

A malformed row gets 422 with the field's location and the reason (NaN, Infinity, numbers beyond
the column type's range and over-long strings included; a long value is echoed cut short), a body
over ``max_body_bytes`` 413, an unknown endpoint 404, a request to an admin route without the right
token 401/403 (and every admin route answers 403 when the server was started without a token).
None of these counts as an error of the model.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from .models import RowError, shown
from .policies import PolicyError
from .server import (
    DeploymentError,
    EndpointUnavailable,
    ModelServer,
    NoEarlierDeployment,
    UnknownEndpoint,
    UnknownPrediction,
)


class PredictRequest(BaseModel):
    rows: list[Any] = Field(min_length=1, description="rows of raw features, one object per row")
    key: str | None = Field(
        default=None, max_length=256, description="sticky routing key (A/B): the same key, the same variant"
    )


class ExplainRequest(BaseModel):
    row: dict[str, Any]
    steps: int = Field(default=32, ge=2, le=512)


class FeedbackRequest(BaseModel):
    prediction_id: str = Field(max_length=64)
    reward: float = Field(allow_inf_nan=False)


class DeployRequest(BaseModel):
    variants: dict[str, dict[str, str]] = Field(
        description='variant -> {"name": model, "version": "3"} or {"name": model, "alias": "champion"}'
    )
    policy: dict[str, Any] = Field(default_factory=lambda: {"kind": "single"})
    feature_service: str | None = Field(
        default=None, description="rows give entity keys; Feast completes them"
    )
    log_fields: list[str] = Field(
        default_factory=list,
        description="fields outside the signature the request log keeps per row (ids such as "
        "flight_id that a performance monitor joins labels by); nothing else a row holds is logged",
    )
    batching: dict[str, Any] | None = Field(
        default=None,
        description='dynamic batching for this endpoint, {"max_rows": 256, "max_wait_ms": 0} '
        '({"max_rows": 0}: off); default: the server\'s --batch-max-rows and --batch-max-wait-ms',
    )
    who: str = ""
    why: str = ""


class RollbackRequest(BaseModel):
    who: str = ""
    why: str = ""


#: The largest request body the server reads (a 10,000-row request of 40 features is about 6 MB).
MAX_BODY_BYTES = 16 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: a body whose ``Content-Length`` or streamed size passes ``limit`` bytes is
    refused with 413 before any route parses it (nothing of it is logged). The body is read here,
    up to the limit, and handed to the app whole (the routes read it whole anyway)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await self.too_large(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:  # a chunked body that never said its length
                await self.too_large(scope, receive, send)
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def too_large(self, scope: Any, receive: Any, send: Any) -> None:
        detail = f"the request body is over the limit of {self.limit} bytes"
        await JSONResponse({"detail": detail}, 413)(scope, receive, send)


class Metrics:
    """Prometheus metrics of one server (its own registry, so tests can run several servers)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        labels = ("endpoint", "variant", "role")
        self.latency = Histogram(
            "mlops_request_latency_seconds",
            "Scoring latency of a request",
            labels,
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.requests = Counter("mlops_requests", "Requests scored", labels, registry=self.registry)
        self.rows = Counter("mlops_predictions", "Rows scored", labels, registry=self.registry)
        self.errors = Counter(
            "mlops_errors", "Requests that failed in the model", labels, registry=self.registry
        )

    def observe(self, endpoint: str, variant: str, role: str, rows: int, seconds: float, error: bool) -> None:
        self.requests.labels(endpoint, variant, role).inc()
        if error:
            self.errors.labels(endpoint, variant, role).inc()
            return
        self.rows.labels(endpoint, variant, role).inc(rows)
        self.latency.labels(endpoint, variant, role).observe(seconds)


def create_app(  # noqa: C901 - routes are closures; each is short
    server: ModelServer, token: str | None, max_body_bytes: int = MAX_BODY_BYTES, follow_every: float = 0
) -> FastAPI:
    """The ASGI app; deployments are restored from the server's store at start-up, and with
    ``follow_every`` > 0 variants deployed by alias follow the registry's alias every that many
    seconds (``ModelServer.follow_aliases``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        server.restore()
        if follow_every > 0:
            server.follow(follow_every)
        yield
        server.close()

    app = FastAPI(title="airflow-mlops model server", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    def admin(authorization: str | None = Header(default=None)) -> None:
        if not token:
            raise HTTPException(403, "the admin API is disabled: the server was started without a token")
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(
                401,
                "admin routes need 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode()):
            raise HTTPException(403, "the admin token is wrong")

    @app.exception_handler(RowError)
    async def row_error(request: Request, err: RowError) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"loc": err.loc, "msg": err.msg, "input": shown(err.value)}]}, status_code=422
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "input": shown(e.get("input"))}
            for e in err.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(UnknownEndpoint)
    @app.exception_handler(UnknownPrediction)
    async def unknown(request: Request, err: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(err.args[0])}, status_code=404)

    @app.exception_handler(EndpointUnavailable)
    async def unavailable(request: Request, err: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(err.args[0])}, status_code=503)

    @app.exception_handler(NoEarlierDeployment)
    async def conflict(request: Request, err: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=409)

    @app.exception_handler(DeploymentError)
    @app.exception_handler(PolicyError)
    async def refused(request: Request, err: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        body = {"ready": server.ready, "endpoints": sorted(server.live), "failed": dict(server.failed)}
        return JSONResponse(body, status_code=200 if server.ready else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if server.metrics is None:
            return Response("", media_type=CONTENT_TYPE_LATEST)
        dropped = server.request_log.dropped if server.request_log is not None else 0
        text = generate_latest(server.metrics.registry).decode()
        text += (
            "# HELP mlops_request_log_dropped Records the request log could not keep\n"
            f"# TYPE mlops_request_log_dropped gauge\nmlops_request_log_dropped {dropped}\n"
        )
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/models/{endpoint}/predict", response_model=None)
    def predict(endpoint: str, body: PredictRequest) -> JSONResponse:
        # Rendered here, in the request's worker thread: FastAPI would otherwise walk the answer
        # with jsonable_encoder on the event loop (measured: 148 -> 191 req/s at 64 clients).
        return JSONResponse(server.predict(endpoint, body.rows, body.key))

    @app.post("/v1/models/{endpoint}/explain")
    def explain(endpoint: str, body: ExplainRequest) -> dict[str, Any]:
        from .explain import explain_row

        return explain_row(server, endpoint, body.row, body.steps)

    @app.post("/v1/feedback")
    def feedback(body: FeedbackRequest) -> dict[str, Any]:
        return server.feedback(body.prediction_id, body.reward)

    @app.get("/v1/admin/deployments", dependencies=[Depends(admin)])
    def deployments() -> dict[str, Any]:
        return server.deployments()

    @app.put("/v1/admin/deployments/{endpoint}", dependencies=[Depends(admin)])
    def deploy(endpoint: str, body: DeployRequest) -> dict[str, Any]:
        return server.deploy(
            endpoint,
            body.variants,
            body.policy,
            body.who,
            body.why,
            body.feature_service,
            body.log_fields,
            body.batching,
        )

    @app.post("/v1/admin/deployments/{endpoint}/rollback", dependencies=[Depends(admin)])
    def rollback(endpoint: str, body: RollbackRequest) -> dict[str, Any]:
        return server.rollback(endpoint, body.who, body.why)

    @app.get("/v1/admin/deployments/{endpoint}/signatures", dependencies=[Depends(admin)])
    def signatures(endpoint: str) -> dict[str, Any]:
        """Each variant's version, task, input columns and input example (admin only: the
        example holds rows of the training data)."""
        return server.signatures(endpoint)

    @app.get("/v1/admin/deployments/{endpoint}/stats", dependencies=[Depends(admin)])
    def stats(endpoint: str) -> dict[str, Any]:
        return server.stats(endpoint)

    return app


def serve(
    state_dir: str,
    tracking_uri: str | None,
    host: str,
    port: int,
    token: str | None,
    request_log: bool = True,
    torch_threads: int = 1,
    feature_repo: str | None = None,
    feature_config: str = "feature_store.yaml",
    request_log_dir: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    keep_alive_s: int = 75,
    trusted_modules: Sequence[str] = (),
    follow_every: float = 30,
    redis_url: str | None = None,
    batching: Mapping[str, Any] | None = None,
) -> None:
    """Run the server in this process (``airflow-mlops serve``); ``batching`` is every endpoint's
    default dynamic batching (``serving.batching.BatchingConfig``); ``trusted_modules`` as
    :class:`~airflow_mlops.serving.server.ModelServer` takes them, ``follow_every`` as
    :func:`create_app`; with ``redis_url`` the prediction ids and bandit posteriors are shared in
    Redis (``serving.state.RedisState``) by every replica started with the same URL;
    ``keep_alive_s`` is how long an idle client connection stays open (uvicorn's keep-alive
    timeout: longer than a load balancer's idle timeout, so the balancer closes first).

    Requests are checked in FastAPI's thread pool (off the event loop) and scored by their
    endpoint's batcher thread (or, without batching, in the request's thread), on ``torch_threads``
    intra-op threads: online requests are small, so more torch threads per call only oversubscribe
    the cores (p99 latency suffers first).
    """
    import torch
    import uvicorn

    torch.set_num_threads(torch_threads)

    from .batching import BatchingConfig
    from .state import RedisState

    online = None
    if feature_repo:
        from .features import OnlineFeatures

        online = OnlineFeatures(feature_repo, feature_config)
    server = ModelServer(
        state_dir,
        tracking_uri,
        request_log=request_log,
        metrics=Metrics(),
        online_features=online,
        request_log_dir=request_log_dir,
        trusted_modules=trusted_modules,
        state=RedisState(redis_url) if redis_url else None,
        batching=BatchingConfig.from_dict(batching, BatchingConfig()),
    )
    uvicorn.run(
        create_app(server, token, max_body_bytes, follow_every),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_keep_alive=keep_alive_s,
    )
