"""HTML pages for the monitors' reports (no Airflow import): one self-contained page each, with plots.

Drift: each feature's score against its threshold, the cumulative distributions of the numeric
features that moved most (from the profiles' percentiles), the frequencies of the categorical ones,
and the distribution of predicted probabilities. Performance: the metrics per served version and
the calibration curve of the labelled predictions.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..evaluation.report import html_page, html_table, png_uri  # noqa: TID252
from .statistics import PERCENTILES

PLOTTED_FEATURES = 6


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _score_plot(columns: list[Mapping[str, Any]]) -> str:
    plt = pyplot()
    ordered = sorted(columns, key=lambda c: c["value"], reverse=True)
    figure, axis = plt.subplots(figsize=(max(5.0, 0.35 * len(ordered)), 3.5))
    positions = np.arange(len(ordered))
    axis.bar(
        positions,
        [c["value"] for c in ordered],
        color=["#d93025" if c["drifted"] else "#1a73e8" for c in ordered],
    )
    axis.scatter(
        positions, [c["threshold"] for c in ordered], marker="_", s=200, color="black", label="threshold"
    )
    axis.set_xticks(positions, [f"{c['column']} ({c['metric']})" for c in ordered], rotation=70, fontsize=7)
    axis.set(ylabel="PSI / Jensen-Shannon", title="Drift per feature (red: over its threshold)")
    axis.legend(fontsize=8)
    return png_uri(figure)


def _cdf_plot(column: str, reference: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(4.2, 3.2))
    for name, entry in (("reference", reference), ("current", current)):
        if entry.get("percentiles"):
            axis.plot(entry["percentiles"], PERCENTILES, label=name)
    axis.set(xlabel=column, ylabel="cumulative share", title=column)
    axis.legend(fontsize=8)
    return png_uri(figure)


def _frequency_plot(column: str, reference: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    plt = pyplot()
    ref, cur = reference.get("frequencies", {}), current.get("frequencies", {})
    ref_total, cur_total = max(sum(ref.values()), 1), max(sum(cur.values()), 1)
    values = sorted(
        set(ref) | set(cur), key=lambda v: -(ref.get(v, 0) / ref_total + cur.get(v, 0) / cur_total)
    )[:15]
    figure, axis = plt.subplots(figsize=(max(4.2, 0.4 * len(values)), 3.2))
    positions = np.arange(len(values))
    axis.bar(positions - 0.2, [ref.get(v, 0) / ref_total for v in values], width=0.4, label="reference")
    axis.bar(positions + 0.2, [cur.get(v, 0) / cur_total for v in values], width=0.4, label="current")
    axis.set_xticks(positions, values, rotation=60, fontsize=7)
    axis.set(ylabel="share of rows", title=column)
    axis.legend(fontsize=8)
    return png_uri(figure)


def _quantile_plot(title: str, curves: Mapping[str, list[float]]) -> str:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(4.2, 3.2))
    for name, quantiles in curves.items():
        axis.plot(quantiles, np.linspace(0, 1, len(quantiles)), label=name)
    axis.set(xlabel="predicted probability of a delay", ylabel="cumulative share", title=title)
    axis.legend(fontsize=8)
    return png_uri(figure)


def render_drift_html(report: Mapping[str, Any], title: str) -> str:
    """The drift report as a page: summary, per-feature table and plots."""
    window = report.get("window", {})
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{report['current_rows']} served predictions of {html.escape(str(report.get('endpoint', '')))} "
        f"from {html.escape(str(window.get('start', '')))} to {html.escape(str(window.get('end', '')))} against "
        f"{report['reference_rows']} reference rows ({html.escape(str(report.get('reference', '')))}).</p>",
        f"<h2>{'DRIFT' if report.get('breached') else 'No drift'}: score {report['score']:.4f}, "
        f"{len(report['drifted'])} feature(s) over their threshold</h2>",
    ]
    if report.get("reasons"):
        parts.append("<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in report["reasons"]) + "</ul>")
    rows = [
        [
            c["column"],
            c["kind"],
            c["metric"],
            c["value"],
            c["threshold"],
            "DRIFT" if c["drifted"] else "",
            "" if c.get("ks") is None else c["ks"],
            ", ".join(c.get("new_categories", [])[:5]),
        ]
        for c in sorted(report["columns"], key=lambda c: c["value"], reverse=True)
    ]
    parts.append(
        html_table(rows, ["feature", "kind", "metric", "value", "threshold", "", "KS", "new categories"])
    )
    if report["columns"]:
        parts.append(f"<h2>Scores</h2><img alt='scores' src='{_score_plot(report['columns'])}'>")
    profiles = report.get("profiles", {})
    reference, current = profiles.get("reference", {}), profiles.get("current", {})
    moved = [
        c
        for c in sorted(report["columns"], key=lambda c: c["value"], reverse=True)
        if c["column"] in reference and c["column"] in current
    ][:PLOTTED_FEATURES]
    if moved:
        parts.append("<h2>Features that moved most</h2>")
    for entry in moved:
        name = entry["column"]
        plot = _cdf_plot if entry["kind"] == "numeric" else _frequency_plot
        parts.append(f"<img alt='{html.escape(name)}' src='{plot(name, reference[name], current[name])}'>")
    predictions = report.get("prediction_drift")
    if predictions:
        parts += [
            f"<h2>Predictions: PSI {predictions['psi']:.4f}, KS {predictions['ks']:.4f}</h2>",
            f"<p>mean predicted probability {predictions['reference_mean']:.4f} on the reference, "
            f"{predictions['current_mean']:.4f} served</p>",
            f"<img alt='predictions' src='{_quantile_plot('Predicted probabilities', predictions['quantiles'])}'>",
        ]
    attributions = report.get("attribution_drift")
    if attributions:
        parts += [
            f"<h2>Feature attributions: {len(attributions['drifted'])} feature(s) drifted, largest share "
            f"change {attributions['score']:.4f}</h2>",
            f"<p>Mean absolute attribution per feature on {attributions['reference_rows']} reference and "
            f"{attributions['served_rows']} served rows; a feature drifts when its share moves by at least "
            f"{attributions['share_threshold']} and the PSI of its magnitude reaches {attributions['psi_threshold']}.</p>",
            html_table(
                [
                    [
                        c["column"],
                        c["reference_mean_abs"],
                        c["served_mean_abs"],
                        c["reference_share"],
                        c["served_share"],
                        c["share_change"],
                        c["psi"],
                        "DRIFT" if c["drifted"] else "",
                    ]
                    for c in attributions["columns"]
                ],
                [
                    "feature",
                    "mean |attr| (reference)",
                    "mean |attr| (served)",
                    "share (reference)",
                    "share (served)",
                    "change",
                    "PSI",
                    "",
                ],
            ),
        ]
    return html_page(title, parts)


def render_performance_html(report: Mapping[str, Any], title: str) -> str:
    """The performance report as a page: the task's metrics overall and per served version; the
    calibration of a binary model."""
    from ..models.tasks import metric_names  # noqa: TID252

    keys = [*metric_names(report.get("task", "binary")), "rows"]
    window = report.get("window", {})
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{report['labelled']} labelled predictions of {html.escape(str(report.get('endpoint', '')))} from "
        f"{html.escape(str(window.get('start', '')))} to {html.escape(str(window.get('end', '')))}; "
        f"{report['unlabeled_predictions']} predictions without a label yet, {report['unmatched_labels']} labels "
        "without a prediction.</p>",
        f"<h2>{'BREACHED' if report.get('breached') else 'Within thresholds'}</h2>",
    ]
    if report.get("reasons"):
        parts.append("<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in report["reasons"]) + "</ul>")
    versions = report.get("versions", {})
    parts.append(
        html_table(
            [[k, report["overall"].get(k), *[versions[v].get(k) for v in versions]] for k in keys],
            ["metric", "all", *[f"version {v}" for v in versions]],
        )
    )
    curve = report.get("calibration") or []
    if curve:
        plt = pyplot()
        figure, axis = plt.subplots(figsize=(4.2, 3.6))
        axis.plot([b["mean_probability"] for b in curve], [b["observed_rate"] for b in curve], marker="o")
        axis.plot([0, 1], [0, 1], linestyle=":", color="grey")
        axis.set(
            xlabel="mean predicted probability", ylabel="observed delay rate", title="Calibration (served)"
        )
        parts.append(f"<h2>Calibration</h2><img alt='calibration' src='{png_uri(figure)}'>")
    return html_page(title, parts)


def render_experiment_html(report: Mapping[str, Any], title: str) -> str:
    """The experiment report as a page: the decision, each variant's estimate with its interval
    (a plot and a table), each challenger against the control, and the gate when there is one."""
    window, variants = report.get("window", {}), report.get("variants", {})
    level = f"{report.get('confidence', 0.95):.0%}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{report.get('outcomes')} predictions with an outcome ({html.escape(str(report.get('outcome')))}: "
        f"{html.escape(str(report.get('source')))}) from {html.escape(str(window.get('start', '')))} to "
        f"{html.escape(str(window.get('end', '')))}; {report.get('without_outcome')} without one yet. Metric "
        f"{html.escape(str(report.get('metric')))}, method {html.escape(str(report.get('method')))}, "
        f"{level} intervals, control {html.escape(str(report.get('control')))}.</p>",
        f"<h2>{html.escape(str(report.get('decision', '')))}</h2>",
        html_table(
            [
                [
                    v,
                    e["samples"],
                    e["value"],
                    e["lower"],
                    e["upper"],
                    ", ".join(report.get("versions", {}).get(v, [])),
                ]
                for v, e in variants.items()
            ],
            ["variant", "samples", str(report.get("metric")), f"{level} lower", f"{level} upper", "versions"],
        ),
    ]
    if variants:
        parts.append(interval_plot(variants, f"{report.get('metric')} ({level} interval)"))
    comparisons = report.get("comparisons", {})
    parts.append(
        html_table(
            [
                [
                    c,
                    v["difference"],
                    v["lower"],
                    v["upper"],
                    v["probability_better"],
                    v["required_samples"],
                    v["verdict"],
                ]
                for c, v in comparisons.items()
            ],
            ["challenger", "difference", "lower", "upper", "P(better)", "samples needed", "verdict"],
        )
    )
    gate = report.get("gate")
    if gate:
        parts.append(f"<h2>Gate: {'passed' if gate['passed'] else 'FAILED'}</h2>")
        parts.append(
            html_table(
                [[r["rule"], r["passed"], r["detail"]] for r in gate["rules"]], ["rule", "passed", "detail"]
            )
        )
    return html_page(title, parts)


def interval_plot(estimates: Mapping[str, Mapping[str, Any]], xlabel: str) -> str:
    """Each variant's estimate with its interval (``{variant: {"value", "lower", "upper"}}``), as an
    embedded PNG ``<img>``: the experiment report's and the Deployments page's picture."""
    plt = pyplot()
    names = list(estimates)
    figure, axis = plt.subplots(figsize=(5.0, 0.9 + 0.45 * len(names)))
    values = np.array([float(estimates[v]["value"]) for v in names])
    errors = np.array(
        [
            [values[i] - float(estimates[v]["lower"]) for i, v in enumerate(names)],
            [float(estimates[v]["upper"]) - values[i] for i, v in enumerate(names)],
        ]
    )
    axis.errorbar(values, range(len(names)), xerr=errors, fmt="o", capsize=4)
    axis.set_yticks(range(len(names)), names)
    axis.set_ylim(-0.6, len(names) - 0.4)
    axis.set(xlabel=xlabel, title="Per variant")
    figure.tight_layout()
    return f"<img alt='estimates per variant' src='{png_uri(figure)}'>"
