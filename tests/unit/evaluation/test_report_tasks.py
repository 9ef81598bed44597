"""Evaluation reports for every task: metrics overall and per slice, fairness gaps, the HTML page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from airflow_mlops.evaluation.report import dumps, evaluate, importance, loads, render_html
from airflow_mlops.exceptions import MLOpsConfigError


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = 900
    return pd.DataFrame(
        {
            "band": rng.choice(["low", "mid", "high"], rows),
            "minutes": rng.normal(20, 10, rows),
            "carrier": rng.choice(["AA", "UA", "DL"], rows),
            "x": rng.normal(0, 1, rows),
        }
    )


def test_multiclass_report(frame: pd.DataFrame) -> None:
    classes = ["high", "low", "mid"]
    labels = frame["band"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(frame), 3)) + 2 * np.eye(3)[labels]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    report = evaluate(
        p, frame, "band", slices=["carrier"], task="multiclass", classes=classes, min_slice_rows=10
    )
    assert report["task"] == "multiclass" and report["classes"] == classes
    assert report["overall"]["macro_f1"] == pytest.approx(sk.f1_score(labels, p.argmax(1), average="macro"))
    aa = (frame["carrier"] == "AA").to_numpy()
    assert report["slices"]["carrier"]["AA"]["accuracy"] == pytest.approx(
        sk.accuracy_score(labels[aa], p[aa].argmax(1))
    )
    gaps = report["fairness"]["carrier"]
    accuracies = [m["accuracy"] for m in report["slices"]["carrier"].values()]
    assert gaps["accuracy_gap"] == pytest.approx(max(accuracies) - min(accuracies))
    assert "roc" not in report and loads(dumps(report))["overall"] == pytest.approx(report["overall"])
    page = render_html(report, "multiclass")
    assert "macro F1" in page and page.count("<img") == 1  # the per-slice bars; no ROC for multiclass


def test_regression_report_and_importance(frame: pd.DataFrame) -> None:
    def score(rows: pd.DataFrame) -> np.ndarray:
        return 20 + 10 * rows["x"].to_numpy() * 0 + (rows["minutes"].to_numpy() - 20) * 0.9

    predictions = score(frame)
    report = evaluate(predictions, frame, "minutes", slices=["carrier"], task="regression")
    assert report["overall"]["r2"] == pytest.approx(sk.r2_score(frame["minutes"], predictions))
    assert set(report["fairness"]["carrier"]) == {"mae_gap", "mae_slices"}
    found = importance(score, frame.assign(x=frame["x"]), "minutes", ["minutes", "x"], task="regression")
    assert found["minutes"] > 1 and found["x"] == pytest.approx(0.0)  # rmse loss when shuffled
    assert "R²" in render_html(report, "regression")


def test_a_multiclass_label_outside_the_models_classes_is_named(frame: pd.DataFrame) -> None:
    with pytest.raises(MLOpsConfigError, match=r"label 'band' has values \['mid'\] that are not classes"):
        evaluate(
            np.full((len(frame), 2), 0.5),
            frame,
            "band",
            slices=[],
            task="multiclass",
            classes=["high", "low"],
        )
