"""Metrics against hand-computed values; slices, fairness gaps, importance; bad input refused."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.evaluation.metrics import (
    binary_metrics,
    calibration_error,
    fairness_gaps,
    permutation_importance,
    sliced_metrics,
)


def test_binary_metrics_match_hand_computed_values() -> None:
    y = [1, 0, 1, 0]
    p = [0.9, 0.6, 0.4, 0.1]
    m = binary_metrics(y, p, threshold=0.5)
    assert m["auc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered correctly
    assert m["accuracy"] == pytest.approx(0.5) and m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5) and m["fpr"] == pytest.approx(0.5)
    expected_loss = -np.mean([math.log(0.9), math.log(0.4), math.log(0.4), math.log(0.9)])
    assert m["log_loss"] == pytest.approx(expected_loss) and m["rows"] == 4


def test_calibration_error_is_zero_when_rates_match_and_large_when_not() -> None:
    y = np.array([1] * 3 + [0] * 7)
    assert calibration_error(y, np.full(10, 0.3)) == pytest.approx(0.0)
    assert calibration_error(y, np.full(10, 0.9)) == pytest.approx(0.6)


def test_slices_and_fairness_gaps() -> None:
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.1, 0.2, 0.9, 0.2, 0.7, 0.1])
    carrier = ["AA"] * 4 + ["UA"] * 4
    sliced = sliced_metrics({"carrier": carrier}, y, p, min_rows=2)
    assert sliced["carrier"]["AA"]["recall"] == 1.0 and sliced["carrier"]["UA"]["recall"] == 0.5
    gaps = fairness_gaps(sliced)["carrier"]
    assert gaps["tpr_gap"] == pytest.approx(0.5) and gaps["tpr_slices"] == ["UA", "AA"]
    assert gaps["fpr_gap"] == pytest.approx(0.5)
    assert sliced_metrics({"carrier": carrier}, y, p, min_rows=5) == {"carrier": {}}


def test_permutation_importance_ranks_the_feature_the_score_uses() -> None:
    generator = np.random.default_rng(0)
    frame = pd.DataFrame({"signal": generator.normal(size=2000), "noise": generator.normal(size=2000)})
    y = (frame["signal"] > 0).astype(int)

    def score(f: pd.DataFrame) -> np.ndarray:
        return 1 / (1 + np.exp(-3 * f["signal"].to_numpy()))

    importance = permutation_importance(score, frame, ["noise", "signal"], y, repeats=2)
    assert (
        list(importance) == ["signal", "noise"] and importance["signal"] > 0.3 and importance["noise"] == 0.0
    )


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 0], [0.5], "same length"),
        ([1, 2], [0.5, 0.5], "labels must be 0 or 1"),
        ([1, 0], [0.5, 1.5], r"probabilities must lie in \[0, 1\]"),
        ([1, 0], [0.5, float("nan")], "without NaN"),
    ],
)
def test_bad_inputs_are_refused(y, p, message) -> None:
    with pytest.raises(ValueError, match=message):
        binary_metrics(y, p)


def test_one_class_gives_nan_auc_and_a_bad_threshold_is_refused() -> None:
    assert math.isnan(binary_metrics([1, 1], [0.2, 0.9])["auc"])
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\), got 1.5"):
        binary_metrics([1, 0], [0.2, 0.9], threshold=1.5)
