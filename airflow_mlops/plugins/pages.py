"""The MLOps pages of the plugin: Models, Deployments and Data, rendered on the server as plain
HTML (a PNG chart, tables, links to the reports, action buttons that call the plugin's API with
the UI's session cookie). No Airflow import at module level beyond what ``api.py`` needs."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

NAV = (("models", "Models"), ("deployments", "Deployments"), ("data", "Data"))
SCRIPT = """
async function act(path, verb) {
  const why = prompt(verb + ": why? (kept in the version's history)");
  if (!why) return;
  const answer = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                    credentials: "same-origin", body: JSON.stringify({why: why})});
  const body = await answer.json();
  document.getElementById("outcome").textContent = answer.ok ? verb + " done by " + body.by : body.detail;
  if (answer.ok) setTimeout(() => location.reload(), 800);
}
// Buttons carry their API path and verb as data attributes, read as text: no name from the
// registry is ever part of a script.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-path]");
  if (button) act(button.dataset.path, button.dataset.verb);
});
"""


def cell(value: Any) -> str:
    """Escaped text; floats with four decimals."""
    return f"{value:.4f}" if isinstance(value, float) else html.escape("" if value is None else str(value))


def table(rows: Iterable[Sequence[str]], header: Sequence[str]) -> str:
    """A table of cells that are already HTML (escape with ``cell``)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def file_link(uri: str, label: str) -> str:
    """A link to a report in the lake, served by the plugin's ``/mlops/files`` route."""
    if not uri:
        return ""
    return f"<a href='/mlops/files?uri={html.escape(uri, quote=True)}'>{html.escape(label)}</a>"


def page(title: str, current: str, parts: Sequence[str], refresh_s: int | None = None) -> str:
    nav = " | ".join(
        f"<b>{label}</b>" if key == current else f"<a href='/mlops/{key}'>{label}</a>" for key, label in NAV
    )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:1.5em auto}table{border-collapse:collapse;"
        "margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "button{margin-right:4px}#outcome{color:#b06000;font-weight:bold}"
    )
    refresh = f"<meta http-equiv='refresh' content='{refresh_s}'>" if refresh_s else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'>{refresh}<title>{html.escape(title)}</title>"
        f"<style>{style}</style><script>{SCRIPT}</script></head><body><p>{nav}</p>"
        f"<h1>{html.escape(title)}</h1><p id='outcome'></p>{''.join(parts)}</body></html>"
    )


def line_chart(
    alt: str, title: str, xlabel: str, xs: Sequence[str], series: Mapping[str, Sequence[Any]]
) -> str:
    """Lines over ``xs`` (one per series; None is a gap), as an embedded PNG."""
    from airflow_mlops.evaluation.report import png_uri
    from airflow_mlops.monitoring.report import pyplot

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3))
    for label, values in series.items():
        if any(v is not None for v in values):
            axis.plot(list(xs), [float("nan") if v is None else v for v in values], marker="o", label=label)
    axis.set(xlabel=xlabel, title=title)
    axis.tick_params(axis="x", labelsize=8)
    axis.legend(fontsize=8)
    return f"<img alt='{html.escape(alt)}' src='{png_uri(figure)}'>"


def metric_chart(name: str, points: Sequence[tuple[str, Mapping[str, float]]]) -> str:
    """Held-out AUC (and calibration error) per version: the continuous-training runs at a glance."""
    return line_chart(
        f"{name} metrics per version",
        f"{name}: held-out metrics per version",
        "version",
        [v for v, _ in points],
        {m: [p.get(m) for _, p in points] for m in ("auc", "calibration_error")},
    )


def button(path: str, verb: str, label: str, action: str = "") -> str:
    """A button that calls the plugin's API (``act`` in ``SCRIPT``); ``path`` is URL-quoted by the
    caller and escaped here for its attribute."""
    data = f" data-action='{html.escape(action, quote=True)}'" if action else ""
    return (
        f"<button{data} data-path='{html.escape(path, quote=True)}' data-verb='{html.escape(verb, quote=True)}'>"
        f"{html.escape(label)}</button>"
    )


def model_path(name: str) -> str:
    """The API path of a registered model, its name URL-quoted."""
    return f"/mlops/api/models/{quote(name, safe='')}"


def actions(name: str, version: Mapping[str, Any]) -> str:
    buttons = {"candidate": ("approve", "reject"), "approved": ("promote",)}.get(version["state"], ())
    base = f"{model_path(name)}/versions/{quote(str(version['version']), safe='')}"
    return "".join(button(f"{base}/{verb}", verb, verb, action=verb) for verb in buttons)


