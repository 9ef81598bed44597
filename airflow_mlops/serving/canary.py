"""Canary analysis: is the candidate as healthy online as the primary? (no Airflow import)

Judged on the server's per-variant statistics since the canary was deployed (``/stats``): the
candidate must have served ``min_requests``; its failure rate (server errors, and the requests its
signature refused with 422: a candidate whose inputs differ from the primary's refuses what the
primary answers) may exceed the primary's by at most ``max_error_rate_increase``, and its p99
latency may be at most ``max_latency_ratio`` times the primary's (plus ``latency_slack_ms``, so a
sub-millisecond primary does not fail every canary).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_mlops.exceptions import MLOpsConfigError


@dataclass(frozen=True)
class CanaryCriteria:
    min_requests: int = 100
    max_error_rate_increase: float = 0.01
    max_latency_ratio: float = 1.5
    latency_slack_ms: float = 5.0

    def __post_init__(self) -> None:
        if self.min_requests < 1:
            raise MLOpsConfigError(
                f"canary criteria: min_requests must be at least 1, got {self.min_requests!r}"
            )
        if not 0 <= self.max_error_rate_increase <= 1:
            raise MLOpsConfigError(
                f"canary criteria: max_error_rate_increase must be within [0, 1], "
                f"got {self.max_error_rate_increase!r}"
            )
        if self.max_latency_ratio <= 0 or self.latency_slack_ms < 0:
            raise MLOpsConfigError(
                f"canary criteria: max_latency_ratio must be positive and latency_slack_ms "
                f"non-negative, got {self.max_latency_ratio!r} and {self.latency_slack_ms!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    done: bool  # enough traffic to judge
    healthy: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(stats: Mapping[str, Any], criteria: CanaryCriteria) -> Verdict:
    """The verdict on a canary endpoint's statistics (``ModelServer.stats``)."""
    policy = stats.get("policy", {})
    if policy.get("kind") != "canary":
        return Verdict(
            True, True, [f"endpoint {stats.get('endpoint')!r} runs no canary (policy {policy.get('kind')!r})"]
        )
    primary = stats["variants"].get(policy["primary"], {})
    candidate = stats["variants"].get(policy["candidate"], {})
    served = int(candidate.get("requests") or 0)
    if served < criteria.min_requests:
        return Verdict(
            False, False, [f"candidate served {served} of the {criteria.min_requests} requests needed"]
        )
    reasons, healthy = [], True
    candidate_errors, primary_errors = failure_rate(candidate), failure_rate(primary)
    ok = candidate_errors <= primary_errors + criteria.max_error_rate_increase
    healthy &= ok
    refused = int(candidate.get("refused") or 0)
    reasons.append(
        f"{'pass' if ok else 'FAIL'} error rate {candidate_errors:.4f} vs primary {primary_errors:.4f} "
        f"(at most +{criteria.max_error_rate_increase})"
        + (f"; the candidate refused {refused} requests (422)" if refused else "")
    )
    if candidate.get("p99_ms") is not None and primary.get("p99_ms") is not None:
        bound = primary["p99_ms"] * criteria.max_latency_ratio + criteria.latency_slack_ms
        ok = candidate["p99_ms"] <= bound
        healthy &= ok
        reasons.append(
            f"{'pass' if ok else 'FAIL'} p99 latency {candidate['p99_ms']:.2f} ms vs primary "
            f"{primary['p99_ms']:.2f} ms (at most {bound:.2f} ms)"
        )
    return Verdict(True, healthy, reasons)


def failure_rate(variant: Mapping[str, Any]) -> float:
    """Server errors and signature refusals (422) over the requests a variant was routed."""
    requests = int(variant.get("requests") or 0)
    refused = int(variant.get("refused") or 0) / requests if requests else 0.0
    return float(variant.get("error_rate") or 0.0) + refused
