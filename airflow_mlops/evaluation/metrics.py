"""Binary classification metrics, overall and per slice, fairness gaps and permutation importance.

Plain numpy (ROC AUC from scikit-learn); no Airflow import. Every function takes labels in {0, 1}
and predicted probabilities; a bad input is a ``ValueError`` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from airflow_mlops.exceptions import MLOpsConfigError

CALIBRATION_BINS = 10


def _check(labels: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype="float64")
    p = np.asarray(probabilities, dtype="float64")
    if y.shape != p.shape or y.ndim != 1:
        raise MLOpsConfigError(
            f"labels and probabilities must be 1-D of the same length, got {y.shape} and {p.shape}"
        )
    if not np.isin(y, (0.0, 1.0)).all():
        raise MLOpsConfigError(
            f"labels must be 0 or 1, got values {sorted(set(np.unique(y)) - {0.0, 1.0})[:5]}"
        )
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise MLOpsConfigError("probabilities must lie in [0, 1] without NaN")
    return y, p


def binary_metrics(labels: Any, probabilities: Any, threshold: float = 0.5) -> dict[str, float]:
    """ROC AUC, log loss, accuracy, precision, recall (= TPR), FPR at ``threshold``, expected
    calibration error (10 equal-width bins), positive rate and rows. AUC is NaN with one class."""
    from sklearn.metrics import roc_auc_score

    if not 0 < threshold < 1:
        raise MLOpsConfigError(f"threshold must lie in (0, 1), got {threshold!r}")
    y, p = _check(labels, probabilities)
    rows = len(y)
    if rows == 0:
        raise MLOpsConfigError("no rows to evaluate")
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    predicted = p >= threshold
    positives, negatives = y == 1, y == 0
    tp = float((predicted & positives).sum())
    fp = float((predicted & negatives).sum())
    both_classes = positives.any() and negatives.any()
    return {
        "auc": float(roc_auc_score(y, p)) if both_classes else math.nan,
        "log_loss": float(-(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)).mean()),
        "accuracy": float((predicted == positives).mean()),
        "precision": tp / predicted.sum() if predicted.any() else math.nan,
        "recall": tp / positives.sum() if positives.any() else math.nan,
        "fpr": fp / negatives.sum() if negatives.any() else math.nan,
        "calibration_error": calibration_error(y, p),
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(predicted.mean()),
        "rows": float(rows),
    }


def calibration_error(labels: Any, probabilities: Any, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error: the row-weighted mean |observed rate - mean probability| per bin."""
    y, p = _check(labels, probabilities)
    index = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            error += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(error / len(y)) if len(y) else math.nan


def calibration_curve(
    labels: Any, probabilities: Any, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Per non-empty bin: mean probability, observed rate, rows (for the report's plot)."""
    y, p = _check(labels, probabilities)
    index = np.minimum((p * bins).astype(int), bins - 1)
    return [
        {
            "bin": b,
            "mean_probability": float(p[index == b].mean()),
            "observed_rate": float(y[index == b].mean()),
            "rows": int((index == b).sum()),
        }
        for b in range(bins)
        if (index == b).any()
    ]


def sliced_metrics(
    slices: Mapping[str, Sequence[Any]],
    labels: Any,
    probabilities: Any,
    threshold: float = 0.5,
    min_rows: int = 1,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{slice column: {value: metrics}}`` for every value with at least ``min_rows`` rows."""
    y, p = _check(labels, probabilities)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for column, values in slices.items():
        keys = np.asarray(values).astype(str)
        if len(keys) != len(y):
            raise MLOpsConfigError(f"slice {column!r} has {len(keys)} values for {len(y)} rows")
        result[column] = {}
        for value in sorted(set(keys)):
            mask = keys == value
            if mask.sum() >= min_rows:
                result[column][value] = binary_metrics(y[mask], p[mask], threshold)
    return result


def fairness_gaps(sliced: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per slice column: the largest TPR gap and FPR gap between its slices, and which slices."""
    gaps: dict[str, dict[str, Any]] = {}
    for column, by_value in sliced.items():
        gaps[column] = {}
        for rate in ("recall", "fpr"):
            known = {v: m[rate] for v, m in by_value.items() if not math.isnan(m[rate])}
            name = "tpr" if rate == "recall" else "fpr"
            if len(known) < 2:
                gaps[column][f"{name}_gap"] = math.nan
                continue
            low, high = min(known, key=known.__getitem__), max(known, key=known.__getitem__)
            gaps[column][f"{name}_gap"] = known[high] - known[low]
            gaps[column][f"{name}_slices"] = [low, high]
    return gaps


def permutation_importance(
    score: Callable[[Any], np.ndarray],
    frame: Any,
    features: Sequence[str],
    labels: Any,
    *,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Mean drop in ROC AUC when one feature's column is shuffled (``score(frame) -> probabilities``)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    base = roc_auc_score(y, score(frame))
    generator = np.random.default_rng(seed)
    importance = {}
    for feature in features:
        if feature not in frame.columns:
            raise MLOpsConfigError(
                f"permutation importance: feature {feature!r} is not a column of the frame"
            )
        drops = []
        for _ in range(repeats):
            shuffled = frame.copy()
            shuffled[feature] = generator.permutation(shuffled[feature].to_numpy())
            drops.append(base - roc_auc_score(y, score(shuffled)))
        importance[feature] = float(np.mean(drops))
    return dict(sorted(importance.items(), key=lambda item: -item[1]))