def served_by(serving: Mapping[str, Any]) -> dict[tuple[str, str], list[str]]:
    """``(model, version)`` -> the ``endpoint/variant`` names that serve it (the server's view)."""
    found: dict[tuple[str, str], list[str]] = {}
    for endpoint, deployment in serving.get("deployments", {}).items():
        for variant, spec in deployment.get("variants", {}).items():
            found.setdefault((str(spec.get("name")), str(spec.get("version"))), []).append(
                f"{endpoint}/{variant}"
            )
    return found


def models_page(
    models: Sequence[Mapping[str, Any]],
    evaluations: Mapping[str, Mapping[str, Mapping[str, Any]]],
    serving: Mapping[str, Any] | None = None,
) -> str:
    """Per model: the metric chart, the versions with states, aliases (the registry's view) and
    the endpoints serving them (the server's view) and actions, champion vs challenger per slice.
    ``evaluations`` is model -> version -> evaluation report; ``serving`` the ``/api/deployments``
    answer."""
    serving = serving or {}
    served = served_by(serving)
    parts = []
    if serving.get("error"):
        parts.append(f"<p>The model server did not answer: {cell(serving['error'])}</p>")
    for model in models:
        name = model["name"]
        evaluations_of = evaluations.get(name, {})
        parts.append(f"<h2>{html.escape(name)}</h2>")
        points = [
            (v["version"], (evaluations_of.get(v["version"]) or {}).get("overall", {}))
            for v in model["versions"]
        ]
        if any(metrics for _, metrics in points):
            parts.append(metric_chart(name, points))
        rows = []
        for version in reversed(model["versions"]):
            overall = (evaluations_of.get(version["version"]) or {}).get("overall", {})
            rows.append(
                [
                    cell(version["version"]),
                    cell(version["state"]),
                    cell(", ".join(version["aliases"])),
                    cell(", ".join(served.get((name, str(version["version"])), []))),
                    cell(overall.get("auc")),
                    cell(version["by"]),
                    cell(version["why"]),
                    file_link(version["evaluation_report"].replace(".json", ".html"), "evaluation")
                    + " "
                    + file_link(version.get("model_card", ""), "model card"),
                    actions(name, version),
                ]
            )
        parts.append(
            table(
                rows, ["version", "state", "aliases", "served by", "AUC", "by", "why", "reports", "actions"]
            )
        )
        champion = next((v for v in model["versions"] if "champion" in v["aliases"]), None)
        newest = model["versions"][-1] if model["versions"] else None
        report: Mapping[str, Any] = evaluations_of.get(newest["version"], {}) if newest else {}
        if newest and report.get("champion") and newest is not champion:
            parts.append(f"<h3>Version {html.escape(newest['version'])} against the champion, per slice</h3>")
            for column, by_value in report["slices"].items():
                theirs = report["champion"]["slices"].get(column, {})
                parts.append(
                    table(
                        [
                            [
                                cell(value),
                                cell(_count(metrics.get("rows"))),
                                cell(metrics.get("auc")),
                                cell(theirs.get(value, {}).get("auc")),
                            ]
                            for value, metrics in sorted(by_value.items())
                        ],
                        [column, "rows", "AUC (this version)", "AUC (champion)"],
                    )
                )
        parts.append(
            f"<p>{button(f'{model_path(name)}/rollback', 'roll back', 'roll back the champion')}</p>"
        )
    return page("Models", "models", parts or ["<p>No registered model yet.</p>"])


def deployments_page(
    serving: Mapping[str, Any], experiments: Mapping[str, tuple[Mapping[str, Any], str]] | None = None
) -> str:
    """Each endpoint's policy and variants (the server's view, with the registry's: a variant that
    follows an alias shows the version the alias names now), with request volume, error rate and
    latency per variant, and the newest experiment analysis of the endpoint; ``serving`` is the
    ``/api/deployments`` answer, ``experiments`` :func:`latest_experiments`."""
    experiments = experiments or {}
    parts = (
        [f"<p>The model server did not answer: {cell(serving['error'])}</p>"] if serving.get("error") else []
    )
    for endpoint, deployment in serving.get("deployments", {}).items():
        policy = deployment.get("policy", {})
        parts.append(
            f"<h2>{html.escape(endpoint)}: {cell(policy.get('kind'))}</h2>"
            f"<p>{cell(json.dumps(policy))}; deployed by {cell(deployment.get('deployed_by'))}: "
            f"{cell(deployment.get('reason'))}</p>"
        )
        for problem in ("error", "follow_error"):
            if deployment.get(problem):
                parts.append(f"<p><strong>{cell(deployment[problem])}</strong></p>")
        variants = (serving.get("stats", {}).get(endpoint) or {}).get("variants", {})
        parts.append(
            table(
                [
                    [
                        cell(v),
                        cell(f"{s.get('name')} v{s.get('version')}"),
                        cell(registry_view(s)),
                        cell(variants.get(v, {}).get("requests")),
                        cell(variants.get(v, {}).get("error_rate")),
                        cell(variants.get(v, {}).get("p99_ms")),
                    ]
                    for v, s in deployment.get("variants", {}).items()
                ],
                ["variant", "served (server)", "registry", "requests", "error rate", "p99 ms"],
            )
        )
        if endpoint in experiments:
            parts.append(experiment_view(*experiments[endpoint]))
    parts.append(
        "<p><small>Live from the model server's admin API and the registry; this page reloads every "
        "15 s. A variant deployed by alias follows it: a promotion or rollback moves its traffic.</small></p>"
    )
    return page("Deployments", "deployments", parts or ["<p>Nothing deployed.</p>"], refresh_s=15)


