"""What the monitors compute, on rows (no Airflow import): feature drift, training/serving skew,
prediction drift, and model performance once labels arrive.

Drift and skew reuse the profiles of ``statistics.py``: both samples are profiled (percentiles,
frequencies), then compared per column (PSI and Kolmogorov-Smirnov for numeric columns,
Jensen-Shannon for categorical ones, new categories, missing columns). A stored reference profile
(the training set's, or a validated month's) can stand in for the reference rows.

Serving rows come from the model server's request log (``serving.requestlog``): each prediction
with its ``prediction_id``, the features the model saw (JSON) and the probability. Labels arrive
later as ``prediction_id, label`` rows; performance is measured on the predictions they match.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from airflow_mlops.exceptions import MonitoringError

from .statistics import (
    DEFAULT_JS_THRESHOLD,
    DEFAULT_PSI_THRESHOLD,
    compare_profiles,
    ks_distance,
    profile_frame,
    psi,
)


def drift_report(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    js_threshold: float = DEFAULT_JS_THRESHOLD,
    thresholds: Mapping[str, float] | None = None,
    keep_profiles: bool = False,
) -> dict[str, Any]:
    """Per-column drift of ``current`` (a DataFrame) from ``reference`` (a DataFrame or a stored profile).

    Returns ``{"reference_rows", "current_rows", "columns": [divergence...], "drifted": [column...],
    "score": the largest PSI or JS value}``; a column the current rows lack is reported as drifted
    (metric ``missing``), and categories the reference never saw are listed per column. With
    ``keep_profiles`` the compared columns' profiles are kept under ``"profiles"`` (for plots).
    """
    if len(current) == 0:
        raise MonitoringError("drift: the current sample has no rows (rule: compare at least one row)")
    reference_profile = (
        reference
        if isinstance(reference, Mapping)
        else profile_frame(
            reference if columns is None else reference[[c for c in columns if c in reference.columns]]
        )
    )
    if reference_profile["rows"] == 0:
        raise MonitoringError(
            "drift: the reference has no rows (rule: compare against a non-empty reference)"
        )
    selected = current if columns is None else current[[c for c in columns if c in current.columns]]
    current_profile = profile_frame(selected)
    divergences = compare_profiles(
        reference_profile,
        current_profile,
        columns=columns,
        psi_threshold=psi_threshold,
        js_threshold=js_threshold,
        thresholds=thresholds,
    )
    finite = [d.value for d in divergences if np.isfinite(d.value)]
    report = {
        "reference_rows": int(reference_profile["rows"]),
        "current_rows": len(current),
        "columns": [d.to_dict() for d in divergences],
        "drifted": [d.column for d in divergences if d.drifted],
        "score": max(finite, default=0.0),
    }
    if keep_profiles:
        compared = [d.column for d in divergences]
        report["profiles"] = {
            side: {c: profile["columns"][c] for c in compared if c in profile["columns"]}
            for side, profile in (("reference", reference_profile), ("current", current_profile))
        }
    return report


def window(log: Any, *, endpoint: str, start: Any, end: Any) -> Any:
    """The request log's predictions of ``endpoint`` made in ``[start, end)`` (timezone-aware times)."""
    import pandas as pd

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise MonitoringError(
                f"window: {name} {value.isoformat()} has no time zone (rule: give UTC times, "
                "e.g. 2013-03-01T00:00:00+00:00)"
            )
    if end <= start:
        raise MonitoringError(
            f"window: end {end.isoformat()} is not after start {start.isoformat()} (rule: start < end)"
        )
    if len(log) == 0:
        return log
    at = pd.to_datetime(log["at"], utc=True)
    return log[(log["endpoint"] == endpoint) & (at >= start) & (at < end)].reset_index(drop=True)


def serving_rows(log: Any) -> Any:
    """The request log's predictions as rows: the features the model saw as columns, plus
    ``prediction_id``, ``probability``, ``output`` (a multiclass model's answer), ``variant``,
    ``version`` and ``at``."""
    import pandas as pd

    if len(log) == 0:
        return pd.DataFrame(columns=["prediction_id", "probability"])
    try:
        features = pd.DataFrame.from_records([json.loads(text) for text in log["features"]])
    except (TypeError, ValueError) as err:
        raise MonitoringError(f"request log: a features value is not a JSON object ({err})") from err
    keep = [
        c for c in ("prediction_id", "probability", "output", "variant", "version", "at") if c in log.columns
    ]
    return pd.concat(
        [features.drop(columns=[c for c in keep if c in features.columns]), log[keep].reset_index(drop=True)],
        axis=1,
    )


