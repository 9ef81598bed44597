"""The Deployments page shows each endpoint's newest experiment analysis from the lake."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from airflow_mlops.evaluation.experiment import Sample, analyze
from airflow_mlops.plugins.pages import deployments_page, latest_experiments


def write_report(lake: Path, endpoint: str, run: str, decision_rate: float, mtime: float) -> None:
    rng = np.random.default_rng(0)
    analysis = analyze(
        {
            "a": Sample((rng.random(2000) < 0.2).astype("float64")),
            "b": Sample((rng.random(2000) < decision_rate).astype("float64")),
        },
        control="a",
        min_effect=0.05,
    )
    folder = lake / "experiments" / endpoint / run
    folder.mkdir(parents=True)
    report = {**analysis, "window": {"start": run, "end": "later"}, "outcome": "feedback", "outcomes": 4000}
    (folder / "experiment.json").write_text(json.dumps(report))
    (folder / "experiment.html").write_text("<p>report</p>")
    os.utime(folder / "experiment.json", (mtime, mtime))


def test_the_newest_analysis_of_a_served_endpoint_is_shown_with_its_intervals(tmp_path: Path) -> None:
    write_report(tmp_path, "flight_delay", "run-old", 0.2, 1_000)
    write_report(tmp_path, "flight_delay", "run-new", 0.3, 2_000)
    write_report(tmp_path, "retired", "run-1", 0.2, 3_000)
    found = latest_experiments(tmp_path)
    assert set(found) == {"flight_delay", "retired"}
    report, uri = found["flight_delay"]
    assert report["window"]["start"] == "run-new" and uri.endswith("run-new/experiment.html")
    serving = {
        "deployments": {
            "flight_delay": {
                "policy": {"kind": "ab", "weights": {"a": 1, "b": 1}},
                "variants": {"a": {"name": "m", "version": "1"}, "b": {"name": "m", "version": "2"}},
            }
        },
        "stats": {},
    }
    page = deployments_page(serving, found)
    assert "Experiment run-new to later: b beats a" in page
    assert "<img alt='estimates per variant' src='data:image/png;base64," in page
    assert "run-new/experiment.html" in page and "challenger" in page and "run-old" not in page
    assert "retired" not in page  # not deployed: not on the page
    assert "Experiment" not in deployments_page(serving, {})
