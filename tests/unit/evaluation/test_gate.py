"""Gate rules on constructed evaluations: pass, fail with the numbers, no champion, bad rules."""

from __future__ import annotations

import pytest

from airflow_mlops.evaluation.gate import GateError, evaluate_gate

GATE = {
    "no_champion": "absolute_only",
    "rules": [
        {"metric": "auc", "min": 0.65},
        {"metric": "log_loss", "max": 0.55},
        {"metric": "auc", "min_margin_over_champion": 0.0},
        {"slice_metric": "auc", "slices": ["carrier"], "max_drop": 0.05, "min_rows": 100},
    ],
}


def evaluation(auc: float, log_loss: float, slices: dict[str, tuple[float, int]]) -> dict:
    return {
        "overall": {"auc": auc, "log_loss": log_loss},
        "slices": {"carrier": {k: {"auc": a, "rows": n} for k, (a, n) in slices.items()}},
    }


def test_a_better_challenger_passes_every_rule() -> None:
    passed, results = evaluate_gate(
        GATE,
        evaluation(0.72, 0.50, {"AA": (0.71, 500), "UA": (0.70, 400)}),
        evaluation(0.70, 0.52, {"AA": (0.70, 500), "UA": (0.71, 400)}),
    )
    assert passed and len(results) == 2 + 1 + 2 and all(r.passed for r in results)


def test_a_failing_challenger_names_every_failed_rule_with_its_numbers() -> None:
    passed, results = evaluate_gate(
        GATE,
        evaluation(0.64, 0.60, {"AA": (0.60, 500), "UA": (0.50, 40)}),
        evaluation(0.70, 0.52, {"AA": (0.70, 500), "UA": (0.71, 40)}),
    )
    failed = {r.rule: r for r in results if not r.passed}
    assert not passed
    assert set(failed) == {
        "auc >= 0.65",
        "log_loss <= 0.55",
        "auc margin over champion >= 0.0",
        "auc on carrier=AA drops <= 0.05",
    }
    assert failed["auc on carrier=AA drops <= 0.05"].observed == pytest.approx(0.10)
    assert "challenger 0.6000, champion 0.7000" in failed["auc on carrier=AA drops <= 0.05"].detail
    assert not any("UA" in r.rule for r in results)  # 40 rows: below min_rows, not judged


@pytest.mark.parametrize(
    ("policy", "passed", "judged"), [("absolute_only", True, 2), ("pass", True, 3), ("fail", False, 3)]
)
def test_the_first_model_follows_the_no_champion_policy(policy: str, passed: bool, judged: int) -> None:
    decision, results = evaluate_gate({**GATE, "no_champion": policy}, evaluation(0.7, 0.5, {}), None)
    assert decision is passed and len(results) == judged


def test_lower_is_better_metrics_margin() -> None:
    gate = {"rules": [{"metric": "log_loss", "min_margin_over_champion": 0.01}]}
    passed, (result,) = evaluate_gate(gate, evaluation(0.7, 0.50, {}), evaluation(0.7, 0.52, {}))
    assert passed and result.observed == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ({"rules": []}, "'rules' must be a non-empty list"),
        ({"rules": [{"metric": "f1", "min": 0.5}]}, "metric must be one of .* got 'f1'"),
        ({"rules": [{"metric": "auc", "minimum": 0.5}]}, "not one of"),
        ({"rules": [{"metric": "auc", "min": "high"}]}, "min must be a number, got 'high'"),
        ({"rules": [{"slice_metric": "auc", "max_drop": 0.1}]}, "a slice rule needs 'slices'"),
        ({"no_champion": "maybe", "rules": [{"metric": "auc", "min": 0.5}]}, "no_champion must be one of"),
    ],
)
def test_bad_gates_are_refused(gate: dict, message: str) -> None:
    with pytest.raises(GateError, match=message):
        evaluate_gate(gate, evaluation(0.7, 0.5, {}), None)


def test_rules_on_a_regression_metric_and_a_fairness_gap() -> None:
    gate = {
        "rules": [
            {"metric": "rmse", "max": 10.0},
            {"metric": "rmse", "min_margin_over_champion": 0.5},
            {"fairness": "mae_gap", "slices": ["carrier", "origin"], "max": 3.0},
        ]
    }
    challenger = {
        "overall": {"rmse": 8.0},
        "fairness": {
            "carrier": {"mae_gap": 2.5, "mae_slices": ["AA", "UA"]},
            "origin": {"mae_gap": float("nan")},
        },
    }
    passed, results = evaluate_gate(gate, challenger, {"overall": {"rmse": 8.2}})
    assert not passed
    assert [(r.rule, r.passed) for r in results] == [
        ("rmse <= 10.0", True),
        ("rmse margin over champion >= 0.5", False),  # lower is better: 0.2 better, not 0.5
        ("mae_gap across carrier <= 3.0", True),
        ("mae_gap across origin <= 3.0", False),  # undefined (one slice): not a pass
    ]
    assert "AA / UA" in results[2].detail and "undefined" in results[3].detail


@pytest.mark.parametrize(
    ("gate", "task", "message"),
    [
        (
            {"rules": [{"metric": "auc", "min": 0.6}]},
            "regression",
            r"metric must be one of \['mae', 'r2', 'rmse'\] for a regression model, got 'auc'",
        ),
        (
            {"rules": [{"fairness": "tpr_gap", "slices": ["c"], "max": 0.1}]},
            "multiclass",
            r"fairness must be one of \['accuracy_gap'\] for a multiclass model",
        ),
        (
            {"rules": [{"fairness": "tpr_gap", "slices": "c", "max": 0.1}]},
            None,
            r"a fairness rule is \{fairness, slices \(a list\), max\}",
        ),
        (
            {"rules": [{"fairness": "tpr_gap", "slices": ["c"], "max": "low"}]},
            None,
            r"max must be a number, got 'low'",
        ),
        ("rules: []", None, r"gate must be a mapping with 'rules', got str"),
    ],
)
def test_rules_that_do_not_fit_the_task_are_refused(gate: object, task: str | None, message: str) -> None:
    from airflow_mlops.evaluation.gate import check_gate

    with pytest.raises(GateError, match=message):
        check_gate(gate, task)  # type: ignore[arg-type]