def prediction_drift(reference: Any, current: Any) -> dict[str, Any]:
    """How far the distribution of predicted probabilities moved: PSI and KS over their percentiles."""
    ref, cur = np.asarray(reference, dtype="float64"), np.asarray(current, dtype="float64")
    if ref.size == 0 or cur.size == 0:
        raise MonitoringError(
            f"prediction drift needs predictions on both sides, got {ref.size} and {cur.size}"
        )
    grid = np.linspace(0.0, 1.0, 101)
    ref_q, cur_q = np.quantile(ref, grid), np.quantile(cur, grid)
    return {
        "psi": psi(ref_q, cur_q),
        "ks": ks_distance(ref_q, cur_q),
        "reference_mean": float(ref.mean()),
        "current_mean": float(cur.mean()),
    }


def join_labels(predictions: Any, labels: Any, *, label_column: str = "label", task: str = "binary") -> Any:
    """Predictions (``prediction_id``, ``probability``, ...) with their labels, joined by id.

    A label id that appears twice is an error (which label counts?); a label for an unknown
    prediction and a prediction without a label are counted in ``attrs["unmatched_labels"]`` and
    ``attrs["unlabeled_predictions"]``, not dropped silently.
    """
    for name, frame, needed in (
        ("predictions", predictions, ("prediction_id", "probability")),
        ("labels", labels, ("prediction_id", label_column)),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise MonitoringError(f"{name}: columns {missing} are missing (rule: {name} need {list(needed)})")
    duplicated = labels["prediction_id"][labels["prediction_id"].duplicated()].unique().tolist()
    if duplicated:
        raise MonitoringError(
            f"labels: prediction ids {duplicated[:5]} have more than one label "
            f"({len(duplicated)} in all; rule: one label per prediction)"
        )
    rule = {
        "binary": "a label is 0 or 1",
        "multiclass": "a label is one of the model's classes",
        "regression": "a label is a finite number",
    }[task]
    nulls = int(labels[label_column].isna().sum())
    if nulls:
        raise MonitoringError(
            f"labels: {label_column} is null for {nulls} prediction(s) (rule: {rule}; "
            "send a label once the outcome is known)"
        )
    _check_label_values(labels[label_column], label_column, task)
    joined = predictions.merge(labels[["prediction_id", label_column]], on="prediction_id", how="inner")
    joined.attrs["unmatched_labels"] = int(
        (~labels["prediction_id"].isin(predictions["prediction_id"])).sum()
    )
    joined.attrs["unlabeled_predictions"] = int(
        (~predictions["prediction_id"].isin(labels["prediction_id"])).sum()
    )
    return joined


def _check_label_values(values: Any, label_column: str, task: str) -> None:
    import numpy as np
    import pandas as pd

    if task == "multiclass":
        return  # class names: checked against the served model's classes in performance_report
    if task == "binary":
        found = set(values.unique().tolist())
        if not found <= {0, 1}:  # 0.0, 1.0, False and True compare equal to these
            raise MonitoringError(
                f"labels: {label_column} must be 0 or 1, got {sorted(map(str, found - {0, 1}))[:5]}"
            )
        return
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    if not np.isfinite(numbers).all():
        raise MonitoringError(
            f"labels: {label_column} must be finite numbers, got {values[~np.isfinite(numbers)].head(5).tolist()}"
        )


def performance_report(
    joined: Any, *, label_column: str = "label", threshold: float = 0.5, task: str = "binary"
) -> dict[str, Any]:
    """The task's metrics (see ``models.tasks``) of the labelled predictions: for a binary model
    AUC, log loss, accuracy, precision, recall and calibration error; for regression RMSE, MAE, R²
    (the request log's ``probability`` column holds the predicted value)."""
    from ..evaluation.metrics import task_metrics  # noqa: TID252

    if len(joined) == 0:
        raise MonitoringError(
            "performance: no prediction has a label yet (rule: at least one labelled prediction)"
        )
    if task == "multiclass":
        labels, predictions = class_probabilities(joined, label_column)
    else:
        labels = joined[label_column].to_numpy(dtype="float64")
        predictions = joined["probability"].to_numpy(dtype="float64")
    metrics = task_metrics(task, labels, predictions, threshold=threshold)
    return {
        **metrics,
        "labelled": len(joined),
        "unmatched_labels": joined.attrs.get("unmatched_labels", 0),
        "unlabeled_predictions": joined.attrs.get("unlabeled_predictions", 0),
    }


def class_probabilities(joined: Any, label_column: str) -> tuple[Any, Any]:
    """A multiclass model's labels as class indices and its served probabilities as a matrix, in
    the class order its answers have (the request log's ``output``)."""
    if "output" not in joined.columns or joined["output"].isna().any():
        missing = len(joined) if "output" not in joined.columns else int(joined["output"].isna().sum())
        raise MonitoringError(
            f"performance of a multiclass model: {missing} labelled prediction(s) have no class "
            "probabilities in the request log's output column (logged by a server before it kept them; "
            "rule: a window of predictions logged with their classes)"
        )
    answers = [json.loads(text)["probabilities"] for text in joined["output"]]
    classes = list(answers[0])
    if any(list(a) != classes for a in answers):
        raise MonitoringError(
            f"performance of a multiclass model: the window mixes answers over different classes "
            f"({classes} and others; rule: one set of classes per window, or judge per version)"
        )
    index = {c: i for i, c in enumerate(classes)}
    values = joined[label_column].astype(str)
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise MonitoringError(
            f"labels: {label_column} has {unknown[:5]}, not classes of the model {classes} "
            "(rule: a label is one of the model's classes)"
        )
    probabilities = np.array([[a[c] for c in classes] for a in answers], dtype="float64")
    return values.map(index).to_numpy(dtype="int64"), probabilities


def drift_breaches(
    report: Mapping[str, Any],
    predictions: Mapping[str, Any] | None,
    *,
    min_drifted: int,
    prediction_psi_threshold: float,
) -> list[str]:
    """Why a drift report breaches its thresholds (empty: it does not): at least ``min_drifted``
    features drifted, or the served predictions' PSI against the reference's exceeds its bound."""
    reasons = []
    if len(report["drifted"]) >= min_drifted:
        details = "; ".join(
            f"{c['column']} {c['metric']}={c['value']:.3f} > {c['threshold']}"
            for c in report["columns"]
            if c["drifted"]
        )
        reasons.append(
            f"{len(report['drifted'])} feature(s) drifted (at least {min_drifted} breach): {details}"
        )
    if predictions and predictions["psi"] > prediction_psi_threshold:
        reasons.append(f"predictions drifted: PSI {predictions['psi']:.3f} > {prediction_psi_threshold}")
    return reasons


def attribution_drift(
    reference: Any, served: Any, *, psi_threshold: float = 0.25, share_threshold: float = 0.1
) -> dict[str, Any]:
    """Feature-attribution drift: how much each feature moves the model's output on served rows
    against the reference (training) rows. ``reference`` and ``served`` are attributions, one row
    per scored row and one column per feature (``serving.explain.attribution_frame``).

    Per feature: the mean absolute attribution on each side, its share of all features' (the
    feature's importance), the change of that share, and the PSI of the absolute attributions.
    A feature drifts when its share moves by at least ``share_threshold`` and the PSI of its
    magnitudes reaches ``psi_threshold`` (shares add up to 1: when one feature's grows, the others'
    shrink with their own attributions unchanged, and the PSI tells those apart). ``score`` is
    the largest share change. A feature whose values stay put can still drift here: its
    importance moves with the other features it acts with.
    """
    import numpy as np

    from .statistics import PERCENTILES, psi

    missing = sorted(set(reference.columns) ^ set(served.columns))
    if missing:
        raise MonitoringError(
            f"attribution drift: features {missing} are attributed on one side only (rule: the "
            "reference and served rows are attributed by the same model)"
        )
    if len(reference) == 0 or len(served) == 0:
        raise MonitoringError(
            f"attribution drift: {len(reference)} reference and {len(served)} served rows attributed "
            "(rule: at least one on each side)"
        )
    magnitude = {"reference": reference.abs(), "served": served.abs()}
    means = {side: frame.mean() for side, frame in magnitude.items()}
    shares = {side: m / m.sum() if m.sum() > 0 else m * 0.0 for side, m in means.items()}
    columns = []
    for column in reference.columns:
        values = {side: frame[column].to_numpy(dtype="float64") for side, frame in magnitude.items()}
        value = psi(*(np.quantile(values[side], PERCENTILES) for side in ("reference", "served")))
        change = float(shares["served"][column] - shares["reference"][column])
        columns.append(
            {
                "column": column,
                "reference_mean_abs": float(means["reference"][column]),
                "served_mean_abs": float(means["served"][column]),
                "reference_share": float(shares["reference"][column]),
                "served_share": float(shares["served"][column]),
                "share_change": change,
                "psi": value,
                "drifted": abs(change) >= share_threshold and value >= psi_threshold,
            }
        )
    columns.sort(key=lambda c: -abs(c["share_change"]))
    return {
        "columns": columns,
        "drifted": [c["column"] for c in columns if c["drifted"]],
        "score": max(abs(c["share_change"]) for c in columns),
        "reference_rows": len(reference),
        "served_rows": len(served),
        "psi_threshold": psi_threshold,
        "share_threshold": share_threshold,
    }


def attribution_breaches(report: Mapping[str, Any]) -> list[str]:
    """Why an attribution drift report breaches (empty: it does not): the features that drifted,
    each with its share before and after and its PSI."""
    if not report["drifted"]:
        return []
    details = "; ".join(
        f"{c['column']} share {c['reference_share']:.3f} -> {c['served_share']:.3f}, psi={c['psi']:.3f}"
        for c in report["columns"]
        if c["drifted"]
    )
    return [f"attribution of {len(report['drifted'])} feature(s) drifted: {details}"]


def performance_breaches(
    overall: Mapping[str, Any],
    *,
    min_auc: float | None = None,
    max_calibration_error: float | None = None,
    bounds: Mapping[str, Mapping[str, float]] | None = None,
) -> list[str]:
    """Why served performance breaches its bounds (empty: it does not); a NaN or missing metric
    breaches. ``bounds`` is ``{metric: {"min": x} or {"max": x}}`` for any task's metric;
    ``min_auc`` and ``max_calibration_error`` are the binary shorthands."""
    rules: dict[str, dict[str, float]] = {k: dict(v) for k, v in (bounds or {}).items()}
    if min_auc is not None:
        rules.setdefault("auc", {})["min"] = min_auc
    if max_calibration_error is not None:
        rules.setdefault("calibration_error", {})["max"] = max_calibration_error
    reasons = []
    for metric, bound in rules.items():
        value = overall.get(metric, math.nan)
        if "min" in bound and not value >= bound["min"]:
            reasons.append(
                f"{metric} {value:.4f} < {bound['min']} on {overall['labelled']} labelled predictions"
            )
        if "max" in bound and not value <= bound["max"]:
            reasons.append(
                f"{metric} {value:.4f} > {bound['max']} on {overall['labelled']} labelled predictions"
            )
    return reasons


def check_bounds(bounds: Mapping[str, Any], task: str) -> None:
    """A ``MonitoringError`` for bounds on metrics the task does not have or of the wrong shape."""
    from ..models.tasks import metric_names  # noqa: TID252

    for metric, bound in bounds.items():
        if metric not in metric_names(task):
            raise MonitoringError(
                f"bounds: {metric!r} is not a metric of a {task} model (its metrics: {list(metric_names(task))})"
            )
        if (
            not isinstance(bound, Mapping)
            or not bound
            or set(bound) - {"min", "max"}
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bound.values())
        ):
            raise MonitoringError(
                f"bounds: {metric} must be {{'min': number}} and/or {{'max': number}}, got {bound!r}"
            )


def labels_by_prediction(served: Any, labels: Any, *, label_key: str, label_column: str, source: str) -> Any:
    """The labels as ``prediction_id`` -> label, keyed by the prediction id or by a feature the
    requests sent (then each key must be labelled once); ``source`` names the labels in errors."""
    for column in (label_key, label_column):
        if column not in labels.columns:
            raise MonitoringError(
                f"labels {source}: no column {column!r} (rule: labels have "
                f"{[label_key, label_column]}; columns: {list(labels.columns)})"
            )
    if label_key not in served.columns:
        raise MonitoringError(
            f"the requests carry no {label_key!r} (rule: label_key is prediction_id, a model input, or a field the deployment's log_fields keep)"
        )
    if label_key == "prediction_id":
        return labels
    duplicated = labels[label_key][labels[label_key].duplicated()].unique().tolist()
    if duplicated:
        raise MonitoringError(
            f"labels {source}: {label_key} values {duplicated[:5]} are labelled "
            f"more than once ({len(duplicated)} in all; rule: one label per key)"
        )
    keyed = served[["prediction_id", label_key]].merge(
        labels[[label_key, label_column]], on=label_key, how="inner"
    )
    return keyed[["prediction_id", label_column]]
