"""EvaluateModelOperator on real trained models: metrics, slices, champion on the same rows, reports, MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest

from tests.connections import mlflow_conn

pytestmark = pytest.mark.integration


def test_evaluation_scores_both_models_on_the_same_rows_and_writes_reports(
    trained_models: dict, tmp_path: Path
) -> None:
    import mlflow

    from airflow_mlops.evaluation.metrics import binary_metrics
    from airflow_mlops.evaluation.report import loads
    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.operators.evaluate import EvaluateModelOperator

    result = json.loads((trained_models["challenger"] / "result.json").read_text())
    summary = EvaluateModelOperator(
        task_id="evaluate",
        model_uri=str(trained_models["challenger"]),
        training_set=trained_models["training_set"],
        report_dir=str(tmp_path / "report"),
        champion_uri=str(trained_models["champion"]),
        slices=["carrier", "origin", "month"],
        importance_rows=2000,
        mlflow_conn_id=mlflow_conn(trained_models["tracking"]),
        mlflow_run_id=result["mlflow_run_id"],
    ).execute({})  # type: ignore[arg-type]

    text = (tmp_path / "report" / "evaluation.json").read_text()
    assert "NaN" not in text and json.dumps(
        summary, allow_nan=False
    )  # strict JSON: the API server refuses NaN
    report = loads(text)
    manifest = json.loads(Path(trained_models["training_set"].removeprefix("file://")).read_text())
    test = pd.read_parquet(manifest["splits"]["test"]["uri"].removeprefix("file://"))
    expected = binary_metrics(test["is_delayed"], Scorer(trained_models["challenger"])(test))
    assert report["overall"] == pytest.approx(expected, nan_ok=True)
    assert report["overall"]["auc"] == pytest.approx(
        result["metrics"]["test_auc"], abs=1e-4
    )  # the runtime agrees
    assert sum(m["rows"] for m in report["slices"]["carrier"].values()) <= len(test)
    assert set(report["slices"]) == {"carrier", "origin", "month"}
    assert report["slices"]["origin"]["JFK"]["rows"] == (test["origin"] == "JFK").sum()
    assert report["champion"]["overall"]["rows"] == len(test)
    assert report["champion"]["overall"]["auc"] != report["overall"]["auc"]
    assert summary["champion_overall"]["auc"] == pytest.approx(report["champion"]["overall"]["auc"])
    assert set(report["fairness"]["carrier"]) >= {"tpr_gap", "fpr_gap"}
    assert max(report["importance"].values()) > 0
    page = (tmp_path / "report" / "evaluation.html").read_text()
    assert page.count("<img") == 2 + 3 and f"{report['overall']['auc']:.4f}" in page

    run = mlflow.MlflowClient(trained_models["tracking"]).get_run(result["mlflow_run_id"])
    assert run.data.metrics["eval_auc"] == pytest.approx(report["overall"]["auc"])
    artifacts = {
        a.path
        for a in mlflow.MlflowClient(trained_models["tracking"]).list_artifacts(run.info.run_id, "evaluation")
    }
    assert artifacts == {"evaluation/evaluation.json", "evaluation/evaluation.html"}


def test_a_registry_alias_that_does_not_exist_yet_means_no_champion(
    trained_models: dict, tmp_path: Path
) -> None:
    from airflow_mlops.operators.evaluate import EvaluateModelOperator

    summary = EvaluateModelOperator(
        task_id="evaluate",
        model_uri=str(trained_models["challenger"]),
        training_set=trained_models["training_set"],
        report_dir=str(tmp_path),
        champion_uri="models:/flight_delay@champion",
        importance_rows=0,
        mlflow_conn_id=mlflow_conn(trained_models["tracking"]),
    ).execute({})  # type: ignore[arg-type]
    assert summary["champion_overall"] is None
    assert "importance" not in json.loads((tmp_path / "evaluation.json").read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_uri": "/nowhere"}, "expected model.pt and config.json"),
        ({"split": "holdout"}, "has no split 'holdout'"),
        ({"slices": ["airline"]}, r"columns \['airline'\] are not in the evaluation data"),
    ],
)
def test_bad_inputs_are_refused_and_nothing_is_written(
    trained_models: dict, tmp_path: Path, change: dict, message: str
) -> None:
    from airflow_mlops.operators.evaluate import EvaluateModelOperator

    arguments = {
        "model_uri": str(trained_models["challenger"]),
        "training_set": trained_models["training_set"],
        "report_dir": str(tmp_path / "report"),
        "importance_rows": 0,
        **change,
    }
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        EvaluateModelOperator(task_id="evaluate", **arguments).execute(SimpleNamespace())  # type: ignore[arg-type]
    assert not (tmp_path / "report").exists()


def constructed_report(folder: Path, auc: float, champion_auc: float | None) -> Path:
    from airflow_mlops.evaluation.report import evaluate

    generator = __import__("numpy").random.default_rng(0)
    frame = pd.DataFrame(
        {"is_delayed": generator.integers(0, 2, 400), "carrier": generator.choice(["AA", "UA"], 400)}
    )
    noise = generator.uniform(0, 1, 400)

    def scores(strength: float):
        return (strength * frame["is_delayed"] + (1 - strength) * noise).clip(0, 1).to_numpy()

    report = {
        "model_uri": "file:///models/challenger",
        **evaluate(scores(auc), frame, "is_delayed", slices=["carrier"]),
        "champion": evaluate(scores(champion_auc), frame, "is_delayed", slices=["carrier"])
        if champion_auc is not None
        else None,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(report))
    return folder / "evaluation.json"


GATE = {
    "no_champion": "absolute_only",
    "rules": [
        {"metric": "auc", "min": 0.6},
        {"metric": "auc", "min_margin_over_champion": 0.0},
        {"slice_metric": "auc", "slices": ["carrier"], "max_drop": 0.05, "min_rows": 50},
    ],
}


def test_the_gate_passes_a_better_challenger_and_writes_its_rules_into_the_report(tmp_path: Path) -> None:
    from airflow_mlops.operators.evaluate import EvaluationGateOperator

    report = constructed_report(tmp_path, auc=0.5, champion_auc=0.1)
    out = EvaluationGateOperator(task_id="gate", report_uri=report.as_uri(), gate=GATE).execute({})  # type: ignore[arg-type]
    assert out["passed"] and len(out["rules"]) == 1 + 1 + 2
    written = json.loads(report.read_text())["gate"]
    assert written["passed"] and written["rules"] == out["rules"]
    assert "Gate: PASSED" in (tmp_path / "evaluation.html").read_text()


def test_a_failed_gate_skips_the_branch_names_every_rule_and_tags_the_run(tmp_path: Path, inbox: Any) -> None:
    """...and mails the failed rules with the evaluation report's link (a local SMTP server)."""
    import mlflow
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_mlops.operators.evaluate import EvaluationGateOperator

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking)
    run = client.create_run(client.create_experiment("gate", artifact_location=str(tmp_path / "a")))
    report = constructed_report(tmp_path, auc=0.1, champion_auc=0.5)
    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text(__import__("yaml").safe_dump(GATE))

    with pytest.raises(AirflowSkipException) as skipped:
        EvaluationGateOperator(
            task_id="gate",
            report_uri=str(report),
            gate=str(gate_file),
            mlflow_conn_id=mlflow_conn(tracking),
            mlflow_run_id=run.info.run_id,
        ).execute({})  # type: ignore[arg-type]
    message = str(skipped.value)
    assert (
        "auc >= 0.6" in message and "auc margin over champion >= 0.0" in message and "carrier=AA" in message
    )
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["gate"] == "rejected" and "must be >= 0.6" in tags["gate_reasons"]
    assert json.loads(report.read_text())["gate"]["passed"] is False
    (mail,) = inbox.wait(1)
    assert mail["Subject"].startswith("[airflow-mlops] evaluation gate failed for ")
    body = inbox.body(mail)
    assert "auc &gt;= 0.6: auc = " in body and "must be &gt;= 0.6" in body and "carrier=AA" in body
    assert f"/mlops/files?uri={quote(str(tmp_path / 'evaluation.html'), safe='')}" in body


def test_the_first_model_is_judged_on_absolute_rules_only(tmp_path: Path) -> None:
    from airflow_mlops.operators.evaluate import EvaluationGateOperator

    report = constructed_report(tmp_path, auc=0.5, champion_auc=None)
    out = EvaluationGateOperator(task_id="gate", report_uri=str(report), gate=GATE).execute({})  # type: ignore[arg-type]
    assert [r["rule"] for r in out["rules"]] == ["auc >= 0.6"]


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        ("/nowhere/gate.yaml", "does not exist"),
        ({"rules": [{"metric": "f1", "min": 0.5}]}, "metric must be one of"),
    ],
)
def test_bad_gates_are_refused_before_the_report_is_touched(tmp_path: Path, gate, message: str) -> None:
    from airflow_mlops.evaluation.gate import GateError
    from airflow_mlops.operators.evaluate import EvaluationGateOperator

    report = constructed_report(tmp_path, auc=0.5, champion_auc=None)
    before = report.read_bytes()
    with pytest.raises(GateError, match=message):
        EvaluationGateOperator(task_id="gate", report_uri=str(report), gate=gate).execute({})  # type: ignore[arg-type]
    assert report.read_bytes() == before
