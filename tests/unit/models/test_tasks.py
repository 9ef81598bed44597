"""Each task's metrics equal scikit-learn's on the same predictions; bad inputs name the rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from airflow_mlops.evaluation.metrics import task_metrics
from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.models import check_task, lower_is_better, metric_names, primary_metric


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_binary_metrics_equal_scikit_learns(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0.01, 0.99)
    m = task_metrics("binary", y, p)
    assert m["auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-12)
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p), abs=1e-9)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p >= 0.5))
    assert m["precision"] == pytest.approx(sk.precision_score(y, p >= 0.5))
    assert m["recall"] == pytest.approx(sk.recall_score(y, p >= 0.5))
    assert set(metric_names("binary")) <= set(m)


def test_multiclass_metrics_equal_scikit_learns(rng: np.random.Generator) -> None:
    y = rng.integers(0, 4, 600)
    logits = rng.normal(size=(600, 4)) + 1.5 * np.eye(4)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = task_metrics("multiclass", y, p)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p.argmax(1)), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, p.argmax(1), average="macro"), abs=1e-12)
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p, labels=range(4)), abs=1e-9)
    assert m["rows"] == 600 and set(metric_names("multiclass")) <= set(m)


def test_multiclass_macro_f1_counts_a_class_only_predicted_like_scikit_learn() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    expected = sk.f1_score(y, p.argmax(1), average="macro")
    assert task_metrics("multiclass", y, p)["macro_f1"] == pytest.approx(expected)


def test_regression_metrics_equal_scikit_learns(rng: np.random.Generator) -> None:
    y = rng.normal(10, 40, 800)
    pred = y + rng.normal(0, 15, 800)
    m = task_metrics("regression", y, pred)
    assert m["rmse"] == pytest.approx(math.sqrt(sk.mean_squared_error(y, pred)), rel=1e-12)
    assert m["mae"] == pytest.approx(sk.mean_absolute_error(y, pred), rel=1e-12)
    assert m["r2"] == pytest.approx(sk.r2_score(y, pred), rel=1e-12)
    assert math.isnan(task_metrics("regression", [3.0, 3.0], [3.0, 2.0])["r2"])  # undefined, not 0


@pytest.mark.parametrize(
    ("task", "labels", "predictions", "message"),
    [
        ("multiclass", [0, 1, 3], np.full((3, 3), 1 / 3), r"labels must be class indices 0\.\.2, got \[3\]"),
        ("multiclass", [0, 1], np.full((2,), 0.5), r"probabilities must be rows x classes"),
        (
            "multiclass",
            [0, 1],
            [[0.5, np.nan], [0.5, 0.5]],
            r"probabilities must lie in \[0, 1\] without NaN",
        ),
        ("regression", [1.0, np.inf], [1.0, 2.0], r"labels must be finite numbers"),
        ("regression", [1.0, 2.0], [1.0], r"same length"),
        ("regression", [], [], r"no rows to evaluate"),
        ("ranking", [1], [1], r"task must be one of \['binary', 'multiclass', 'regression'\], got 'ranking'"),
    ],
)
def test_bad_inputs_name_the_rule(task: str, labels: object, predictions: object, message: str) -> None:
    with pytest.raises(MLOpsConfigError, match=message):
        task_metrics(task, labels, predictions)


def test_task_definitions() -> None:
    assert [primary_metric(t) for t in ("binary", "multiclass", "regression")] == ["auc", "macro_f1", "rmse"]
    assert lower_is_better("rmse") and lower_is_better("log_loss") and not lower_is_better("r2")
    assert check_task("regression") == "regression"
    with pytest.raises(MLOpsConfigError, match=r"model task must be one of .* got 'Binary'"):
        check_task("Binary", "model task")


def test_the_headline_leads_with_the_tasks_primary_metric() -> None:
    from airflow_mlops.models.tasks import headline

    metrics = {"test_rmse": 3.21, "test_baseline_rmse": 9.87, "test_auc": 0.5}
    assert headline(metrics, "regression") == "rmse 3.2100 (baseline 9.8700)"
    assert headline({"test_macro_f1": 0.5}, "multiclass") == "macro_f1 0.5000 (baseline n/a)"
