"""The metrics of every task type, overall and per slice, fairness gaps and permutation importance.

Plain numpy (ROC AUC from scikit-learn); no Airflow import. ``task_metrics`` is the one entry point
(training results, evaluation, the gate and the performance monitor all use it): binary takes
labels in {0, 1} and probabilities, multiclass class indices and a rows x classes probability
matrix, regression numbers and predicted numbers. A bad input is a ``MLOpsConfigError`` naming it.
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


def multiclass_metrics(labels: Any, probabilities: Any) -> dict[str, float]:
    """Accuracy, macro F1 (over the classes that occur in the labels or the predictions, as
    scikit-learn's ``f1_score(average="macro")``) and log loss of class probabilities."""
    y = np.asarray(labels)
    p = np.asarray(probabilities, dtype="float64")
    if p.ndim != 2 or y.ndim != 1 or len(y) != len(p) or p.shape[1] < 2:
        raise MLOpsConfigError(
            f"multiclass: probabilities must be rows x classes (at least 2) for 1-D labels of the same "
            f"length, got {p.shape} and {y.shape}"
        )
    if len(y) == 0:
        raise MLOpsConfigError("no rows to evaluate")
    classes = p.shape[1]
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any() or (y >= classes).any():
        bad = sorted({v for v in y.tolist() if not (isinstance(v, int) and 0 <= v < classes)})[:5]
        raise MLOpsConfigError(f"multiclass: labels must be class indices 0..{classes - 1}, got {bad}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise MLOpsConfigError("multiclass: probabilities must lie in [0, 1] without NaN")
    predicted = p.argmax(axis=1)
    f1 = []
    for c in np.union1d(y, predicted):
        tp = float(((predicted == c) & (y == c)).sum())
        denominator = float((predicted == c).sum() + (y == c).sum())
        f1.append(2 * tp / denominator if denominator else 0.0)
    eps = np.finfo(p.dtype).eps
    clipped = np.clip(p, eps, 1 - eps)
    clipped /= clipped.sum(axis=1, keepdims=True)
    return {
        "accuracy": float((predicted == y).mean()),
        "macro_f1": float(np.mean(f1)),
        "log_loss": float(-np.log(clipped[np.arange(len(y)), y]).mean()),
        "rows": float(len(y)),
    }


def regression_metrics(labels: Any, predictions: Any) -> dict[str, float]:
    """RMSE, MAE and R² (NaN when the labels are constant: R² is undefined there)."""
    y = np.asarray(labels, dtype="float64")
    p = np.asarray(predictions, dtype="float64")
    if y.shape != p.shape or y.ndim != 1:
        raise MLOpsConfigError(
            f"regression: labels and predictions must be 1-D of the same length, got {y.shape} and {p.shape}"
        )
    if len(y) == 0:
        raise MLOpsConfigError("no rows to evaluate")
    if not np.isfinite(y).all():
        raise MLOpsConfigError(
            f"regression: labels must be finite numbers, got {y[~np.isfinite(y)][:3].tolist()}"
        )
    if not np.isfinite(p).all():
        raise MLOpsConfigError(
            f"regression: predictions must be finite numbers, got {p[~np.isfinite(p)][:3].tolist()}"
        )
    error = p - y
    spread = float(((y - y.mean()) ** 2).sum())
    return {
        "rmse": float(np.sqrt((error**2).mean())),
        "mae": float(np.abs(error).mean()),
        "r2": 1.0 - float((error**2).sum()) / spread if spread > 0 else math.nan,
        "rows": float(len(y)),
    }


def task_metrics(task: str, labels: Any, predictions: Any, threshold: float = 0.5) -> dict[str, float]:
    """The metrics of ``task`` (see :mod:`airflow_mlops.models.tasks`) for labels and predictions."""
    from airflow_mlops.models.tasks import check_task

    check_task(task)
    if task == "binary":
        return binary_metrics(labels, predictions, threshold)
    if task == "multiclass":
        return multiclass_metrics(labels, predictions)
    return regression_metrics(labels, predictions)


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
    task: str = "binary",
) -> dict[str, dict[str, dict[str, float]]]:
    """``{slice column: {value: metrics of the task}}`` for every value with at least ``min_rows`` rows."""
    y, p = np.asarray(labels), np.asarray(probabilities)
    task_metrics(task, y, p, threshold)  # the whole set is checked once, with its message
    result: dict[str, dict[str, dict[str, float]]] = {}
    for column, values in slices.items():
        keys = np.asarray(values).astype(str)
        if len(keys) != len(y):
            raise MLOpsConfigError(f"slice {column!r} has {len(keys)} values for {len(y)} rows")
        result[column] = {}
        for value in sorted(set(keys)):
            mask = keys == value
            if mask.sum() >= min_rows:
                result[column][value] = _slice_metrics(task, y[mask], p[mask], threshold)
    return result


def _slice_metrics(
    task: str, labels: np.ndarray, predictions: np.ndarray, threshold: float
) -> dict[str, float]:
    if task == "multiclass":  # a slice may lack classes: macro F1 over what it has, as scikit-learn
        return multiclass_metrics(labels, predictions)
    return task_metrics(task, labels, predictions, threshold)


#: Per task: (the gap's name, the per-slice metric it is taken over).
_GAPS = {
    "binary": (("tpr", "recall"), ("fpr", "fpr")),
    "multiclass": (("accuracy", "accuracy"),),
    "regression": (("mae", "mae"),),
}


def fairness_gaps(
    sliced: Mapping[str, Mapping[str, Mapping[str, float]]], task: str = "binary"
) -> dict[str, dict[str, Any]]:
    """Per slice column: the largest gap between its slices (binary: TPR and FPR; multiclass:
    accuracy; regression: MAE) and which slices (lowest, highest)."""
    gaps: dict[str, dict[str, Any]] = {}
    for column, by_value in sliced.items():
        gaps[column] = {}
        for name, rate in _GAPS[task]:
            known = {v: m[rate] for v, m in by_value.items() if not math.isnan(m[rate])}
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
    task: str = "binary",
) -> dict[str, float]:
    """Mean loss of the task's primary metric (AUC, macro F1, RMSE: as a drop, higher = more
    important) when one feature's column is shuffled (``score(frame) -> predictions``)."""
    from airflow_mlops.models.tasks import lower_is_better, primary_metric

    metric = primary_metric(task)
    sign = -1.0 if lower_is_better(metric) else 1.0
    y = np.asarray(labels)

    def value(predictions: np.ndarray) -> float:
        return sign * task_metrics(task, y, predictions)[metric]

    base = value(score(frame))
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
            drops.append(base - value(score(shuffled)))
        importance[feature] = float(np.mean(drops))
    return dict(sorted(importance.items(), key=lambda item: -item[1]))
