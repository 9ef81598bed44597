"""Monitoring for real: a model server on loopback serves flights, its request log feeds the
flights_monitoring DAG (dag.test), reports and MLflow metrics are written, and a breach emits model_drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd
import pytest

from airflow_mlops.registry.versions import record_digest
from tests.connections import mlflow_conn
from tests.integration.test_flights_ingest import asset_events, load_dag, task_states
from tests.model_server import TOKEN, Server

pytestmark = pytest.mark.integration
MODEL = "flight_delay"


@pytest.fixture(scope="module")
def served(trained_models: dict, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Version 1 of flight_delay (lineage tag: its training set) served by a real server."""
    from mlflow import MlflowClient

    from airflow_mlops.training.spec import manifest_path

    root = tmp_path_factory.mktemp("monitoring")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking)
    experiment = client.create_experiment("models", artifact_location=str(root / "artifacts"))
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(trained_models["challenger"]), "model")
    client.create_registered_model(MODEL)
    client.create_model_version(
        MODEL,
        f"{run.info.artifact_uri}/model",
        run_id=run.info.run_id,
        tags={"training_set": trained_models["training_set"]},
    )
    record_digest(client, tracking, MODEL, "1")
    server = Server(root / "state", tracking).start()
    answer = httpx.put(
        f"{server.url}/v1/admin/deployments/{MODEL}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={
            "variants": {"main": {"name": MODEL, "version": "1"}},
            "log_fields": ["flight_id"],  # the performance monitor joins labels by it
            "who": "test",
            "why": "test",
        },
        timeout=60,
    )
    answer.raise_for_status()
    manifest = json.loads(manifest_path(trained_models["training_set"]).read_text())
    splits = {
        name: pd.read_parquet(manifest_path(split["uri"], trained_models["training_set"]))
        for name, split in manifest["splits"].items()
    }
    yield {
        "root": root,
        "tracking": tracking,
        "server": server,
        "splits": splits,
        "training_set": trained_models["training_set"],
    }
    server.stop()


def serve(served: dict, frame: pd.DataFrame) -> dict[str, str]:
    """Send the flights (without their label) and wait until the request log holds them."""
    from devtools.demo import serve_rows

    server = served["server"]
    return serve_rows(
        {"url": server.url, "state_dir": server.state_dir, "log": "server log"},
        frame.drop(columns=["is_delayed"]),
        per_request=50,
    )


