"""The model server's state: deployments, their loaded models, routing, statistics (no Airflow import).

An endpoint's live routing is one immutable ``Live`` object (policy + loaded models). A request
takes the reference once and finishes on it; a deployment builds the new ``Live`` completely
(models downloaded and loaded) before it replaces the reference, so a switch is atomic and a
deployment that fails leaves the old routing serving. Deployments are kept in
``<state_dir>/deployments.json`` (written atomically, with each endpoint's history for rollback),
so a restarted server serves what it served before.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from airflow_mlops.exceptions import (
    DeploymentError,
    EndpointUnavailable,
    NoEarlierDeployment,
    UnknownEndpoint,
    UnknownPrediction,
)

from ..artifacts import write_atomically  # noqa: TID252
from .batching import Batcher, BatchingConfig
from .models import RowError, ServedModel, check_log_fields, check_logged, check_reference
from .policies import Policy, PolicyError, Route, posteriors
from .requestlog import RequestLog
from .state import LocalState, ServingState, deployment_key

log = logging.getLogger(__name__)
HISTORY = 20  # earlier deployments kept per endpoint for rollback
#: What names a deployment in the shared state (a bandit's posteriors belong to it).
KEYED = ("variants", "policy", "feature_service", "log_fields")
#: What a deployment record is made of: a deployment equal in these to the current one changes nothing.
DEFINING = (*KEYED, "batching")


@dataclass(frozen=True)
class Live:
    """What one endpoint serves right now."""

    endpoint: str
    policy: Policy
    models: Mapping[str, ServedModel]
    record: Mapping[str, Any]
    #: The endpoint's dynamic batcher, one for its variants (``serving.batching``); None when it
    #: does not batch.
    batcher: Batcher | None = None

    @cached_property
    def key(self) -> str:
        """The deployment's name in the shared state (``serving.state.deployment_key``)."""
        return deployment_key(self.record, KEYED)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


@dataclass
class VariantStats:
    """Counts and recent latencies of one variant since its deployment (for canary checks)."""

    requests: int = 0
    rows: int = 0
    errors: int = 0
    #: Requests routed to the variant that its signature refused (422): a candidate whose inputs
    #: differ from the primary's refuses what the primary answers (``serving.canary`` counts them).
    refused: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def summary(self) -> dict[str, float | int | None]:
        latencies = np.asarray(self.latencies_ms)
        return {
            "requests": self.requests,
            "rows": self.rows,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "refused": self.refused,
            "refused_rate": self.refused / self.requests if self.requests else None,
            "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
        }


