"""flights_features runs for real (dag.test): feature tables, Feast apply, materialize, a training set;
then the second reference pipeline on those features (flights_arrival_delay: regression, the
README's network and the README's scikit-learn model), from its dataset to served, explained,
batch-scored champions, and its monitoring DAG over what they served."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from airflow_mlops.data.datasets import content_hash
from tests.integration.test_flights_ingest import asset_events, task_states
from tests.integration.test_flights_ingest import load_dag as load_reference_dag
from tests.integration.test_flights_validate import load_dag, run_validate, write_raw
from tests.partitions import month_frame, parquet_bytes

pytestmark = pytest.mark.integration


def load_features_dag():
    return load_reference_dag("flights_features", "flights_features.py")


def test_flights_features_builds_a_point_in_time_training_set(
    airflow_db, lake, source_conn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = {
        table: [write_raw(lake, table, m, parquet_bytes(month_frame(table, m))) for m in (1, 2)]
        for table in ("flights", "weather")
    }
    assert str(run_validate(conf).state) == "success"
    assert (
        str(load_dag("flights_dataset").test(logical_date=datetime(2013, 3, 1, tzinfo=UTC)).state)
        == "success"
    )
    dataset_uri = asset_events("flights_delay_dataset")[-1]["manifest_uri"]

    run = load_features_dag().test(
        logical_date=datetime(2013, 3, 1, tzinfo=UTC), run_conf={"manifest_uri": dataset_uri}
    )

    assert str(run.state) == "success", task_states(run)
    for table in ("weather_hourly", "carrier_stats", "route_stats"):
        assert sorted(p.name for p in (lake / "features" / table).glob("*.parquet")) == [
            "2013-01.parquet",
            "2013-02.parquet",
        ]
    event = asset_events("flight_features")[-1]
    manifest = json.loads(Path(event["manifest_uri"].removeprefix("file://")).read_text())
    dataset = json.loads(Path(dataset_uri.removeprefix("file://")).read_text())
    assert (
        manifest["feature_service"] == "flight_delay_v1" and manifest["dataset_version"] == dataset["version"]
    )
    assert set(manifest["feature_views"]) == {
        "weather_hourly",
        "carrier_stats",
        "route_stats",
        "plane_attributes",
    }
    assert event["splits"] == {name: split["rows"] for name, split in dataset["splits"].items()}

    # Every dataset row is there, in the dataset's order, with its label and the features joined.
    test_split = pd.read_parquet(Path(dataset["splits"]["test"]["uri"].removeprefix("file://")))
    training = pd.read_parquet(Path(manifest["splits"]["test"]["uri"].removeprefix("file://")))
    assert training["flight_id"].tolist() == test_split["flight_id"].tolist()
    assert (training["is_delayed"] == test_split["is_delayed"]).all()
    assert training["carrier_flights_30d"].notna().all() and training["temp"].notna().mean() > 0.95
    assert manifest["splits"]["test"]["content_sha256"] == content_hash(training)

    # A second run with unchanged sources rebuilds nothing and writes the same training set.
    again = load_features_dag().test(
        logical_date=datetime(2013, 3, 2, tzinfo=UTC), run_conf={"manifest_uri": dataset_uri}
    )
    assert str(again.state) == "success"
    assert (
        json.loads(Path(event["manifest_uri"].removeprefix("file://")).read_text())["splits"]
        == manifest["splits"]
    )

    release_the_arrival_delay_model(lake, tmp_path, monkeypatch)


def release_the_arrival_delay_model(lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flights_arrival_delay end to end on the features built above: dataset, training set, training
    of the README's network and of the README's scikit-learn pipeline (regression), for each
    evaluation, gate, registration, approval, promotion, rollout to a real model server, batch
    scoring; then flights_arrival_delay_monitoring over a window each endpoint served."""
    import httpx
    import mlflow

    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.serving.models import json_rows
    from tests.model_server import TOKEN, Server

    tracking = MlflowHook().tracking_uri
    # flights_arrival_delay deploys the README's scikit-learn pipeline: its loader is trusted here.
    server = Server(
        tmp_path / "serving", tracking, args=("--trusted-model-modules", "mlflow.sklearn")
    ).start()
    try:
        monkeypatch.setenv("AIRFLOW__MLOPS__AUTO_APPROVE", "True")
        monkeypatch.setenv("AIRFLOW__MLOPS__SERVING_DIR", str(tmp_path / "serving"))
        monkeypatch.setenv(
            "AIRFLOW_CONN_MLOPS_MODEL_SERVER",
            json.dumps(
                {"conn_type": "mlopsmodelserver", "host": "127.0.0.1", "port": server.port, "password": TOKEN}
            ),
        )
        run = load_reference_dag("flights_arrival_delay", "flights_arrival_delay.py").test(
            logical_date=datetime(2013, 3, 1, tzinfo=UTC)
        )
        assert str(run.state) == "success", task_states(run)
        states = task_states(run)
        assert states.keys() >= {"evaluate", "gate", "register", "approve", "promote", "rollout"}
        gbm_tasks = {"train_gbm", "batch_score_gbm"} | {
            f"release_gbm.{t}" for t in ("evaluate", "gate", "register", "approve", "promote", "rollout")
        }
        assert {t: states.get(t) for t in gbm_tasks} == dict.fromkeys(gbm_tasks, "success")

        (result_file,) = (lake / "models" / "arrival_delay").glob("*/result.json")
        result = json.loads(result_file.read_text())
        metrics = result["metrics"]
        assert result["task"] == "regression"
        assert metrics["test_rmse"] < metrics["test_baseline_rmse"] and metrics["test_r2"] > 0.02, metrics
        config = json.loads((result_file.parent / "config.json").read_text())
        assert config["model"] == "flights.arrival:DelayMinutes" and config["code"]  # the network travels

        champion = mlflow.MlflowClient(tracking).get_model_version_by_alias("arrival_delay", "champion")
        assert str(champion.version) == "1"
        (test_split,) = lake.glob("training_sets/arrival_delay/**/test.parquet")
        flights = pd.read_parquet(test_split)
        inputs = [*config["features"]["numeric"], *config["features"]["categorical"]]
        served = httpx.post(
            f"{server.url}/v1/models/arrival_delay/predict",
            json={"rows": json_rows(flights.head(3), inputs)},
            timeout=60,
        )
        assert served.status_code == 200, served.text
        answers = served.json()["predictions"]
        assert len(answers) == 3 and all(isinstance(a["prediction"], float) for a in answers), answers

        (scored,) = lake.glob("predictions/arrival_delay/**/*.parquet")
        frame = pd.read_parquet(scored)
        assert len(frame) == len(flights) and frame["prediction"].notna().all()
        assert frame["prediction"].between(-120, 600).all() and frame["version"].astype(str).eq("1").all()

        check_the_scikit_learn_model(lake, server, tracking, flights, inputs)
        monitor_both_endpoints(lake, server, flights, inputs)
    finally:
        server.stop()


