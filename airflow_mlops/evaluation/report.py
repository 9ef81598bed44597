"""An evaluation of one model (and the champion, on the same rows) and its HTML page with plots.

No Airflow import. ``evaluate`` returns a JSON-ready dict of the task's metrics (see
:mod:`airflow_mlops.models.tasks`); ``render_html`` turns it into one self-contained page (PNG plots
embedded): for a binary model ROC and calibration curves of challenger and champion; for every
task per-slice bars of its primary metric, fairness gaps, feature importance and the gate's rules.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.models.tasks import FAIRNESS_GAPS, METRICS, metric_names, primary_metric

from .metrics import calibration_curve, fairness_gaps, permutation_importance, sliced_metrics, task_metrics

ROC_POINTS = 200
#: The per-slice tables' columns (metric, header) by task.
SLICE_COLUMNS = {
    "binary": (("auc", "AUC"), ("recall", "TPR"), ("fpr", "FPR"), ("calibration_error", "ECE")),
    "multiclass": (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("log_loss", "log loss")),
    "regression": (("rmse", "RMSE"), ("mae", "MAE"), ("r2", "R²")),
}
#: Keys whose values are numbers; an undefined one (no positive prediction: no precision) is NaN in
#: memory and null in JSON (strict JSON: Airflow's API server refuses NaN in XCom, browsers too).
NUMBER_KEYS = {
    *(m for names in METRICS.values() for m in names),
    *(g for names in FAIRNESS_GAPS.values() for g in names),
    "rows",
    "observed",
    "bound",
    "mean_probability",
    "observed_rate",
}


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON null), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, np.generic):
        return finite(value.item())
    return value


def _restore(value: Any, key: str = "") -> Any:
    if value is None and key in NUMBER_KEYS:
        return math.nan
    if isinstance(value, dict):
        return {k: _restore(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, key) for v in value]
    return value


def dumps(report: Mapping[str, Any]) -> str:
    """Strict JSON of a report (undefined metrics as null)."""
    import json

    return json.dumps(finite(report), indent=2, allow_nan=False)


def loads(text: str) -> dict[str, Any]:
    """A report read back, undefined metrics as NaN again."""
    import json

    restored: dict[str, Any] = _restore(json.loads(text))
    return restored


def roc_points(labels: Any, probabilities: Any) -> dict[str, list[float]]:
    """At most ``ROC_POINTS`` points of the ROC curve (for the plot)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(probabilities))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).astype(int))
    return {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist()}


def label_values(frame: Any, label: str, task: str, classes: Sequence[str] = ()) -> np.ndarray:
    """The label column as the task's metrics take it: multiclass values as indices of ``classes``
    (a value outside them is an error naming it), the others as numbers."""
    column = frame[label]
    if task != "multiclass":
        return column.to_numpy()
    index = {str(c): i for i, c in enumerate(classes)}
    values = column.astype(str)
    unknown = sorted(set(values) - set(index))
    if unknown:
        raise MLOpsConfigError(
            f"evaluation: label {label!r} has values {unknown[:5]} that are not classes of the model ({list(classes)})"
        )
    return values.map(index).to_numpy(dtype="int64")


def evaluate(
    probabilities: np.ndarray,
    frame: Any,
    label: str,
    *,
    slices: Sequence[str],
    threshold: float = 0.5,
    min_slice_rows: int = 1,
    task: str = "binary",
    classes: Sequence[str] = (),
) -> dict[str, Any]:
    """The task's metrics overall and per slice and the fairness gaps of one model's predictions;
    for a binary model also the calibration and ROC curves."""
    missing = [c for c in (label, *slices) if c not in frame.columns]
    if missing:
        raise MLOpsConfigError(
            f"evaluation: columns {missing} are not in the evaluation data (columns: {list(frame.columns)})"
        )
    y = label_values(frame, label, task, classes)
    sliced = sliced_metrics(
        {c: frame[c].to_numpy() for c in slices}, y, probabilities, threshold, min_slice_rows, task
    )
    report: dict[str, Any] = {
        "task": task,
        "overall": task_metrics(task, y, probabilities, threshold),
        "slices": sliced,
        "fairness": fairness_gaps(sliced, task),
        "threshold": threshold,
    }
    if task == "binary":
        report["calibration"] = calibration_curve(y, probabilities)
        report["roc"] = roc_points(y, probabilities)
    if task == "multiclass":
        report["classes"] = list(classes)
    return report


def importance(
    score: Callable[[Any], np.ndarray],
    frame: Any,
    label: str,
    features: Sequence[str],
    *,
    max_rows: int = 5000,
    seed: int = 0,
    task: str = "binary",
    classes: Sequence[str] = (),
) -> dict[str, float]:
    """Permutation importance (drop in the task's primary metric) on at most ``max_rows`` rows."""
    sample = frame.sample(n=min(max_rows, len(frame)), random_state=seed) if len(frame) > max_rows else frame
    labels = label_values(sample, label, task, classes)
    return permutation_importance(score, sample, features, labels, seed=seed, task=task)