class ModelServer:
    """Deployments, routing and logging of one server process."""

    def __init__(
        self,
        state_dir: str | Path,
        tracking_uri: str | None,
        *,
        request_log: bool = True,
        metrics: Any = None,
        max_rows: int = 10_000,
        online_features: Any = None,
        request_log_dir: str | Path | None = None,
        trusted_modules: Sequence[str] = (),
        state: ServingState | None = None,
        batching: BatchingConfig | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        #: How endpoints batch unless their deployment says otherwise (``serving.batching``).
        self.batching = batching if batching is not None else BatchingConfig()
        #: Modules besides ``airflow_mlops`` a model may make the server import (``ServedModel.load``).
        self.trusted_modules = tuple(trusted_modules)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.tracking_uri, self.max_rows, self.metrics = tracking_uri, max_rows, metrics
        self.online_features = online_features  # serving.features.OnlineFeatures, for entity-key rows
        # Replicas of one endpoint share a request-log folder (``request_log_dir``), so monitoring sees all traffic.
        self.request_log = RequestLog(request_log_dir or self.state_dir / "requests") if request_log else None
        self.live: dict[str, Live] = {}
        #: Endpoints whose stored deployment could not be loaded at start-up, with the reason.
        self.failed: dict[str, str] = {}
        self.ready = False
        self._models: dict[tuple[str, str], ServedModel] = {}
        self._stats: dict[tuple[str, str], VariantStats] = {}
        #: Which variant made each prediction, and the bandits' posteriors (local, or shared in Redis).
        self.state: ServingState = state if state is not None else LocalState(self.state_dir)
        # Deploy and rollback read and write the store under it (re-entrant: rollback holds it
        # around its read of the history and the switch).
        self._deploy_lock = threading.RLock()
        self._stats_lock = threading.Lock()
        self._shadows = ThreadPoolExecutor(2, thread_name_prefix="shadow")
        #: Endpoints whose alias moved to a version that could not be served, with the reason.
        self.follow_errors: dict[str, str] = {}
        self._failed_follow: dict[str, str] = {}
        self._stop = threading.Event()

    # -- deployments -------------------------------------------------------------------------

    @property
    def store(self) -> Path:
        return self.state_dir / "deployments.json"

    def _read_store(self) -> dict[str, Any]:
        return json.loads(self.store.read_text()) if self.store.is_file() else {}

    def restore(self) -> None:
        """Load every endpoint's current deployment from the store (after a restart). An endpoint
        that cannot be loaded is kept in ``failed`` with the reason (``/readyz`` and the admin API
        report it, its requests get 503); the others serve."""
        for endpoint, entry in self._read_store().items():
            record = entry["current"]
            try:
                self.live[endpoint] = self._build(endpoint, record)
            except DeploymentError as err:
                self.failed[endpoint] = str(err)
                log.error("endpoint %s cannot be restored: %s", endpoint, err)
                continue
            log.info("restored endpoint %s: %s", endpoint, _describe(record))
        settle_heap()
        self.ready = True

    def deploy(
        self,
        endpoint: str,
        variants: Mapping[str, Mapping[str, str]],
        policy: Mapping[str, Any],
        who: str = "",
        why: str = "",
        feature_service: str | None = None,
        log_fields: Sequence[str] = (),
        batching: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Serve ``variants`` (variant -> ``{"name", "version" or "alias"}``) under ``policy``; with a
        ``feature_service``, rows give entity keys and the online store completes them;
        ``log_fields`` are the fields outside the signature the request log keeps per row;
        ``batching`` (``{"max_rows", "max_wait_ms"}``, ``serving.batching``) overrides the server's
        dynamic batching for this endpoint (``{"max_rows": 0}``: off)."""
        if not endpoint or not endpoint.replace("_", "").replace("-", "").isalnum():
            raise DeploymentError(f"endpoint name must be letters, digits, '-' or '_', got {endpoint!r}")
        if not variants:
            raise DeploymentError(f"deployment of {endpoint!r} names no variants")
        fields = check_log_fields(log_fields)
        pinned = {variant: self._pin(variant, spec) for variant, spec in variants.items()}
        record = {
            "variants": pinned,
            "policy": dict(policy),
            "deployed_at": datetime.now(UTC).isoformat(),
            "deployed_by": who,
            "reason": why,
            "registry": self.registry(),
        }
        if feature_service:
            record["feature_service"] = feature_service
        if fields:
            record["log_fields"] = fields
        if batching is not None:  # checked when the deployment is built; what it omits stays the server's
            record["batching"] = dict(batching)
        return self._switch(endpoint, record, keep_history=True)

    def rollback(self, endpoint: str, who: str = "", why: str = "") -> dict[str, Any]:
        """Serve the endpoint's previous deployment again. The history is read and rewritten under
        the deploy lock: concurrent rollbacks step back one deployment each, and one at the oldest
        raises ``NoEarlierDeployment``."""
        with self._deploy_lock:
            entry = self._read_store().get(endpoint)
            if entry is None:
                raise UnknownEndpoint(
                    f"no model is deployed under {endpoint!r}; deployed: {sorted(self.live)}"
                )
            if not entry["history"]:
                raise NoEarlierDeployment(f"endpoint {endpoint!r} has no earlier deployment to roll back to")
            previous = dict(entry["history"][-1])
            previous.update(
                deployed_at=datetime.now(UTC).isoformat(),
                deployed_by=who,
                reason=f"rollback: {why}" if why else "rollback",
            )
            return self._switch(endpoint, previous, keep_history=False)

    def deployments(self) -> dict[str, Any]:
        return {
            endpoint: {
                **entry["current"],
                "history": len(entry["history"]),
                **({"error": self.failed[endpoint]} if endpoint in self.failed else {}),
                **({"follow_error": self.follow_errors[endpoint]} if endpoint in self.follow_errors else {}),
            }
            for endpoint, entry in self._read_store().items()
        }

    def registry(self) -> str:
        """The registry the models come from, credentials removed (deployment records name it)."""
        from airflow_mlops.lineage import public_uri

        if self.tracking_uri:
            return public_uri(self.tracking_uri)
        import mlflow

        return public_uri(mlflow.get_tracking_uri())

    def _pin(self, variant: str, spec: Mapping[str, str]) -> dict[str, str]:
        """A variant's model as name and version (an alias is resolved now, so the record is fixed)."""
        if (
            not isinstance(spec, Mapping)
            or not spec.get("name")
            or bool(spec.get("version")) == bool(spec.get("alias"))
        ):
            raise DeploymentError(
                f"variant {variant!r} must give a model name and either a version or an alias, got {spec!r}"
            )
        check_reference(
            f"variant {variant!r}", spec["name"], spec.get("version") or None, spec.get("alias") or None
        )
        if spec.get("version"):
            return {"name": str(spec["name"]), "version": str(spec["version"])}
        from mlflow.exceptions import MlflowException

        from airflow_mlops.registry.versions import registry_client

        try:
            version = (
                registry_client(self.tracking_uri)
                .get_model_version_by_alias(spec["name"], spec["alias"])
                .version
            )
        except MlflowException as err:
            raise DeploymentError(
                f"variant {variant!r}: model {spec['name']!r} has no alias {spec['alias']!r} ({err.message})"
            ) from err
        return {"name": str(spec["name"]), "version": str(version), "alias": str(spec["alias"])}

    def _build(self, endpoint: str, record: Mapping[str, Any]) -> Live:
        try:
            policy = Policy.from_dict(record["policy"], list(record["variants"]))
        except PolicyError as err:
            raise DeploymentError(f"endpoint {endpoint!r}: {err}") from err
        if record.get("feature_service"):
            if self.online_features is None:
                raise DeploymentError(
                    f"endpoint {endpoint!r} names feature service {record['feature_service']!r}, "
                    "but the server was started without a feature repository (--feature-repo)"
                )
            try:
                self.online_features.service(record["feature_service"])
            except ValueError as err:
                raise DeploymentError(f"endpoint {endpoint!r}: {err}") from err
        models = {}
        for variant, spec in record["variants"].items():
            key = (spec["name"], spec["version"])
            if key not in self._models:
                try:
                    self._models[key] = ServedModel.load(
                        spec["name"],
                        spec["version"],
                        self.tracking_uri,
                        self.state_dir / "models",
                        self.trusted_modules,
                    )
                except Exception as err:
                    raise DeploymentError(
                        f"variant {variant!r}: cannot load {spec['name']} version {spec['version']}: {err}"
                    ) from err
            models[variant] = self._models[key]
        try:
            batching = BatchingConfig.from_dict(record.get("batching"), self.batching)
        except PolicyError as err:
            raise DeploymentError(f"endpoint {endpoint!r}: {err}") from err
        batcher = None
        if batching.max_rows > 0 and policy.kind not in ("chain", "ensemble"):  # those score per request
            batcher = Batcher({v: m.score_rows for v, m in models.items()}, batching, endpoint)
        return Live(endpoint, policy, models, dict(record), batcher)

    def _switch(self, endpoint: str, record: dict[str, Any], *, keep_history: bool) -> dict[str, Any]:
        with self._deploy_lock:
            store = self._read_store()
            entry = store.get(endpoint, {"current": None, "history": []})
            current = entry["current"]
            if (
                keep_history
                and current is not None
                and [current.get(k) for k in DEFINING] == [record.get(k) for k in DEFINING]
            ):
                return dict(current)  # already served as asked: a retried deployment changes nothing
            live = self._build(endpoint, record)  # fails before anything changes
            if keep_history and entry["current"] is not None:
                entry["history"] = [*entry["history"], entry["current"]][-HISTORY:]
            elif not keep_history:
                entry["history"] = entry["history"][:-1]
            entry["current"] = record
            store[endpoint] = entry
            try:
                write_atomically(self.store, json.dumps(store, indent=2, sort_keys=True))
            except BaseException:
                live.close()  # never switched to: its batcher threads go with it
                raise
            with self._stats_lock:
                for key in [key for key in self._stats if key[0] == endpoint]:
                    del self._stats[key]
            previous = self.live.get(endpoint)
            self.live[endpoint] = live  # the switch: one reference assignment
            self.failed.pop(endpoint, None)
            if previous is not None:
                previous.close()  # its queued requests are scored first
        settle_heap()
        log.info("endpoint %s now serves %s", endpoint, _describe(record))
        return record

    # -- requests ----------------------------------------------------------------------------

    def serving(self, endpoint: str) -> Live:
        """What ``endpoint`` serves now; ``UnknownEndpoint`` names the deployed ones otherwise."""
        live = self.live.get(endpoint)
        if live is None and endpoint in self.failed:
            raise EndpointUnavailable(f"endpoint {endpoint!r} could not be loaded: {self.failed[endpoint]}")
        if live is None:
            raise UnknownEndpoint(f"no model is deployed under {endpoint!r}; deployed: {sorted(self.live)}")
        return live

    def signatures(self, endpoint: str) -> dict[str, Any]:
        """What each variant of ``endpoint`` takes: ``{variant: ServedModel.describe()}``."""
        return {variant: model.describe() for variant, model in self.serving(endpoint).models.items()}

    def predict(
        self, endpoint: str, rows: Sequence[Mapping[str, Any]], key: str | None = None
    ) -> dict[str, Any]:
        """Route, score and log one request; raises ``UnknownEndpoint`` or ``RowError``."""
        live = self.serving(endpoint)
        if not 1 <= len(rows) <= self.max_rows:
            raise RowError(["body", "rows"], f"must hold 1 to {self.max_rows} rows, got {len(rows)}")
        check_logged(rows, live.record.get("log_fields", ()))
        if live.record.get("feature_service"):
            rows = self.online_features.complete(live.record["feature_service"], rows)
        arms = (
            self.state.arms(endpoint, live.key, live.policy.variants)
            if live.policy.kind == "bandit"
            else None
        )
        route = live.policy.route(key, arms=arms)
        started = time.perf_counter()
        try:
            probabilities, steps = self._score(live, route, rows)
        except RowError:  # the routed variant's signature refused a row: counted against it
            self._observe(endpoint, route.serve[0], "primary", len(rows), 0.0, refused=True)
            raise
        except Exception:
            self._observe(
                endpoint, route.serve[0], "primary", len(rows), time.perf_counter() - started, error=True
            )
            raise
        latency = time.perf_counter() - started
        variant = route.serve[0] if route.combine == "first" else route.combine
        ids = [uuid.uuid4().hex for _ in rows]
        self._observe(endpoint, variant, "primary", len(rows), latency)
        self.state.remember(ids, endpoint, variant, live.key)
        model = live.models[route.serve[-1]]
        self._log(live, variant, "primary", model, rows, ids, probabilities, latency, key)
        for shadow in route.shadows:
            self._shadows.submit(self._shadow, live, shadow, rows, ids, key)
        answer: dict[str, Any] = {
            "endpoint": endpoint,
            "variant": variant,
            "model": model.name,
            "version": model.version,
            "predictions": [
                {"prediction_id": i, **answer}
                for i, answer in zip(ids, model.answers(probabilities), strict=True)
            ],
        }
        if steps:
            answer["steps"] = steps
        return answer

    def _score(
        self, live: Live, route: Route, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if route.combine == "first":
            model = live.models[route.serve[0]]
            if live.batcher is None:
                return model.predict(model.frame(rows)), {}
            model.check(rows)  # a bad row is this request's 422, before it joins a batch
            return live.batcher(route.serve[0], rows), {}
        steps: dict[str, Any] = {}
        if route.combine == "chain":
            if any(live.models[v].task == "multiclass" for v in route.serve):
                raise PolicyError(
                    f"endpoint {live.endpoint}: a chain passes one number per row on; a multiclass model has several"
                )
            current = [dict(row) for row in rows]
            for variant in route.serve:
                model = live.models[variant]
                probabilities = model.predict(model.frame(current))
                steps[variant] = [float(p) for p in probabilities]
                for row, p in zip(current, probabilities, strict=True):
                    row[live.policy.output_column] = float(p)
            return probabilities, steps
        total: Any = 0.0
        for variant in route.serve:
            model = live.models[variant]
            probabilities = model.predict(model.frame(rows))
            steps[variant] = probabilities.tolist()
            total = total + live.policy.weights[variant] * probabilities.astype("float64")
        return total, steps

    def _shadow(
        self, live: Live, variant: str, rows: Sequence[Mapping[str, Any]], ids: Sequence[str], key: str | None
    ) -> None:
        model = live.models[variant]
        started = time.perf_counter()
        try:
            probabilities = model.predict(model.frame(rows))
        except Exception:
            log.exception("shadow variant %s of %s failed", variant, live.endpoint)
            self._observe(
                live.endpoint, variant, "shadow", len(rows), time.perf_counter() - started, error=True
            )
            return
        latency = time.perf_counter() - started
        self._observe(live.endpoint, variant, "shadow", len(rows), latency)
        self._log(live, variant, "shadow", model, rows, ids, probabilities, latency, key)

    def feedback(self, prediction_id: str, reward: float) -> dict[str, Any]:
        """A reward for an earlier prediction (made by this replica or, with a shared state, any
        other): the bandit of the deployment that made it learns from it, and it is logged."""
        found = self.state.lookup(prediction_id)
        if found is None:
            raise UnknownPrediction(
                f"prediction {prediction_id!r} is unknown (expired, older than this server's memory "
                "of predictions, or made by a replica that shares no state with this one)"
            )
        endpoint, variant, deployment = found
        live = self.serving(endpoint)
        if live.policy.kind == "bandit":
            live.policy.check_reward(variant, reward)
            self.state.reward(endpoint, deployment, variant, reward)
        elif not 0.0 <= reward <= 1.0:
            raise PolicyError(f"reward must be within [0, 1], got {reward!r}")
        if self.request_log is not None:
            self.request_log.append(
                "feedback",
                {
                    "prediction_id": prediction_id,
                    "at": datetime.now(UTC),
                    "endpoint": endpoint,
                    "variant": variant,
                    "reward": float(reward),
                },
            )
        return {
            "prediction_id": prediction_id,
            "endpoint": endpoint,
            "variant": variant,
            "arms": self._arms(live),
        }

    def _arms(self, live: Live) -> dict[str, dict[str, float]] | None:
        if live.policy.kind != "bandit":
            return None
        return posteriors(self.state.arms(live.endpoint, live.key, live.policy.variants))

    def _observe(
        self,
        endpoint: str,
        variant: str,
        role: str,
        rows: int,
        seconds: float,
        *,
        error: bool = False,
        refused: bool = False,
    ) -> None:
        with self._stats_lock:
            stats = self._stats.setdefault(
                (endpoint, f"{variant}:shadow" if role == "shadow" else variant), VariantStats()
            )
            stats.requests += 1
            stats.rows += rows
            stats.errors += int(error)
            stats.refused += int(refused)
            if not refused:  # a refusal's latency is the check's, not the model's
                stats.latencies_ms.append(seconds * 1000.0)
        if refused:
            return
        if self.metrics is not None:
            self.metrics.observe(endpoint, variant, role, rows, seconds, error)

    def _log(
        self,
        live: Live,
        variant: str,
        role: str,
        model: ServedModel,
        rows: Sequence[Mapping[str, Any]],
        ids: Sequence[str],
        probabilities: np.ndarray,
        seconds: float,
        key: str | None,
    ) -> None:
        if self.request_log is None:
            return
        from airflow_mlops.models.package import logged_output, logged_value

        at = datetime.now(UTC)
        for prediction_id, row, p in zip(ids, rows, probabilities, strict=True):
            self.request_log.append(
                "predictions",
                {
                    "prediction_id": prediction_id,
                    "at": at,
                    "endpoint": live.endpoint,
                    "variant": variant,
                    "model": model.name,
                    "version": model.version,
                    "role": role,
                    "request_key": key,
                    "features": json.dumps(model.logged(row, live.record.get("log_fields", ())), default=str),
                    "probability": logged_value(model.task, p),
                    "output": logged_output(model.task, p, model.scorer.classes),
                    "latency_ms": seconds * 1000.0,
                },
            )

    def stats(self, endpoint: str) -> dict[str, Any]:
        """Requests, errors and latency percentiles per variant since the endpoint's last deployment;
        ``batching``: each batching variant's requests and model calls (their ratio is the mean batch)."""
        live = self.serving(endpoint)
        with self._stats_lock:
            variants = {
                variant: stats.summary() for (name, variant), stats in self._stats.items() if name == endpoint
            }
        return {
            "endpoint": endpoint,
            "policy": live.policy.to_dict(),
            "variants": variants,
            "deployed_at": live.record.get("deployed_at"),
            "arms": self._arms(live),
            "batching": self._batching(live.batcher),
        }

    @staticmethod
    def _batching(batcher: Batcher | None) -> dict[str, dict[str, int]]:
        if batcher is None:
            return {}
        return {
            variant: {
                "requests": batcher.requests[variant],
                "model_calls": batcher.model_calls[variant],
                "max_rows": batcher.config.max_rows,
            }
            for variant in batcher.scorers
        }

    # -- following the registry --------------------------------------------------------------

    def follow_aliases(self) -> list[str]:
        """One look at the registry: every variant deployed by alias (``{"name", "alias"}``) whose
        alias now names another version is switched to it, as a new deployment of its endpoint
        (by ``registry``, with the move as the reason; the previous one kept for rollback). A
        promotion or rollback in the Airflow UI, the CLI or MLflow's own UI moves the alias; this
        moves the traffic. Returns the endpoints switched. An unreachable registry or a version
        that cannot be loaded leaves the endpoint serving what it served, and is reported in
        ``follow_errors`` (the admin listing shows it) until the alias moves again."""
        from airflow_mlops.registry.versions import registry_client

        switched = []
        for endpoint, live in list(self.live.items()):
            aliased = {v: spec for v, spec in live.record["variants"].items() if spec.get("alias")}
            if not aliased:
                continue
            try:
                client = registry_client(self.tracking_uri)
                now = {
                    v: str(client.get_model_version_by_alias(spec["name"], spec["alias"]).version)
                    for v, spec in aliased.items()
                }
            except Exception as err:  # the registry down: keep serving; say so
                self.follow_errors[endpoint] = f"the registry could not be asked: {err}"
                continue
            moved = {v: version for v, version in now.items() if version != aliased[v]["version"]}
            if not moved:
                self.follow_errors.pop(endpoint, None)
                continue
            reason = "; ".join(
                f"alias {aliased[v]['alias']} of {aliased[v]['name']} moved from v{aliased[v]['version']} to v{version}"
                for v, version in moved.items()
            )
            if self._failed_follow.get(endpoint) == reason:
                continue  # tried already: not again until the alias moves on
            record = {
                **live.record,
                "variants": {
                    v: {**spec, "version": moved.get(v, spec["version"])}
                    for v, spec in live.record["variants"].items()
                },
                "deployed_at": datetime.now(UTC).isoformat(),
                "deployed_by": "registry",
                "reason": reason,
            }
            with self._deploy_lock:
                if self.live.get(endpoint) is not live:
                    continue  # deployed anew meanwhile: the next look decides
                try:
                    self._switch(endpoint, record, keep_history=True)
                except DeploymentError as err:
                    self._failed_follow[endpoint] = reason
                    self.follow_errors[endpoint] = f"{reason}, but it cannot be served: {err}"
                    log.error("endpoint %s: %s", endpoint, self.follow_errors[endpoint])
                    continue
            self._failed_follow.pop(endpoint, None)
            self.follow_errors.pop(endpoint, None)
            switched.append(endpoint)
        return switched

    def follow(self, every: float) -> None:
        """Call :meth:`follow_aliases` every ``every`` seconds in a daemon thread until :meth:`close`."""

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.follow_aliases()
                except Exception:  # a bug here must not stop the loop (or the server)
                    log.exception("following the registry's aliases failed")

        threading.Thread(target=loop, name="follow-aliases", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        for live in list(self.live.values()):
            live.close()
        self._shadows.shutdown(wait=True)
        self.state.close()
        if self.request_log is not None:
            self.request_log.close()


def _describe(record: Mapping[str, Any]) -> str:
    variants = ", ".join(f"{v}={s['name']} v{s['version']}" for v, s in record["variants"].items())
    return f"{record['policy'].get('kind')} over {variants}"


def settle_heap() -> None:
    """Collect, then exempt what is alive now (the models just loaded, the server's own objects)
    from Python's cyclic garbage collector (``gc.freeze``). Under load the collector's full passes
    otherwise walk every loaded model's objects again and again, holding the GIL that the event
    loop and the batcher need (measured: about a seventh of the GIL's time with a canary of two
    models at 16 clients). Unfrozen first, so what an earlier deployment left behind is collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
