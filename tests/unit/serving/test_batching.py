"""Dynamic batching: requests that wait together are scored in one call per variant, each gets its
own rows' predictions from its own variant, a batch never passes its size, one request's failure
stays its own, and an endpoint's variants never score at the same time."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from airflow_mlops.exceptions import PolicyError
from airflow_mlops.serving.batching import Batcher, BatchingConfig


class Model:
    """Scores a row as ``factor * x``; slow enough that requests queue behind a call; records each
    call's rows, and how many calls of any Model run at once (``Model.running``, ``Model.overlap``)."""

    running = overlap = 0
    lock = threading.Lock()

    def __init__(self, seconds: float = 0.01, factor: float = 2.0) -> None:
        self.seconds, self.factor, self.calls = seconds, factor, []

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        with Model.lock:
            self.calls.append(len(rows))
            Model.running += 1
            Model.overlap = max(Model.overlap, Model.running)
        try:
            if any(row.get("bad") for row in rows):
                raise ValueError(f"cannot score {sum(bool(r.get('bad')) for r in rows)} bad row(s)")
            time.sleep(self.seconds)
            return np.array([self.factor * row["x"] for row in rows])
        finally:
            with Model.lock:
                Model.running -= 1


def one(model: Model, config: BatchingConfig, name: str = "t") -> tuple[Batcher, Any]:
    """A batcher of one variant ``main`` and a function of the rows alone (for ``pool.map``)."""
    batcher = Batcher({"main": model}, config, name)
    return batcher, lambda rows: batcher("main", rows)


def test_concurrent_requests_share_calls_and_each_gets_its_own_rows() -> None:
    model = Model()
    batcher, score = one(model, BatchingConfig(max_rows=64))
    requests = [[{"x": float(i * 10 + j)} for j in range(1 + i % 3)] for i in range(200)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(score, requests))
    batcher.close()
    for rows, answer in zip(requests, answers, strict=True):
        assert answer.tolist() == [2.0 * row["x"] for row in rows]
    assert sum(model.calls) == sum(map(len, requests))  # every row scored once
    assert max(model.calls) <= 64 and batcher.requests["main"] == 200
    # 16 waiting clients share calls (one call per request would be 200)
    assert batcher.model_calls["main"] < 100


def test_an_endpoints_variants_score_in_turn_each_request_by_its_own_variant() -> None:
    """A canary's two variants: one thread scores both, never at the same time, each request by the
    variant it was routed to, the waiting requests of each variant in one call."""
    primary, candidate = Model(factor=2.0), Model(factor=-1.0)
    batcher = Batcher({"a": primary, "b": candidate}, BatchingConfig(max_rows=64), "canary")
    Model.overlap = 0
    routed = [("b" if i % 10 == 0 else "a", [{"x": float(i)}]) for i in range(300)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda r: batcher(*r), routed))
    batcher.close()
    for (variant, rows), answer in zip(routed, answers, strict=True):
        assert answer.tolist() == [(2.0 if variant == "a" else -1.0) * rows[0]["x"]]
    assert Model.overlap == 1  # one model call at a time across the variants
    assert batcher.requests == {"a": 270, "b": 30}
    assert batcher.model_calls["a"] < 270 and sum(candidate.calls) == 30
    with pytest.raises(PolicyError, match=r"no variant 'c' \(variants: \['a', 'b'\]\)"):
        batcher("c", [{"x": 1.0}])


def test_a_lone_request_waits_for_nobody_unless_asked() -> None:
    model = Model(seconds=0)
    alone, score_alone = one(model, BatchingConfig(max_rows=64, max_wait_ms=0), "alone")
    started = time.perf_counter()
    assert score_alone([{"x": 1.0}]).tolist() == [2.0]
    assert time.perf_counter() - started < 0.15
    alone.close()
    patient, score = one(model, BatchingConfig(max_rows=64, max_wait_ms=300), "patient")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(score, [{"x": 1.0}])
        time.sleep(0.05)  # the second arrives within the first's wait: one call for both
        second = pool.submit(score, [{"x": 2.0}, {"x": 3.0}])
        assert first.result().tolist() == [2.0] and second.result().tolist() == [4.0, 6.0]
    assert patient.model_calls["main"] == 1 and model.calls[-1] == 3
    patient.close()