def check_the_scikit_learn_model(
    lake: Path, server, tracking: str, flights: pd.DataFrame, inputs: list
) -> None:
    """The user's pipeline was logged as an MLflow model and went the same way: registered as it is
    (no package of ours), served, explained (KernelSHAP) and batch-scored with the same numbers."""
    import httpx
    import mlflow

    from airflow_mlops.serving.models import json_rows

    client = mlflow.MlflowClient(tracking)
    champion = client.get_model_version_by_alias("arrival_delay_gbm", "champion")
    assert str(champion.version) == "1" and champion.tags["state"] == "champion"
    from airflow_mlops.hooks.mlflow import MlflowHook

    with MlflowHook().activated():
        source = mlflow.pyfunc.load_model("models:/arrival_delay_gbm/1")
    assert mlflow.get_tracking_uri() != tracking, "the DAG's tasks left their store set in this process"
    assert source.metadata.flavors.keys() >= {"sklearn", "python_function"}
    assert source.metadata.metadata["mlops_task"] == "regression"
    evaluation = json.loads(Path(champion.tags["evaluation_report"].removeprefix("file://")).read_text())
    assert evaluation["task"] == "regression" and evaluation["overall"]["r2"] > 0.02

    rows = json_rows(flights.head(20), inputs)
    served = httpx.post(f"{server.url}/v1/models/arrival_delay_gbm/predict", json={"rows": rows}, timeout=60)
    assert served.status_code == 200, served.text
    answers = [a["prediction"] for a in served.json()["predictions"]]
    (scored,) = lake.glob("predictions/arrival_delay_gbm/**/*.parquet")
    batch = pd.read_parquet(scored).set_index("flight_id")
    assert answers == pytest.approx(batch.loc[flights.head(20)["flight_id"], "prediction"].tolist(), abs=1e-6)

    explained = httpx.post(
        f"{server.url}/v1/models/arrival_delay_gbm/explain", json={"row": rows[0]}, timeout=120
    ).json()
    assert explained["method"] == "kernel_shap" and set(explained["attributions"]) == set(inputs)
    assert explained["value"] == pytest.approx(answers[0], abs=1e-6)


def monitor_both_endpoints(lake: Path, server, flights: pd.DataFrame, inputs: list) -> None:
    """The test flights served by both endpoints, then flights_arrival_delay_monitoring over that
    window: each model's drift (against its own training set) and performance (against the delays)."""
    import time

    import httpx

    from airflow_mlops.serving.models import json_rows
    from airflow_mlops.serving.requestlog import read_log

    start = datetime.now(UTC)
    rows = json_rows(flights, [*inputs, "flight_id"])  # flight_id: the key the labels join on
    ids = []
    for endpoint in ("arrival_delay", "arrival_delay_gbm"):
        answer = httpx.post(f"{server.url}/v1/models/{endpoint}/predict", json={"rows": rows}, timeout=120)
        assert answer.status_code == 200, answer.text
        ids += [p["prediction_id"] for p in answer.json()["predictions"]]
    end = datetime.now(UTC)
    requests = server.state_dir / "requests"
    deadline = time.monotonic() + 60  # the request log flushes every 2 s
    while not set(ids) <= set(read_log(requests)["prediction_id"]) and time.monotonic() < deadline:
        time.sleep(0.5)

    run = load_reference_dag("flights_arrival_delay_monitoring", "flights_arrival_delay_monitoring.py").test(
        logical_date=datetime(2013, 3, 2, tzinfo=UTC),
        run_conf={"start": start.isoformat(), "end": end.isoformat()},
    )
    states = task_states(run)
    assert str(run.state) == "success", states
    for model in ("arrival_delay", "arrival_delay_gbm"):
        assert states[f"{model}.drift"] == states[f"{model}.performance"] == "success", states
        (drift_file,) = lake.glob(f"monitoring/{model}/*/drift.json")
        drift = json.loads(drift_file.read_text())
        assert drift["version"] == "1" and drift["prediction_drift"] is not None
        # The features it read from the model's signature (a package's or an MLflow model's), calendar left out.
        assert {c["column"] for c in drift["columns"]} == set(inputs) - {"month", "day"}
        (performance_file,) = lake.glob(f"monitoring/{model}/*/performance.json")
        performance = json.loads(performance_file.read_text())
        assert performance["labelled"] == len(flights) and 0 < performance["overall"]["rmse"] < 60
