"""Experiment analysis on simulated traffic with known effects: intervals that hold the truth,
no winner between equal variants in most seeds, the sample size a chosen effect needs, gates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airflow_mlops.evaluation.experiment import (
    ExperimentError,
    Sample,
    analyze,
    gate_view,
    required_samples,
    task_metric,
)
from airflow_mlops.evaluation.gate import GateError, check_gate, evaluate_gate


def clicks(rate: float, n: int, rng: np.random.Generator) -> Sample:
    return Sample((rng.random(n) < rate).astype("float64"))


def test_a_known_lift_in_click_rate_is_recovered_within_its_interval_in_most_seeds() -> None:
    covered, won = 0, 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        result = analyze(
            {"a": clicks(0.10, 6000, rng), "b": clicks(0.13, 6000, rng)}, control="a", draws=2000, seed=seed
        )
        assert result["method"] == "bayesian"
        b = result["comparisons"]["b"]
        covered += b["lower"] <= 0.03 <= b["upper"]
        won += result["winner"] == "b"
    assert covered >= 35, covered  # a 95 % interval: ~38 of 40
    assert won >= 38, won  # a 3-point lift on 6,000 each is found nearly always (power ~0.99)


def test_equal_variants_declare_no_winner_in_most_seeds() -> None:
    winners = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        result = analyze(
            {"a": clicks(0.2, 3000, rng), "b": clicks(0.2, 3000, rng)}, control="a", draws=2000, seed=seed
        )
        winners.append(result["winner"])
        assert 0.0 <= result["comparisons"]["b"]["probability_better"] <= 1.0
    assert winners.count(None) >= 32, winners  # at 95 % confidence each side: ~36 of 40


def test_a_worse_challenger_leaves_the_control_in_place() -> None:
    rng = np.random.default_rng(7)
    result = analyze({"a": clicks(0.3, 4000, rng), "b": clicks(0.2, 4000, rng)}, control="a")
    assert result["winner"] == "a"
    assert result["comparisons"]["b"]["verdict"] == "control"
    assert result["comparisons"]["b"]["probability_better"] < 0.01


def test_continuous_rewards_are_bootstrapped_and_the_shift_recovered() -> None:
    rng = np.random.default_rng(3)
    a = Sample(np.clip(rng.normal(0.50, 0.2, 5000), 0, 1))
    b = Sample(np.clip(rng.normal(0.53, 0.2, 5000), 0, 1))
    result = analyze({"a": a, "b": b}, control="a", draws=1000)
    assert result["method"] == "bootstrap"
    comparison = result["comparisons"]["b"]
    truth = float(b.values.mean() - a.values.mean())
    assert comparison["lower"] <= truth <= comparison["upper"]
    assert comparison["lower"] > 0 and result["winner"] == "b"
    estimate = result["variants"]["a"]
    assert estimate["lower"] < estimate["value"] < estimate["upper"]
    assert estimate["std_error"] == pytest.approx(0.2 / math.sqrt(5000), rel=0.15)


def test_a_task_metric_where_lower_is_better_names_the_challenger_with_smaller_errors() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(10, 3, 1500)
    samples = {
        "a": Sample(truth[:750], truth[:750] + rng.normal(0, 2.0, 750)),
        "b": Sample(truth[750:], truth[750:] + rng.normal(0, 1.5, 750)),
    }
    result = analyze(
        samples,
        control="a",
        metric="rmse",
        compute=task_metric("regression", "rmse"),
        lower_is_better=True,
        draws=400,
    )
    comparison = result["comparisons"]["b"]
    assert comparison["difference"] < 0 and comparison["upper"] < 0
    assert comparison["probability_better"] > 0.99 and result["winner"] == "b"
    assert result["variants"]["a"]["value"] == pytest.approx(2.0, rel=0.1)


def test_auc_per_variant_is_bootstrapped() -> None:
    rng = np.random.default_rng(11)

    def scored(separation: float, n: int) -> Sample:
        labels = (rng.random(n) < 0.3).astype("float64")
        scores = 1 / (1 + np.exp(-(separation * (labels - 0.5) + rng.normal(0, 1, n))))
        return Sample(labels, scores)

    result = analyze(
        {"a": scored(1.0, 1500), "b": scored(2.0, 1500)},
        control="a",
        metric="auc",
        compute=task_metric("binary", "auc"),
        draws=300,
    )
    assert result["method"] == "bootstrap"
    assert result["comparisons"]["b"]["lower"] > 0 and result["winner"] == "b"


def test_the_required_sample_size_matches_the_two_proportion_formula() -> None:
    # p 0.10 vs 0.12, alpha 0.05, power 0.8: (1.96 + 0.8416)^2 (0.09 + 0.1056) / 0.02^2 = 3839
    n = 10_000
    needed = required_samples(
        math.sqrt(0.09 / n), n, math.sqrt(0.1056 / n), n, min_effect=0.02, confidence=0.95, power=0.8
    )
    assert needed == pytest.approx(3839, abs=2)
    rng = np.random.default_rng(1)
    result = analyze(
        {"a": clicks(0.10, 20_000, rng), "b": clicks(0.12, 20_000, rng)}, control="a", min_effect=0.02
    )
    assert result["comparisons"]["b"]["required_samples"] == pytest.approx(3839, rel=0.08)
    assert result["comparisons"]["b"]["enough_samples"] is True


def test_a_lucky_early_lead_is_not_a_verdict_before_the_required_samples() -> None:
    rng = np.random.default_rng(2)
    result = analyze({"a": clicks(0.10, 600, rng), "b": clicks(0.25, 600, rng)}, control="a", min_effect=0.01)
    comparison = result["comparisons"]["b"]
    assert comparison["probability_better"] > 0.99
    assert comparison["enough_samples"] is False and comparison["verdict"] == "inconclusive"
    assert result["winner"] is None
    assert f"fewer than the {comparison['required_samples']}" in comparison["reason"]


def test_an_experiment_gate_judges_the_best_challenger() -> None:
    rng = np.random.default_rng(4)
    result = analyze(
        {"a": clicks(0.10, 8000, rng), "b": clicks(0.10, 8000, rng), "c": clicks(0.14, 8000, rng)},
        control="a",
        min_effect=0.02,
    )
    view = gate_view(result)
    assert view["challenger"] == "c" and view["sample_fraction"] > 1
    gate = {
        "rules": [
            {"experiment": "probability_better", "min": 0.95},
            {"experiment": "difference_lower", "min": 0.0},
            {"experiment": "sample_fraction", "min": 1.0},
        ]
    }
    passed, results = evaluate_gate(gate, {"experiment": view}, None)
    assert passed, results
    strict = {"rules": [{"experiment": "difference", "min": 0.2}]}
    passed, results = evaluate_gate(strict, {"experiment": view}, None)
    assert (
        not passed
        and "difference of 'c' vs 'a'" in results[0].detail
        and "must be >= 0.2" in results[0].detail
    )
    no_effect = gate_view(analyze({"a": clicks(0.1, 500, rng), "b": clicks(0.1, 500, rng)}, control="a"))
    passed, results = evaluate_gate(
        {"rules": [{"experiment": "sample_fraction", "min": 1}]}, {"experiment": no_effect}, None
    )
    assert not passed and "needs min_effect" in results[0].detail


@pytest.mark.parametrize(
    ("gate", "experiment", "message"),
    [
        ({"rules": [{"experiment": "probability_better", "min": 0.9}]}, False, "not an offline evaluation"),
        ({"rules": [{"metric": "auc", "min": 0.6}]}, True, r"takes \{experiment, min\|max\} rules only"),
        ({"rules": [{"experiment": "lift", "min": 0}]}, True, "experiment must be one of"),
        ({"rules": [{"experiment": "difference"}]}, True, r"takes \{experiment, min\|max\} rules only"),
        ({"rules": [{"experiment": "difference", "min": "0"}]}, True, "min must be a number"),
    ],
)
def test_bad_experiment_gates_are_refused(gate: dict, experiment: bool, message: str) -> None:
    with pytest.raises(GateError, match=message):
        check_gate(gate, experiment=experiment)


@pytest.mark.parametrize(
    ("samples", "settings", "message"),
    [
        (
            {"b": [0, 1, 1]},
            {},
            r"control 'a' has no outcomes in the window \(variants with outcomes: \['b'\]",
        ),
        ({"a": [0, 1, 1]}, {}, r"only \['a'\] have outcomes"),
        ({"a": [0, 1], "b": [1]}, {}, r"variants \{'b': 1\} have fewer than 2 outcomes"),
        ({"a": [0.5, 1], "b": [1, 0]}, {"method": "bayesian"}, "'bayesian' is for a mean of 0/1 outcomes"),
        ({"a": [0, 1], "b": [1, 0]}, {"method": "frequentist"}, "method must be one of"),
        ({"a": [0, 1], "b": [1, 0]}, {"confidence": 1.0}, r"confidence must lie in \[0.5, 1\), got 1.0"),
        ({"a": [0, 1], "b": [1, 0]}, {"power": 0.2}, r"power must lie in \[0.5, 1\), got 0.2"),
        ({"a": [0, 1], "b": [1, 0]}, {"min_effect": -0.1}, "min_effect must be a positive number"),
        ({"a": [0, 1], "b": [1, 0]}, {"draws": 10}, "draws must be a whole number of at least 200, got 10"),
    ],
)
def test_bad_analyses_are_refused_naming_the_rule(samples: dict, settings: dict, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        analyze(
            {v: Sample(np.array(x, dtype="float64")) for v, x in samples.items()}, control="a", **settings
        )


def test_a_metric_of_another_task_is_refused() -> None:
    with pytest.raises(ExperimentError, match=r"metric must be one of .* for a regression model, got 'auc'"):
        task_metric("regression", "auc")


def test_a_metric_undefined_on_resamples_is_an_error_not_a_silent_drop() -> None:
    one_class = Sample(np.zeros(50), np.linspace(0.1, 0.9, 50))
    both = Sample(np.array([0.0, 1.0] * 25), np.linspace(0.1, 0.9, 50))
    with pytest.raises(ExperimentError, match="auc is undefined in"):
        analyze(
            {"a": both, "b": one_class},
            control="a",
            metric="auc",
            compute=task_metric("binary", "auc"),
            draws=200,
        )
