"""What the model server remembers between requests: which variant answered each prediction, and
what every bandit learnt from the feedback. No Airflow import.

Two stores with one interface:

- :class:`LocalState` (the default): prediction ids in this process's memory (the most recent
  200,000), bandit posteriors in ``<state_dir>/bandits.json``, written after each reward, so a
  restart keeps what the bandit learnt. Feedback must reach the replica that made the prediction.
- :class:`RedisState` (``airflow-mlops serve --redis-url``): both in Redis, shared by every
  replica that names the same server and prefix: feedback posted to any replica finds its
  prediction and moves the one posterior every replica routes with, and a restart forgets nothing.

A bandit's posteriors belong to one deployment of its endpoint, named by :func:`deployment_key`
(a hash of what the deployment serves and how, the same on every replica): a new deployment starts
from Beta(1, 1), a retried one keeps learning.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

#: How long Redis keeps a prediction's variant for its feedback (seconds): a week.
PREDICTION_TTL_S = 7 * 24 * 3600
#: Predictions remembered in memory by :class:`LocalState`.
RECENT_LIMIT = 200_000


def deployment_key(record: Mapping[str, Any], fields: Sequence[str]) -> str:
    """A short hash of a deployment record's ``fields`` (its variants, policy, ...): the same for
    the same deployment on every replica, whatever each replica's ``deployed_at``."""
    defining = {name: record.get(name) for name in fields}
    return hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ServingState(Protocol):
    """The server's memory of predictions and bandit posteriors (``LocalState`` or ``RedisState``)."""

    def remember(self, ids: Sequence[str], endpoint: str, variant: str, deployment: str) -> None:
        """Record which endpoint, variant and deployment answered each prediction id."""

    def lookup(self, prediction_id: str) -> tuple[str, str, str] | None:
        """``(endpoint, variant, deployment)`` of an earlier prediction, or None when unknown."""

    def arms(self, endpoint: str, deployment: str, variants: Sequence[str]) -> dict[str, tuple[float, float]]:
        """Each variant's Beta posterior ``(alpha, beta)``, Beta(1, 1) where nothing was learnt."""

    def reward(self, endpoint: str, deployment: str, variant: str, reward: float) -> None:
        """Add ``reward`` (in [0, 1]) to the variant's posterior: alpha += reward, beta += 1 - reward."""

    def close(self) -> None:
        """Release connections."""


class LocalState:
    """Prediction ids in memory; bandit posteriors in ``<folder>/bandits.json`` (see the module)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / "bandits.json"
        self._recent: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._learnt: dict[str, dict[str, list[float]]] = (
            json.loads(self.path.read_text()) if self.path.is_file() else {}
        )

    def remember(self, ids: Sequence[str], endpoint: str, variant: str, deployment: str) -> None:
        with self._lock:
            for prediction_id in ids:
                self._recent[prediction_id] = (endpoint, variant, deployment)
            while len(self._recent) > RECENT_LIMIT:
                self._recent.popitem(last=False)

    def lookup(self, prediction_id: str) -> tuple[str, str, str] | None:
        with self._lock:
            return self._recent.get(prediction_id)

    def arms(self, endpoint: str, deployment: str, variants: Sequence[str]) -> dict[str, tuple[float, float]]:
        with self._lock:
            learnt = self._learnt.get(f"{endpoint}/{deployment}", {})
            return {
                v: (1.0 + learnt.get(v, [0.0, 0.0])[0], 1.0 + learnt.get(v, [0.0, 0.0])[1]) for v in variants
            }

    def reward(self, endpoint: str, deployment: str, variant: str, reward: float) -> None:
        from airflow_mlops.artifacts import write_atomically

        with self._lock:
            arm = self._learnt.setdefault(f"{endpoint}/{deployment}", {}).setdefault(variant, [0.0, 0.0])
            arm[0] += reward
            arm[1] += 1.0 - reward
            write_atomically(self.path, json.dumps(self._learnt, sort_keys=True))

    def close(self) -> None:
        return None


class RedisState:
    """Prediction ids and bandit posteriors in Redis (see the module). Keys: ``<prefix>:prediction:<id>``
    (endpoint, variant and deployment, expiring after ``ttl_s``) and ``<prefix>:bandit:<endpoint>:<deployment>``
    (a hash of each arm's learnt ``<variant>:alpha`` and ``<variant>:beta``, added to atomically)."""

    def __init__(self, url: str, prefix: str = "mlops", ttl_s: int = PREDICTION_TTL_S) -> None:
        import redis

        self.url, self.prefix, self.ttl_s = url, prefix, ttl_s
        # The synchronous client: its calls return values (redis-py types them as maybe awaitable).
        self.client = redis.Redis.from_url(url if "://" in url else f"redis://{url}", decode_responses=True)
        self.client.ping()  # a wrong address fails the server's start, not its first feedback

    def remember(self, ids: Sequence[str], endpoint: str, variant: str, deployment: str) -> None:
        value = json.dumps([endpoint, variant, deployment])
        with self.client.pipeline(transaction=False) as pipe:
            for prediction_id in ids:
                pipe.set(f"{self.prefix}:prediction:{prediction_id}", value, ex=self.ttl_s)
            pipe.execute()

    def lookup(self, prediction_id: str) -> tuple[str, str, str] | None:
        value = cast(str | None, self.client.get(f"{self.prefix}:prediction:{prediction_id}"))
        if value is None:
            return None
        endpoint, variant, deployment = json.loads(value)
        return str(endpoint), str(variant), str(deployment)

    def arms(self, endpoint: str, deployment: str, variants: Sequence[str]) -> dict[str, tuple[float, float]]:
        learnt = cast(dict[str, str], self.client.hgetall(f"{self.prefix}:bandit:{endpoint}:{deployment}"))
        return {
            v: (1.0 + float(learnt.get(f"{v}:alpha", 0.0)), 1.0 + float(learnt.get(f"{v}:beta", 0.0)))
            for v in variants
        }

    def reward(self, endpoint: str, deployment: str, variant: str, reward: float) -> None:
        key = f"{self.prefix}:bandit:{endpoint}:{deployment}"
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hincrbyfloat(key, f"{variant}:alpha", reward)
            pipe.hincrbyfloat(key, f"{variant}:beta", 1.0 - reward)
            pipe.execute()

    def close(self) -> None:
        self.client.close()