def experiment_view(report: Mapping[str, Any], uri: str) -> str:
    """An experiment analysis (``ExperimentAnalysisOperator``'s report) on the Deployments page:
    the decision, each variant's estimate with its interval, each challenger against the control."""
    from airflow_mlops.monitoring.report import interval_plot

    window, variants = report.get("window", {}), report.get("variants", {})
    level = f"{float(report.get('confidence', 0.95)):.0%}"
    parts = [
        f"<h3>Experiment {cell(window.get('start'))} to {cell(window.get('end'))}: "
        f"{cell(report.get('decision'))}</h3>",
        f"<p>{cell(report.get('metric'))} from {cell(report.get('outcome'))}, {cell(report.get('method'))}, "
        f"{level} intervals; control {cell(report.get('control'))}; {cell(report.get('outcomes'))} "
        f"predictions with an outcome, {cell(report.get('without_outcome'))} without. "
        f"{file_link(uri, 'report')}</p>",
    ]
    if variants:
        parts.append(interval_plot(variants, f"{report.get('metric')} ({level} interval)"))
    parts.append(
        table(
            [
                [
                    cell(c),
                    cell(v.get("difference")),
                    f"[{cell(v.get('lower'))}, {cell(v.get('upper'))}]",
                    cell(v.get("probability_better")),
                    cell(v.get("required_samples")),
                    cell(v.get("verdict")),
                ]
                for c, v in report.get("comparisons", {}).items()
            ],
            ["challenger", "difference", f"{level} interval", "P(better)", "samples needed", "verdict"],
        )
    )
    return "".join(parts)


def latest_experiments(lake: Any) -> dict[str, tuple[dict[str, Any], str]]:
    """The newest experiment report per endpoint under ``<lake>/experiments/<endpoint>/<run>/``
    (local: by the file's time; an object store: by the run folder's name), with its HTML's URI."""
    from airflow_mlops.storage import uri_of

    if isinstance(lake, Path):
        found = sorted(lake.glob("experiments/*/*/experiment.json"), key=lambda p: p.stat().st_mtime)
    else:
        found = sorted(
            (
                p / "experiment.json"
                for p in _below(lake / "experiments", 2)
                if (p / "experiment.json").is_file()
            ),
            key=str,
        )
    latest = {}
    for path in found:  # oldest first: the newest of each endpoint stays
        report = _read(path)
        if report is not None:
            latest[path.parent.parent.name] = (report, uri_of(path.with_suffix(".html")))
    return latest


def registry_view(spec: Mapping[str, Any]) -> str:
    """What the registry says of a served variant: its alias's version now, and whether the server
    serves it yet; a variant deployed by version is pinned."""
    if not spec.get("alias"):
        return "pinned"
    now = spec.get("registry_version")
    if now is None:
        return f"{spec['alias']}: not found in the registry"
    if str(now) == str(spec.get("version")):
        return f"{spec['alias']} -> v{now}"
    return f"{spec['alias']} -> v{now} (not served yet)"


