"""Task types: what a model's output means, which metrics judge it, and which way each is better.

=============  ==================================  =========================================
task           the network's output per row         prediction (after the task's link)
=============  ==================================  =========================================
binary         one logit                            P(label = 1), the sigmoid of the logit
multiclass     one logit per class (``k`` columns)  class probabilities, the softmax (``k``)
regression     one value                            the value itself
=============  ==================================  =========================================

Labels: ``binary`` 0 or 1; ``multiclass`` the class index ``0..k-1`` (the generic data module maps
class values to indices and saves the classes with the model); ``regression`` a finite number.
The metrics are computed in one place, :func:`airflow_mlops.evaluation.metrics.task_metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from airflow_mlops.exceptions import MLOpsConfigError

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")

#: The metrics each task's evaluation reports (``rows`` is reported too, for every task).
METRICS: dict[str, tuple[str, ...]] = {
    "binary": (
        "auc",
        "log_loss",
        "accuracy",
        "precision",
        "recall",
        "fpr",
        "calibration_error",
        "positive_rate",
        "predicted_positive_rate",
    ),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
#: The fairness gaps an evaluation reports per slice column: the largest difference between slices.
FAIRNESS_GAPS: dict[str, tuple[str, ...]] = {
    "binary": ("tpr_gap", "fpr_gap"),
    "multiclass": ("accuracy_gap",),
    "regression": ("mae_gap",),
}
#: The metric a training result, a tuning study and the logs lead with.
PRIMARY: dict[str, str] = {"binary": "auc", "multiclass": "macro_f1", "regression": "rmse"}
#: Metrics (of any task, and the fairness gaps) where a lower value is better.
LOWER_IS_BETTER = frozenset(
    {"log_loss", "calibration_error", "fpr", "rmse", "mae", "tpr_gap", "fpr_gap", "accuracy_gap", "mae_gap"}
)


def check_task(task: object, what: str = "task") -> Task:
    """``task`` if it is a known task type, else a ``MLOpsConfigError`` naming ``what`` and the choices."""
    if task not in TASKS:
        raise MLOpsConfigError(f"{what} must be one of {list(TASKS)}, got {task!r}")
    return cast(Task, task)


def metric_names(task: str) -> tuple[str, ...]:
    """The metrics an evaluation of ``task`` reports."""
    return METRICS[check_task(task)]


def primary_metric(task: str) -> str:
    """The metric a result leads with: AUC, macro F1 or RMSE."""
    return PRIMARY[check_task(task)]


def lower_is_better(metric: str) -> bool:
    """Whether a lower ``metric`` is better (log loss, RMSE, ...); the others are higher-is-better."""
    return metric in LOWER_IS_BETTER


def headline(metrics: Mapping[str, Any], task: str, split: str = "test") -> str:
    """``"rmse 3.2100 (baseline 9.8700)"``: the task's primary metric on ``split`` and the trivial
    model's, for a log line (``n/a`` where a value is missing)."""
    metric = primary_metric(task)

    def value(key: str) -> str:
        found = metrics.get(key)
        return f"{found:.4f}" if isinstance(found, int | float) else "n/a"

    return f"{metric} {value(f'{split}_{metric}')} (baseline {value(f'{split}_baseline_{metric}')})"