def test_one_requests_failure_is_its_own_and_a_request_over_the_size_goes_alone() -> None:
    model = Model()
    batcher, score = one(model, BatchingConfig(max_rows=8, max_wait_ms=100))
    with ThreadPoolExecutor(4) as pool:
        good = [pool.submit(score, [{"x": float(i)}]) for i in range(3)]
        bad = pool.submit(score, [{"x": 0.0, "bad": True}])
        big = pool.submit(score, [{"x": float(i)} for i in range(20)])
        assert [f.result().tolist() for f in good] == [[0.0], [2.0], [4.0]]
        with pytest.raises(ValueError, match=r"cannot score 1 bad row\(s\)"):
            bad.result()
        assert big.result().tolist() == [2.0 * i for i in range(20)]
    assert 20 in model.calls and all(n <= 8 for n in model.calls if n != 20)
    batcher.close()


def test_close_scores_what_is_queued_and_later_calls_score_in_their_own_thread() -> None:
    model = Model(seconds=0.05)
    batcher, score = one(model, BatchingConfig(max_rows=1))
    with ThreadPoolExecutor(4) as pool:
        queued = [pool.submit(score, [{"x": float(i)}]) for i in range(4)]
        time.sleep(0.02)
        batcher.close()
        assert [f.result().tolist() for f in queued] == [[0.0], [2.0], [4.0], [6.0]]
    assert score([{"x": 5.0}]).tolist() == [10.0]  # after close: scored by the caller


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"max_rows": -1}, r"max_rows must be a whole number >= 0 \(0: off\), got -1"),
        ({"max_rows": "64"}, r"max_rows must be a whole number >= 0 \(0: off\), got '64'"),
        ({"max_wait_ms": 5000}, r"max_wait_ms must be a number within \[0, 1000\], got 5000"),
        ({"max_wait_ms": True}, r"max_wait_ms must be a number within \[0, 1000\], got True"),
        ({"rows": 8}, r"batching: unknown fields \['rows'\]"),
    ],
)
def test_bad_batching_is_refused_naming_the_field_and_value(config: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        BatchingConfig.from_dict(config, BatchingConfig())


def test_a_deployment_takes_the_servers_default_for_what_it_leaves_out() -> None:
    default = BatchingConfig(max_rows=128, max_wait_ms=2.0)
    assert BatchingConfig.from_dict(None, default) == default
    assert BatchingConfig.from_dict({"max_rows": 0}, default) == BatchingConfig(0, 2.0)
    with pytest.raises(PolicyError, match="needs max_rows >= 1"):
        Batcher({"main": Model()}, BatchingConfig(max_rows=0))


def test_the_variants_take_turns_going_first_so_a_canary_waits_like_its_primary() -> None:
    """Batches that hold both variants: the first model call alternates between them (in a fixed
    order the second variant's requests would always wait for the first's call)."""
    calls: list[str] = []

    class Named(Model):
        def __init__(self, name: str) -> None:
            super().__init__(seconds=0.005)
            self.name = name

        def __call__(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
            calls.append(self.name)
            return super().__call__(rows)

    batcher = Batcher(
        {"a": Named("a"), "b": Named("b")}, BatchingConfig(max_rows=64, max_wait_ms=150), "turns"
    )
    with ThreadPoolExecutor(2) as pool:
        for _ in range(4):  # each pair arrives within one batch's wait: one batch of both
            pair = [pool.submit(batcher, v, [{"x": 1.0}]) for v in ("a", "b")]
            assert [f.result().tolist() for f in pair] == [[2.0], [2.0]]
    batcher.close()
    assert len(calls) == 8 and batcher.model_calls == {"a": 4, "b": 4}
    firsts = calls[0::2]
    assert set(firsts) == {"a", "b"} and all(x != y for x, y in itertools.pairwise(firsts)), calls
