"""The canary verdict on per-variant statistics, and criteria refused when they cannot work."""

from __future__ import annotations

import pytest

from airflow_mlops.serving.canary import CanaryCriteria, judge


def stats(candidate: dict, primary: dict | None = None, kind: str = "canary") -> dict:
    return {
        "endpoint": "e",
        "policy": {"kind": kind, "primary": "main", "candidate": "new"},
        "variants": {
            "main": primary or {"requests": 900, "error_rate": 0.0, "p99_ms": 10.0},
            "new": candidate,
        },
    }


def test_too_little_traffic_is_no_verdict_yet() -> None:
    verdict = judge(
        stats({"requests": 20, "error_rate": 0.0, "p99_ms": 9.0}), CanaryCriteria(min_requests=100)
    )
    assert not verdict.done and verdict.reasons == ["candidate served 20 of the 100 requests needed"]


def test_a_candidate_as_good_as_the_primary_passes_and_a_slow_or_failing_one_fails() -> None:
    criteria = CanaryCriteria(
        min_requests=100, max_error_rate_increase=0.01, max_latency_ratio=1.5, latency_slack_ms=5
    )
    healthy = judge(stats({"requests": 100, "error_rate": 0.005, "p99_ms": 19.9}), criteria)
    assert healthy.done and healthy.healthy
    slow = judge(stats({"requests": 100, "error_rate": 0.0, "p99_ms": 20.5}), criteria)
    assert (
        not slow.healthy
        and slow.reasons[1] == "FAIL p99 latency 20.50 ms vs primary 10.00 ms (at most 20.00 ms)"
    )
    failing = judge(stats({"requests": 100, "error_rate": 0.02, "p99_ms": 9.0}), criteria)
    assert not failing.healthy and failing.reasons[0].startswith("FAIL error rate 0.0200 vs primary 0.0000")


def test_an_endpoint_without_a_canary_passes_at_once() -> None:
    verdict = judge(stats({}, kind="single"), CanaryCriteria())
    assert verdict.done and verdict.healthy and "runs no canary" in verdict.reasons[0]


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ({"min_requests": 0}, "min_requests must be at least 1, got 0"),
        ({"max_error_rate_increase": 2}, r"max_error_rate_increase must be within \[0, 1\], got 2"),
        ({"max_latency_ratio": 0}, "max_latency_ratio must be positive"),
        ({"latency_slack_ms": -1}, "latency_slack_ms non-negative"),
    ],
)
def test_criteria_that_cannot_work_are_refused(criteria: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CanaryCriteria(**criteria)


def test_requests_the_candidate_refused_count_as_failures_beside_the_primarys() -> None:
    """A candidate whose inputs differ from the primary's refuses (422) what the primary answers;
    refusals both variants make (a caller's bad rows) cancel out."""
    criteria = CanaryCriteria(min_requests=100, max_error_rate_increase=0.01)
    primary = {"requests": 900, "error_rate": 0.0, "refused": 9, "p99_ms": 10.0}
    changed = judge(
        stats({"requests": 100, "error_rate": 0.0, "refused": 30, "p99_ms": 9.0}, primary), criteria
    )
    assert not changed.healthy and changed.reasons[0] == (
        "FAIL error rate 0.3000 vs primary 0.0100 (at most +0.01); the candidate refused 30 requests (422)"
    )
    callers = judge(
        stats({"requests": 100, "error_rate": 0.0, "refused": 1, "p99_ms": 9.0}, primary), criteria
    )
    assert callers.healthy, callers.reasons