@pytest.fixture
def monitoring(served: dict, lake: Path, airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """flights_monitoring parsed against this server's request log and registry."""
    monkeypatch.setenv("AIRFLOW__MLOPS__SERVING_DIR", str(served["server"].state_dir))
    monkeypatch.setenv("AIRFLOW__MLOPS__MLFLOW_CONN_ID", mlflow_conn(served["tracking"]))
    dag = load_dag("flights_monitoring", "flights_monitoring.py")

    def run(window: dict[str, str], day: int) -> tuple[Any, dict[str, str]]:
        dag_run = dag.test(
            logical_date=datetime(2026, 1, day, tzinfo=UTC),
            run_conf={**window, "manifest_uri": served["training_set"]},
        )
        return dag_run, task_states(dag_run)

    return run


def reports(lake: Path, run_id: str) -> dict[str, dict]:
    from airflow_mlops.evaluation.report import loads

    folder = lake / "monitoring" / MODEL / run_id.replace(":", "_").replace("+", "_")
    return {
        name: loads((folder / f"{name}.json").read_text())
        for name in ("drift", "performance")
        if (folder / f"{name}.json").is_file()
    } | {"folder": folder}  # type: ignore[dict-item]


def test_served_training_rows_show_no_drift_and_their_performance_joins_labels_by_id(
    served: dict, monitoring: Any, lake: Path
) -> None:
    window = serve(served, served["splits"]["train"].sample(1500, random_state=1))
    dag_run, states = monitoring(window, 1)
    assert states == {
        "labels": "success",
        "drift": "success",
        "performance": "success",
        "model_drift": "skipped",
    }
    found = reports(lake, dag_run.run_id)
    drift, performance = found["drift"], found["performance"]
    assert drift["current_rows"] == 1500 and drift["version"] == "1" and not drift["breached"]
    assert drift["drifted"] == [] and drift["score"] < 0.1
    assert served["training_set"] in drift["reference"]
    assert {c["column"] for c in drift["columns"]} >= {"temp", "carrier", "distance"}  # the model's features
    assert drift["prediction_drift"]["psi"] < 0.1
    # Every served flight has an outcome: 1500 labelled, joined by prediction id, AUC of a real model.
    assert performance["labelled"] == 1500 and performance["unlabeled_predictions"] == 0
    assert performance["versions"]["1"]["rows"] == 1500 and 0.6 < performance["overall"]["auc"] < 0.95
    assert "<img" in (found["folder"] / "drift.html").read_text()
    from tests.integration.test_flights_validate import xcoms

    assert xcoms(dag_run, "drift", "_link_MonitoringReportLink") == [
        f"/mlops/files?uri={quote((found['folder'] / 'drift.html').as_uri(), safe='')}"
    ]
    assert "Calibration" in (found["folder"] / "performance.html").read_text()
    assert not [e for e in asset_events("model_drift") if e.get("window") == window]
    from mlflow import MlflowClient

    client = MlflowClient(served["tracking"])
    experiment = client.get_experiment_by_name(f"{MODEL}-monitoring")
    runs = client.search_runs([experiment.experiment_id], f"params.start = '{window['start']}'")
    assert {r.data.tags["monitor"] for r in runs} == {"drift", "performance"}
    assert all("drift_score" in r.data.metrics or "auc" in r.data.metrics for r in runs)


def test_a_summer_heat_wave_in_the_requests_is_drift_and_emits_model_drift_naming_the_features(
    served: dict, monitoring: Any, lake: Path, inbox: Any
) -> None:
    """...and the alert mail (a local SMTP server, ``[mlops] alert_email_to``) says why, with the
    drift report's link."""
    shifted = (
        served["splits"]["test"]
        .head(1500)
        .assign(temp=lambda f: f["temp"] + 45.0, dewp=lambda f: f["dewp"] + 40.0)
    )
    window = serve(served, shifted)
    dag_run, states = monitoring(window, 2)
    assert states["drift"] == "success" and states["model_drift"] == "success"
    drift = reports(lake, dag_run.run_id)["drift"]
    assert drift["breached"] and {"temp", "dewp"} <= set(drift["drifted"])
    (event,) = [e for e in asset_events("model_drift") if e.get("window") == window]
    assert {"temp", "dewp"} <= set(event["features"]) and event["features"]["temp"] > 0.2
    assert event["endpoint"] == MODEL and event["version"] == "1"
    assert any("temp psi=" in reason for reason in event["reasons"])
    (mail,) = inbox.wait(1)
    assert mail["Subject"] == f"[airflow-mlops] {MODEL}: model drift"
    body = inbox.body(mail)
    assert "temp psi=" in body
    drift_page = quote((reports(lake, dag_run.run_id)["folder"] / "drift.html").as_uri(), safe="")
    assert f"http://airflow.example.com:8080/mlops/files?uri={drift_page}" in body


def test_a_window_without_predictions_skips_the_monitors_and_emits_nothing(
    served: dict, monitoring: Any
) -> None:
    before = len(asset_events("model_drift"))
    _, states = monitoring({"start": "2001-01-01T00:00:00+00:00", "end": "2001-01-02T00:00:00+00:00"}, 3)
    assert states == {
        "labels": "success",
        "drift": "skipped",
        "performance": "skipped",
        "model_drift": "skipped",
    }
    assert len(asset_events("model_drift")) == before


def monitor_context() -> dict:
    return {"ti": None, "data_interval_start": None, "data_interval_end": None}


def test_performance_refuses_labels_without_the_key_and_keys_labelled_twice(
    served: dict, tmp_path: Path
) -> None:
    from airflow_mlops.monitoring.monitors import MonitoringError
    from airflow_mlops.operators.monitor import PerformanceMonitorOperator

    window = serve(served, served["splits"]["test"].head(20))
    labels = served["splits"]["test"].head(20)[["flight_id", "is_delayed"]]
    cases = {
        "no_key.parquet": (labels.rename(columns={"flight_id": "id"}), r"no column 'flight_id'"),
        "twice.parquet": (pd.concat([labels, labels.head(2)]), r"labelled more than once \(2 in all"),
        "bad.parquet": (labels.assign(is_delayed=7), r"is_delayed must be 0 or 1, got \['7'\]"),
    }
    for name, (frame, message) in cases.items():
        frame.to_parquet(tmp_path / name)
        operator = PerformanceMonitorOperator(
            task_id="performance",
            endpoint=MODEL,
            request_log=str(served["server"].state_dir / "requests"),
            report_dir=str(tmp_path / "reports"),
            labels=str(tmp_path / name),
            label_key="flight_id",
            label_column="is_delayed",
            **window,
        )
        with pytest.raises(MonitoringError, match=message):
            operator.execute(monitor_context())  # type: ignore[arg-type]
    assert not (tmp_path / "reports").exists()  # nothing half-written


def test_monitors_refuse_bad_windows_and_incomplete_configuration(served: dict, tmp_path: Path) -> None:
    from airflow_mlops.monitoring.monitors import MonitoringError
    from airflow_mlops.operators.monitor import DriftMonitorOperator, ModelDriftAlertOperator

    log = str(served["server"].state_dir / "requests")
    with pytest.raises(ValueError, match=r"give model_name .* or reference"):
        DriftMonitorOperator(task_id="drift", endpoint=MODEL, request_log=log, report_dir=str(tmp_path))
    with pytest.raises(ValueError, match="min_drifted must be at least 1, got 0"):
        DriftMonitorOperator(
            task_id="drift",
            endpoint=MODEL,
            request_log=log,
            report_dir=str(tmp_path),
            model_name=MODEL,
            min_drifted=0,
        )
    with pytest.raises(ValueError, match="monitor_task_ids is empty"):
        ModelDriftAlertOperator(task_id="alert", endpoint=MODEL, monitor_task_ids=[])
    operator = DriftMonitorOperator(
        task_id="drift",
        endpoint=MODEL,
        request_log=log,
        report_dir=str(tmp_path),
        reference=served["training_set"],
        start="2026-01-02T00:00:00+00:00",
        end="2026-01-01T00:00:00+00:00",
    )
    with pytest.raises(MonitoringError, match="end 2026-01-01T00:00:00\\+00:00 is not after start"):
        operator.execute(monitor_context())  # type: ignore[arg-type]
    operator.start, operator.end = "2026-01-01T00:00:00", "2026-01-02T00:00:00+00:00"
    with pytest.raises(MonitoringError, match="start 2026-01-01T00:00:00 has no time zone"):
        operator.execute(monitor_context())  # type: ignore[arg-type]
    operator.start = operator.end = ""
    with pytest.raises(ValueError, match="no window: give start and end"):
        operator.execute(monitor_context())  # type: ignore[arg-type]


def test_drift_refuses_a_reference_it_cannot_compare_with(served: dict, tmp_path: Path) -> None:
    from airflow_mlops.operators.monitor import DriftMonitorOperator

    window = serve(served, served["splits"]["test"].head(20))
    log = str(served["server"].state_dir / "requests")
    no_split = DriftMonitorOperator(
        task_id="drift",
        endpoint=MODEL,
        request_log=log,
        report_dir=str(tmp_path / "r"),
        reference=served["training_set"],
        reference_split="holdout",
        columns=["temp"],
        **window,
    )
    with pytest.raises(
        ValueError, match=r"has no split 'holdout' \(splits: \['test', 'train', 'validation'\]\)"
    ):
        no_split.execute(monitor_context())  # type: ignore[arg-type]
    no_columns = DriftMonitorOperator(
        task_id="drift",
        endpoint=MODEL,
        request_log=log,
        report_dir=str(tmp_path / "r"),
        reference=served["training_set"],
        **window,
    )
    with pytest.raises(ValueError, match="give columns: without a registered model"):
        no_columns.execute(monitor_context())  # type: ignore[arg-type]
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_attribution_drift_flags_the_feature_whose_importance_moves(
    served: dict, trained_models: dict, tmp_path: Path
) -> None:
    """Attributions (integrated gradients of the served network, in one batch: the same numbers
    as the explanation of each row alone) of served training rows match the training set's; in a
    heat wave, temp's share of the attributions moves and is a breach naming it, in the report,
    the XCom and the MLflow run."""
    from mlflow import MlflowClient

    from airflow_mlops.evaluation.report import loads
    from airflow_mlops.evaluation.scoring import load_scorer
    from airflow_mlops.operators.monitor import DriftMonitorOperator
    from airflow_mlops.serving.explain import attribution_frame, integrated_gradients
    from airflow_mlops.serving.models import ServedModel, json_rows

    test = served["splits"]["test"]
    folder = Path(trained_models["challenger"])  # version 1's package
    model = ServedModel(MODEL, "1", folder, load_scorer(folder))
    batch = attribution_frame(model, test.head(5))
    for i, row in enumerate(json_rows(test.head(5), list(model.features))):
        alone = integrated_gradients(model, row)["attributions"]
        assert batch.iloc[i].to_dict() == pytest.approx(alone, abs=1e-5)

    def monitored(frame: pd.DataFrame, name: str) -> dict:
        window = serve(served, frame)
        return DriftMonitorOperator(
            task_id="drift",
            endpoint=MODEL,
            request_log=str(served["server"].state_dir / "requests"),
            report_dir=str(tmp_path / name),
            model_name=MODEL,
            mlflow_conn_id=mlflow_conn(served["tracking"]),
            ignore=["month", "day"],
            reference_sample=0,
            attribution_sample=400,
            **window,
        ).execute(monitor_context())  # type: ignore[arg-type]

    calm = monitored(served["splits"]["train"].sample(600, random_state=3), "calm")
    assert calm["attribution_drifted"] == []
    report = loads((tmp_path / "calm" / "drift.json").read_text())["attribution_drift"]
    assert {c["column"] for c in report["columns"]} == set(model.features)
    assert sum(c["served_share"] for c in report["columns"]) == pytest.approx(1.0)
    hot = monitored(test.tail(600).assign(temp=lambda f: f["temp"] + 45.0), "hot")
    assert "temp" in hot["attribution_drifted"] and hot["breached"]
    assert "attribution:temp" in hot["features"]
    assert any(r.startswith("attribution of") and "temp share" in r for r in hot["reasons"])
    assert "Feature attributions" in (tmp_path / "hot" / "drift.html").read_text()
    metrics = MlflowClient(served["tracking"]).get_run(hot["mlflow_run_id"]).data.metrics
    assert metrics["attribution_share_temp"] > metrics.get("attribution_share_dewp", 0)
    with pytest.raises(
        ValueError, match="attribution_sample must be a whole number of rows, 0 for none; got -1"
    ):
        DriftMonitorOperator(
            task_id="drift",
            endpoint=MODEL,
            request_log="x",
            report_dir="x",
            model_name=MODEL,
            attribution_sample=-1,
        )
    with pytest.raises(ValueError, match="attribution_sample needs model_name"):
        DriftMonitorOperator(
            task_id="drift",
            endpoint=MODEL,
            request_log="x",
            report_dir="x",
            reference="r",
            attribution_sample=10,
        )