def png_uri(figure: Any) -> str:
    """A matplotlib figure as an embeddable PNG data URI (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plots(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = {"challenger": report}
    if report.get("champion"):
        models["champion"] = report["champion"]
    plots = _binary_plots(models) if report.get("task", "binary") == "binary" else []
    metric = primary_metric(report.get("task", "binary"))
    for column, by_value in report["slices"].items():
        values = sorted(by_value)
        figure, axis = plt.subplots(figsize=(max(4.5, 0.45 * len(values)), 3.5))
        width = 0.8 / len(models)
        for k, (name, evaluation) in enumerate(models.items()):
            theirs = evaluation["slices"].get(column, {})
            axis.bar(
                np.arange(len(values)) + k * width,
                [theirs.get(v, {}).get(metric, math.nan) for v in values],
                width=width,
                label=name,
            )
        axis.set_xticks(
            np.arange(len(values)) + width * (len(models) - 1) / 2, values, rotation=60, fontsize=8
        )
        axis.set(ylabel=metric, title=f"{metric} per {column}")
        if metric == "auc":
            axis.set(ylabel="ROC AUC", title=f"AUC per {column}", ylim=(0.4, 1.0))
        axis.legend(fontsize=8)
        plots.append((f"{'AUC' if metric == 'auc' else metric} per {column}", png_uri(figure)))
    return plots


def _binary_plots(models: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    plots = []
    figure, axis = plt.subplots(figsize=(4.5, 4))
    for name, evaluation in models.items():
        axis.plot(
            evaluation["roc"]["fpr"],
            evaluation["roc"]["tpr"],
            label=f"{name} (AUC {evaluation['overall']['auc']:.3f})",
        )
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axis.legend(loc="lower right")
    plots.append(("ROC curve", png_uri(figure)))
    figure, axis = plt.subplots(figsize=(4.5, 4))
    for name, evaluation in models.items():
        curve = evaluation["calibration"]
        axis.plot(
            [b["mean_probability"] for b in curve],
            [b["observed_rate"] for b in curve],
            marker="o",
            label=f"{name} (ECE {evaluation['overall']['calibration_error']:.3f})",
        )
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axis.set(xlabel="mean predicted probability", ylabel="observed delay rate", title="Calibration")
    axis.legend(loc="upper left")
    plots.append(("Calibration", png_uri(figure)))
    return plots


def html_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """An HTML table; floats with four decimals, everything escaped."""

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: Mapping[str, Any], title: str) -> str:
    """One self-contained page for people: the numbers, the gate's rules and the plots."""
    champion = report.get("champion") or {}
    task = report.get("task", "binary")
    keys = [*metric_names(task), "rows"]
    overall = [[k, report["overall"][k], champion.get("overall", {}).get(k, "")] for k in keys]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(str(report.get('model_uri', '')))}, a {html.escape(task)} model, on "
        f"{int(report['overall']['rows'])} held-out rows"
        + (f"; threshold {report['threshold']}" if task == "binary" else "")
        + "</p>",
        "<h2>Overall</h2>",
        html_table(overall, ["metric", "challenger", "champion"]),
    ]
    if report.get("gate"):
        gate = report["gate"]
        parts += [
            f"<h2>Gate: {'PASSED' if gate['passed'] else 'FAILED'}</h2>",
            html_table(
                [[r["rule"], "pass" if r["passed"] else "FAIL", r["detail"]] for r in gate["rules"]],
                ["rule", "result", "numbers"],
            ),
        ]
    parts.append("<h2>Fairness gaps (largest difference between slices)</h2>")
    gaps = FAIRNESS_GAPS[task]
    header = ["slice"]
    for gap in gaps:
        header += [gap.replace("_", " "), "lowest / highest"]
    rows = []
    for column, found in report["fairness"].items():
        row: list[Any] = [column]
        for gap in gaps:
            row += [found.get(gap), " / ".join(found.get(gap.replace("_gap", "_slices"), []))]
        rows.append(row)
    parts.append(html_table(rows, header))
    if report.get("importance"):
        metric = primary_metric(task)
        parts += [
            f"<h2>Permutation importance (loss of {metric})</h2>",
            html_table(list(report["importance"].items()), ["feature", f"{metric} loss"]),
        ]
    for name, image in _plots(report):
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' src='{image}'>")
    columns = SLICE_COLUMNS[task]
    for column, by_value in report["slices"].items():
        rows = [[v, m["rows"], *(m[k] for k, _ in columns)] for v, m in by_value.items()]
        parts += [
            f"<h2>Per {html.escape(column)}</h2>",
            html_table(rows, [column, "rows", *(title for _, title in columns)]),
        ]
    return html_page(title, parts)


def html_page(title: str, parts: Sequence[str]) -> str:
    """One self-contained HTML page from already-escaped parts."""
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
