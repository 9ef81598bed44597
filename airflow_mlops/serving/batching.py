"""Dynamic batching: an endpoint's requests scored together, one thread per endpoint (no Airflow import).

A request's thread checks its rows against the signature (a bad row is still that request's 422),
hands them with its variant to the endpoint's :class:`Batcher` and waits. The batcher's own thread
takes the first waiting request, then every request that is already waiting or arrives within
``max_wait_ms``, up to ``max_rows`` rows, and scores them variant by variant: one DataFrame and one
model call per variant, each request getting its own slice of its variant's predictions. With
``max_wait_ms=0`` (the default) nothing waits for company: under light load every request is scored
alone, as soon as the model is free; under load the requests that queued while the model was busy
form the next batch, so the per-call costs of pandas and torch (about a millisecond here) are paid
once per batch instead of once per request.

One thread for all of an endpoint's variants, not one per variant: a canary's two variants would
otherwise score at the same time on the same cores (each slower for the other, and the candidate's
small calls as dear as the primary's large ones); in turn, each variant's call gets the cores. The
variants take turns going first, batch after batch: in a fixed order every request of the second
would also wait for the first's call, and a canary's latency check would see a candidate as
slower than it is (the first version did, on the scale-out stack: p99 29 ms against 15 ms for two
copies of one model).

If scoring a batch raises, its requests are scored one by one, so one request's failure never
becomes another's.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airflow_mlops.exceptions import PolicyError

Rows = Sequence[Mapping[str, Any]]
Score = Callable[[Rows], np.ndarray]


@dataclass(frozen=True)
class BatchingConfig:
    """How one endpoint batches: up to ``max_rows`` rows per model call (0: no batching, each
    request scored in its own thread), waiting up to ``max_wait_ms`` for more requests."""

    max_rows: int = 256
    max_wait_ms: float = 0.0

    @classmethod
    def from_dict(cls, config: Mapping[str, Any] | None, default: BatchingConfig) -> BatchingConfig:
        """A deployment's ``batching`` (None: the server's default); bad values name the field."""
        if config is None:
            return default
        unknown = sorted(set(config) - {"max_rows", "max_wait_ms"})
        if unknown:
            raise PolicyError(f"batching: unknown fields {unknown} (fields: max_rows, max_wait_ms)")
        max_rows = config.get("max_rows", default.max_rows)
        max_wait_ms = config.get("max_wait_ms", default.max_wait_ms)
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
            raise PolicyError(f"batching: max_rows must be a whole number >= 0 (0: off), got {max_rows!r}")
        if (
            isinstance(max_wait_ms, bool)
            or not isinstance(max_wait_ms, int | float)
            or not 0 <= max_wait_ms <= 1000
        ):
            raise PolicyError(f"batching: max_wait_ms must be a number within [0, 1000], got {max_wait_ms!r}")
        return cls(max_rows, float(max_wait_ms))


@dataclass
class _Request:
    variant: str
    rows: Rows
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Batcher:
    """Scores an endpoint's requests in batches, each variant through its own ``scorers[variant]``
    (rows -> predictions, one per row); see the module docstring. ``batcher(variant, rows)`` blocks
    the calling thread until its rows are scored."""

    def __init__(self, scorers: Mapping[str, Score], config: BatchingConfig, name: str = "") -> None:
        if config.max_rows < 1:
            raise PolicyError(f"batching: a Batcher needs max_rows >= 1, got {config.max_rows}")
        self.scorers, self.config = dict(scorers), config
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._held: _Request | None = None  # a request that did not fit the last batch
        self._closed = False
        #: Requests and model calls so far per variant (``requests / model_calls``: the mean batch).
        self.requests: Counter[str] = Counter()
        self.model_calls: Counter[str] = Counter()
        self._turn = 0  # which variant goes first in the next batch (they take turns)
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def __call__(self, variant: str, rows: Rows) -> np.ndarray:
        if variant not in self.scorers:
            raise PolicyError(f"batcher: no variant {variant!r} (variants: {sorted(self.scorers)})")
        if self._closed:  # a request that took the endpoint before a redeployment closed this one
            return np.asarray(self.scorers[variant](rows))
        request = _Request(variant, rows)
        self._queue.put(request)
        while not request.done.wait(1.0):
            if not self._thread.is_alive():  # queued behind the close: scored here instead
                return np.asarray(self.scorers[variant](rows))
        if request.error is not None:
            raise request.error
        return np.asarray(request.result)

    def close(self) -> None:
        """Score what is queued, then stop the thread; a later call scores in its own thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _next(self, timeout: float | None) -> _Request | None:
        if self._held is not None:
            held, self._held = self._held, None
            return held
        if timeout is not None and timeout <= 0:
            return self._queue.get_nowait()
        return self._queue.get(timeout=timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping or self._held is not None:
            first = self._next(None) if not stopping else self._next(0)
            if first is None:
                stopping = True
                continue
            batch, rows = [first], len(first.rows)
            deadline = time.monotonic() + self.config.max_wait_ms / 1000
            while rows < self.config.max_rows and not stopping:
                try:
                    more = self._next(deadline - time.monotonic())
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                elif rows + len(more.rows) > self.config.max_rows:
                    self._held = more  # the first of the next batch
                    break
                else:
                    batch.append(more)
                    rows += len(more.rows)
            by_variant: dict[str, list[_Request]] = {}
            for request in batch:
                by_variant.setdefault(request.variant, []).append(request)
            for variant in self._in_turn(by_variant):
                self._score(variant, by_variant[variant])
                for request in by_variant[variant]:
                    request.done.set()

    def _in_turn(self, variants: Mapping[str, Any]) -> list[str]:
        """The batch's variants, starting from the one whose turn it is (see the module docstring)."""
        order = list(self.scorers)
        self._turn = (self._turn + 1) % len(order)
        rotated = order[self._turn :] + order[: self._turn]
        return [variant for variant in rotated if variant in variants]

    def _score(self, variant: str, batch: list[_Request]) -> None:
        score = self.scorers[variant]
        self.requests[variant] += len(batch)
        self.model_calls[variant] += 1
        try:
            if len(batch) == 1:
                batch[0].result = score(batch[0].rows)
            else:
                scores = np.asarray(score([row for request in batch for row in request.rows]))
                start = 0
                for request in batch:
                    request.result = scores[start : start + len(request.rows)]
                    start += len(request.rows)
        except Exception as err:
            if len(batch) == 1:
                batch[0].error = err
            else:  # one request's failure must not become the others': each alone
                for request in batch:
                    try:
                        request.result = score(request.rows)
                    except Exception as err:
                        request.error = err
