"""Extra links: the URLs our operators store for their task instances."""

from __future__ import annotations

import pytest

from airflow_mlops.links import mlflow_run_url, model_version_url, report_url


def test_reports_open_through_the_plugin_with_the_uri_quoted() -> None:
    assert report_url("file:///srv/lake/validated/flights/2013-01.report.html") == (
        "/mlops/files?uri=file%3A%2F%2F%2Fsrv%2Flake%2Fvalidated%2Fflights%2F2013-01.report.html"
    )
    assert report_url("") == ""
    assert model_version_url("flight_delay", 3) == "/mlops/models#flight_delay-v3"


def test_the_mlflow_run_link_needs_mlflows_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__MLOPS__MLFLOW_UI_URL", raising=False)
    assert mlflow_run_url("abc123") == ""  # an embedded SQLite store has no UI to link to
    monkeypatch.setenv("AIRFLOW__MLOPS__MLFLOW_UI_URL", "https://mlflow.internal/")
    assert mlflow_run_url("abc123", "7") == "https://mlflow.internal/#/experiments/7/runs/abc123"
    assert mlflow_run_url("") == ""


def test_a_recorded_url_is_what_the_task_runner_stores_and_none_reads_no_xcom() -> None:
    from types import SimpleNamespace

    from airflow_mlops.links import EvaluationReportLink, MLflowRunLink
    from airflow_mlops.operators.evaluate import EvaluateModelOperator

    task = EvaluateModelOperator(task_id="evaluate", model_uri="m", training_set="t", report_dir="r")
    key = SimpleNamespace(dag_id="d", task_id="evaluate", run_id="r", try_number=1, map_index=-1)
    assert MLflowRunLink().get_link(task, ti_key=key) == ""  # nothing recorded: empty, and no XCom read
    EvaluationReportLink.persist({"task": task}, "/mlops/files?uri=x")
    MLflowRunLink.persist({"task": task}, "")  # no MLflow UI: nothing recorded
    assert EvaluationReportLink().get_link(task, ti_key=key) == "/mlops/files?uri=x"
    assert MLflowRunLink().get_link(task, ti_key=key) == ""
    EvaluationReportLink.persist({}, "/elsewhere")  # execute called directly: no task, nothing to record