def data_summary(lake: Any) -> dict[str, Any]:
    """What the Data page and view show, as JSON (``GET /mlops/api/data``): ``validated`` and
    ``quarantined`` partitions (``table``, ``partition``, ``report``: the report's URI) and
    ``monitoring``, one row per monitoring window, newest first (``endpoint``, ``window_start``,
    ``drift_score``, ``drifted``, ``features``: each compared column's divergence, ``auc``,
    ``drift_report``, ``performance_report``). ``lake``: a
    local folder, or the lake in an object store (``ObjectStoragePath`` with the lake's
    connection; its folders are listed level by level)."""
    from airflow_mlops.storage import uri_of

    if isinstance(lake, Path):
        validated = sorted(lake.glob("validated/*/*.report.html"))
        quarantined = sorted(lake.glob("quarantine/*/*/*/report.html"))
        monitoring = sorted(lake.glob("monitoring/*/*/"), key=lambda p: p.stat().st_mtime, reverse=True)
    else:  # an object store keeps no folder times: run folders newest name first
        validated = sorted(
            (p for p in _below(lake / "validated", 2) if p.name.endswith(".report.html")), key=str
        )
        quarantined = sorted(
            (p / "report.html" for p in _below(lake / "quarantine", 3) if (p / "report.html").is_file()),
            key=str,
        )
        monitoring = sorted((p for p in _below(lake / "monitoring", 2) if p.is_dir()), key=str, reverse=True)
    windows = []
    for folder in monitoring:
        drift = _read(folder / "drift.json")
        performance = _read(folder / "performance.json")
        windows.append(
            {
                "endpoint": folder.parent.name,
                "run": folder.name,
                "window_start": (drift or performance or {}).get("window", {}).get("start"),
                "drift_score": drift.get("score") if drift else None,
                "drifted": list(drift.get("drifted", [])) if drift else [],
                "features": {
                    str(c["column"]): c.get("value")
                    for c in (drift or {}).get("columns", [])
                    if isinstance(c, dict) and "column" in c
                },
                "auc": (performance or {}).get("overall", {}).get("auc"),
                "drift_report": uri_of(folder / "drift.html") if drift else "",
                "performance_report": uri_of(folder / "performance.html") if performance else "",
            }
        )
    return {
        "validated": [
            {"table": p.parent.name, "partition": p.name.removesuffix(".report.html"), "report": uri_of(p)}
            for p in validated
        ],
        "quarantined": [
            {"table": p.parent.parent.parent.name, "partition": p.parent.parent.name, "report": uri_of(p)}
            for p in quarantined
        ],
        "monitoring": windows,
    }


def data_page(summary: Mapping[str, Any]) -> str:
    """The Data page from :func:`data_summary`: validation reports (passed and quarantined
    partitions) and the monitors' reports, newest first, with drift and served AUC per window."""
    parts = [
        "<h2>Validated partitions</h2>",
        table(
            [
                [cell(p["table"]), cell(p["partition"]), file_link(p["report"], "report")]
                for p in summary["validated"]
            ],
            ["table", "partition", ""],
        ),
        "<h2>Quarantined partitions</h2>",
        table(
            [
                [cell(p["table"]), cell(p["partition"]), file_link(p["report"], "report")]
                for p in summary["quarantined"]
            ],
            ["table", "partition", ""],
        ),
        "<h2>Drift and performance</h2>",
    ]
    rows = [
        [
            cell(w["endpoint"]),
            cell(w["window_start"]),
            cell(w["drift_score"]),
            cell(", ".join(w["drifted"])),
            cell(w["auc"]),
            file_link(w["drift_report"], "drift"),
            file_link(w["performance_report"], "performance"),
        ]
        for w in summary["monitoring"]
    ]
    by_window = sorted(
        (w for w in summary["monitoring"] if w["window_start"]), key=lambda w: w["window_start"]
    )
    if by_window:
        starts = [str(w["window_start"]) for w in by_window]
        # Windows within one day (a replayed month, a demo) are told apart by their time.
        windows = (
            [s[:10] for s in starts]
            if len({s[:10] for s in starts}) == len(starts)
            else [s[5:16].replace("T", " ") for s in starts]
        )
        parts.append(
            line_chart(
                "drift score per window",
                "Drift score per monitoring window",
                "window start",
                windows,
                {"drift score": [_number(w["drift_score"]) for w in by_window]},
            )
        )
        parts.append(
            line_chart(
                "served AUC per window",
                "AUC of the served model per window",
                "window start",
                windows,
                {"AUC": [_number(w["auc"]) for w in by_window]},
            )
        )
    parts.append(table(rows, ["endpoint", "window start", "drift score", "drifted", "AUC", "", ""]))
    return page("Data", "data", parts)


def _count(value: Any) -> Any:
    """Row counts come back from JSON as floats; show them as whole numbers."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _below(folder: Any, depth: int) -> list[Any]:
    """What lies ``depth`` levels below ``folder`` (an object store path), listing folder by folder
    (afresh: the API server lives long, and s3fs would answer from listings cached before)."""
    folder.fs.invalidate_cache()
    level = [folder] if folder.is_dir() else []
    for step in range(depth):
        level = [
            child for parent in level for child in parent.iterdir() if step == depth - 1 or child.is_dir()
        ]
    return level


def _read(path: Any) -> dict[str, Any] | None:
    """A report (None when there is none); one that does not parse is shown as unreadable, with
    the reason, rather than taking the whole page down or vanishing from it."""
    from airflow_mlops.evaluation.report import loads
    from airflow_mlops.storage import uri_of

    if not path.is_file():
        return None
    try:
        report = loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        reason = f"the report {uri_of(path)} cannot be read: {error}"
        log.warning("%s", reason)
        return {"decision": reason, "unreadable": reason}
    if not isinstance(report, dict):
        return {"decision": f"the report {uri_of(path)} is not a JSON object"}
    return report
