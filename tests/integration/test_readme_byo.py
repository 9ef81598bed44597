"""The README's "Bring your own model" example, extracted from the README and run: the network file
as written there, trained through the training runtime with the DAG's arguments, evaluated by
``EvaluateModelOperator`` and judged by the README's gate."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def section_blocks(title: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def call_arguments(source: str, function: str) -> dict[str, Any]:
    """The literal keyword arguments of the first call of ``function`` in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == function:
            values = {}
            for keyword in node.keywords:
                try:
                    values[keyword.arg] = ast.literal_eval(keyword.value)
                except ValueError:  # a template string or a name: not needed here
                    continue
            return values
    raise AssertionError(f"no {function}(...) in the README's example")


def synthetic_set(folder: Path, features: dict) -> str:
    """A training set with the README's columns: the label depends on every feature."""
    splits = {}
    for seed, split in enumerate(("train", "validation", "test")):
        rng = np.random.default_rng(seed)
        rows = 3000 if split == "train" else 1000
        frame = pd.DataFrame({c: rng.normal(0, 1, rows) for c in features["numeric"]})
        label = sum((i + 1) * 6.0 * frame[c] for i, c in enumerate(features["numeric"]))
        for i, column in enumerate(features["categorical"]):
            frame[column] = rng.choice([f"{column}_{k}" for k in range(4)], rows)
            label += frame[column].str[-1].astype(int) * (3.0 + i)
        frame[features["label"]] = label + rng.normal(0, 5, rows) + 10
        frame.loc[::23, features["numeric"][0]] = np.nan
        frame.to_parquet(folder / f"{split}.parquet")
        splits[split] = {"uri": (folder / f"{split}.parquet").as_uri()}
    (folder / "manifest.json").write_text(json.dumps({"splits": splits}))
    return str(folder / "manifest.json")


def test_the_readme_example_trains_evaluates_and_passes_its_gate(tmp_path: Path, monkeypatch) -> None:
    from airflow_mlops.evaluation.gate import evaluate_gate
    from airflow_mlops.evaluation.report import loads
    from airflow_mlops.operators.evaluate import EvaluateModelOperator, EvaluationGateOperator
    from airflow_mlops.training.runtime import run
    from airflow_mlops.training.spec import TrainingSpec

    network, dag, *_ = section_blocks("Bring your own model")
    train = call_arguments(dag, "LightningTrainOperator")
    module, _, _ = train["model"].partition(":")
    path = tmp_path / "code" / Path(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True)
    path.write_text(network)  # the file exactly as the README shows it
    monkeypatch.syspath_prepend(str(tmp_path / "code"))

    training_set = synthetic_set(tmp_path, train["features"])
    spec = TrainingSpec(
        model=train["model"],
        data=train["data"],
        training_set=training_set,
        output_dir=str(tmp_path / "model"),
        checkpoint_dir=str(tmp_path / "ckpt"),
        hyperparameters=train["hyperparameters"],
        features=train["features"],
        batch_size=train["batch_size"],
        trainer={"max_epochs": train["max_epochs"]},
    )
    spec.validate()
    result = run(spec)
    assert result is not None and result["metrics"]["test_rmse"] < result["metrics"]["test_baseline_rmse"] / 2

    evaluate = call_arguments(dag, "EvaluateModelOperator")
    summary = EvaluateModelOperator(
        task_id="evaluate",
        model_uri=result["model_uri"],
        training_set=training_set,
        report_dir=str(tmp_path / "report"),
        slices=evaluate["slices"],
        importance_rows=500,
        mlflow_conn_id=None,
    ).execute(SimpleNamespace())  # type: ignore[arg-type]
    assert set(summary["overall"]) >= {"rmse", "mae", "r2"} and summary["overall"]["r2"] > 0.8
    report = loads((tmp_path / "report" / "evaluation.json").read_text())
    assert report["task"] == "regression" and set(report["slices"]) == set(evaluate["slices"])
    assert set(report["fairness"]["carrier"]) >= {"mae_gap", "mae_slices"}
    assert "R²" in (tmp_path / "report" / "evaluation.html").read_text()

    gate = call_arguments(dag, "EvaluationGateOperator")["gate"]
    passed, results = evaluate_gate(gate, report, None)
    assert passed, results
    assert [r.rule for r in results][-1] == "mae_gap across carrier <= 20.0"
    outcome = EvaluationGateOperator(
        task_id="gate", report_uri=summary["report_uri"], gate=gate, mlflow_conn_id=None
    ).execute(SimpleNamespace())  # type: ignore[arg-type]
    assert outcome["passed"]
    assert sys.modules.get(module) is not None  # the README's file was the one trained


def test_the_second_reference_pipeline_trains_the_readmes_network() -> None:
    """dags/flights/arrival.py (flights_arrival_delay's network) is the README's file, line for line
    after the docstring."""
    network, *_ = section_blocks("Bring your own model")
    source = (README.parent / "dags" / "flights" / "arrival.py").read_text()
    assert ast.get_docstring(ast.parse(source)) and ast.get_docstring(ast.parse(network))
    body = source.split('"""\n', 2)[-1] if source.count('"""') >= 2 else source
    assert body.lstrip("\n") == network.split("\n", 1)[1].lstrip("\n")


def test_the_second_reference_pipeline_runs_the_readmes_scikit_learn_model() -> None:
    """dags/flights/arrival_gbm.py is the README's file line for line after the docstring, and every
    line of the README's DAG lines for it is in dags/flights_arrival_delay.py (whose test runs it)."""
    _, _, gbm, release = section_blocks("Bring your own model")
    source = (README.parent / "dags" / "flights" / "arrival_gbm.py").read_text()
    assert source.split('"""\n', 2)[-1].lstrip("\n") == gbm
    dag = {
        line.strip()
        for line in (README.parent / "dags" / "flights_arrival_delay.py").read_text().splitlines()
    }
    missing = [line for line in release.splitlines() if line.strip() and line.strip() not in dag]
    assert not missing, missing
    ast.parse(release)  # a whole piece of Python, not a fragment
