"""Routing policies: validated on construction, and each routes as it says."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from airflow_mlops.serving.policies import Policy, PolicyError, posteriors
from airflow_mlops.serving.state import LocalState, deployment_key


@pytest.mark.parametrize(
    ("spec", "variants", "message"),
    [
        ({"kind": "round_robin"}, ["a"], r"policy kind 'round_robin' is not one of"),
        ({}, ["a"], "policy needs a kind"),
        ({"kind": "single", "colour": "red"}, ["a"], r"policy fields \['colour'\] are unknown"),
        ({"kind": "single"}, ["a", "b"], r"a single policy takes exactly 1 variant\(s\), got \['a', 'b'\]"),
        (
            {"kind": "canary", "primary": "a", "candidate": "b", "weight": -0.1},
            ["a", "b"],
            r"canary weight must be within \[0, 1\], got -0.1",
        ),
        (
            {"kind": "canary", "primary": "a", "candidate": "b", "weight": "10%"},
            ["a", "b"],
            "canary weight must be a number, got '10%'",
        ),
        (
            {"kind": "canary", "primary": "a", "candidate": "a", "weight": 0.1},
            ["a", "b"],
            "needs primary and candidate among the variants",
        ),
        ({"kind": "shadow", "primary": "a"}, ["a", "b"], "shadow=None"),
        ({"kind": "ab", "weights": {"a": 1}}, ["a", "b"], r"ab weights must name every variant \['a', 'b'\]"),
        ({"kind": "ab", "weights": {"a": 0, "b": 0}}, ["a", "b"], "positive sum"),
        ({"kind": "bandit"}, ["a"], r"a bandit policy takes at least 2 variant\(s\)"),
        ({"kind": "ensemble", "weights": {"a": -1, "b": 2}}, ["a", "b"], "non-negative numbers"),
    ],
)
def test_bad_policies_are_refused_with_the_field_and_value(spec: dict, variants: list, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Policy.from_dict(spec, variants)


def test_canary_sends_its_weight_to_the_candidate() -> None:
    policy = Policy.from_dict({"kind": "canary", "primary": "a", "candidate": "b", "weight": 0.1}, ["a", "b"])
    rng = random.Random(1)
    counts = Counter(policy.route(rng=rng).serve[0] for _ in range(20_000))
    assert counts["b"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert Policy.from_dict(policy.to_dict(), ["a", "b"]).to_dict() == policy.to_dict()


def test_ab_is_sticky_by_key_and_splits_by_weight() -> None:
    policy = Policy.from_dict({"kind": "ab", "weights": {"a": 3, "b": 1}}, ["a", "b"])
    first = {f"user-{i}": policy.route(f"user-{i}").serve[0] for i in range(4000)}
    assert all(policy.route(key).serve[0] == variant for key, variant in list(first.items())[:200])
    assert Counter(first.values())["a"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_shadow_serves_the_primary_and_copies_to_the_shadow() -> None:
    route = Policy.from_dict({"kind": "shadow", "primary": "a", "shadow": "b"}, ["a", "b"]).route()
    assert route.serve == ("a",) and route.shadows == ("b",)


@pytest.mark.parametrize("store", ["local", "reopened"])
def test_thompson_sampling_moves_to_the_arm_with_more_reward(store: str, tmp_path) -> None:
    """The policy routes by the posteriors the server's state keeps; with a local state they
    survive the state being opened again (a restart)."""
    policy = Policy.from_dict({"kind": "bandit"}, ["a", "b", "c"])
    state = LocalState(tmp_path)
    rng, world = random.Random(3), random.Random(4)
    truth = {"a": 0.3, "b": 0.6, "c": 0.4}
    chosen = []
    for i in range(1500):
        if store == "reopened" and i == 750:
            state = LocalState(tmp_path)
        arm = policy.route(rng=rng, arms=state.arms("e", "d1", policy.variants)).serve[0]
        chosen.append(arm)
        reward = float(world.random() < truth[arm])
        policy.check_reward(arm, reward)
        state.reward("e", "d1", arm, reward)
    assert Counter(chosen[-500:])["b"] > 400
    learnt = posteriors(state.arms("e", "d1", policy.variants))
    assert max(learnt.items(), key=lambda item: item[1]["mean"])[0] == "b"
    assert sum(a["alpha"] + a["beta"] for a in learnt.values()) == pytest.approx(1500 + 6)
    assert state.arms("e", "d2", ["a"]) == {"a": (1.0, 1.0)}  # another deployment starts afresh
    with pytest.raises(PolicyError, match=r"reward must be within \[0, 1\], got 2"):
        policy.check_reward("a", 2)
    with pytest.raises(PolicyError, match="variant 'z' is not an arm"):
        policy.check_reward("z", 1)


def test_the_deployment_key_is_the_same_on_every_replica_and_changes_with_what_is_served() -> None:
    record = {"variants": {"a": {"name": "m", "version": "1"}}, "policy": {"kind": "single"}}
    fields = ("variants", "policy")
    key = deployment_key({**record, "deployed_at": "t1"}, fields)
    assert deployment_key({**record, "deployed_at": "t2", "deployed_by": "x"}, fields) == key
    assert deployment_key({**record, "policy": {"kind": "ab"}}, fields) != key


def test_feedback_on_a_policy_that_is_not_a_bandit_is_refused() -> None:
    with pytest.raises(PolicyError, match="need a bandit policy; this endpoint's policy is 'single'"):
        Policy.from_dict({"kind": "single"}, ["a"]).check_reward("a", 1)


def test_composites_route_to_every_variant_in_order() -> None:
    chain = Policy.from_dict({"kind": "chain"}, ["first", "second"]).route()
    assert chain.serve == ("first", "second") and chain.combine == "chain"
    ensemble = Policy.from_dict({"kind": "ensemble", "weights": {"x": 1, "y": 3}}, ["x", "y"])
    assert ensemble.weights == {"x": 0.25, "y": 0.75}


def test_the_serving_package_imports_and_builds_its_app_without_airflow(tmp_path) -> None:
    import subprocess
    import sys

    probe = (
        "import sys; from airflow_mlops.serving import app, batch, canary, explain, features, sagemaker; "
        "from airflow_mlops.serving.server import ModelServer; "
        "server = ModelServer(sys.argv[1], None, request_log=True); app.create_app(server, 'token'); server.close(); "
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", probe, str(tmp_path)], check=True, capture_output=True, timeout=120)
