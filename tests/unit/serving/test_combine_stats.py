"""An endpoint's statistics over its replicas (ModelServerHook.stats with a `replicas` extra)."""

from __future__ import annotations

import pytest

from airflow_mlops.exceptions import ModelServerError
from airflow_mlops.hooks.model_server import combine_stats

CANARY = {"kind": "canary", "primary": "a", "candidate": "b", "weight": 0.1}


def answer(policy: dict, **variants: tuple[int, int, float] | tuple[int, int, float, int]) -> dict:
    return {
        "endpoint": "e",
        "policy": policy,
        "deployed_at": "t",
        "arms": None,
        "variants": {
            name: {
                "requests": v[0],
                "rows": v[0],
                "errors": v[1],
                "error_rate": v[1] / v[0],
                "refused": v[3] if len(v) > 3 else 0,
                "p50_ms": v[2] / 2,
                "p99_ms": v[2],
            }
            for name, v in variants.items()
        },
    }


def test_counts_add_up_and_the_highest_percentiles_are_kept() -> None:
    combined = combine_stats(
        [
            answer(CANARY, a=(90, 0, 12.0), b=(10, 1, 30.0, 3)),
            answer(CANARY, a=(110, 2, 20.0), b=(30, 0, 8.0, 1)),
        ]
    )
    assert combined["replicas"] == 2 and combined["policy"] == CANARY
    assert combined["variants"]["a"] == {
        "requests": 200,
        "rows": 200,
        "errors": 2,
        "error_rate": 0.01,
        "refused": 0,
        "refused_rate": 0.0,
        "p50_ms": 10.0,
        "p99_ms": 20.0,
    }
    assert combined["variants"]["b"] == {
        "requests": 40,
        "rows": 40,
        "errors": 1,
        "error_rate": 0.025,
        "refused": 4,
        "refused_rate": 0.1,
        "p50_ms": 15.0,
        "p99_ms": 30.0,
    }


def test_one_replica_is_its_own_answer_and_a_variant_without_traffic_has_no_rate() -> None:
    single = answer({"kind": "single"}, main=(5, 0, 3.0))
    assert combine_stats([single]) == single
    idle = {
        "requests": 0,
        "rows": 0,
        "errors": 0,
        "error_rate": None,
        "refused": 0,
        "refused_rate": None,
        "p50_ms": None,
        "p99_ms": None,
    }
    both = combine_stats([{**single, "variants": {"main": idle}}, {**single, "variants": {"main": idle}}])
    assert both["variants"]["main"] == idle


def test_replicas_on_different_policies_are_refused_rather_than_mixed() -> None:
    with pytest.raises(
        ModelServerError,
        match=r"endpoint 'e': the replicas serve different policies .*"
        r"\(a deployment in progress\?\); ask again",
    ):
        combine_stats([answer(CANARY, a=(1, 0, 1.0)), answer({"kind": "single"}, main=(1, 0, 1.0))])
