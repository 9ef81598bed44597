"""The model server for real: `airflow-mlops serve` as its own process on loopback, models from a real
MLflow registry, real flights through HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from airflow_mlops.evaluation.gate import GateError
from airflow_mlops.exceptions import BatchPredictionError, MLOpsConfigError
from airflow_mlops.registry.versions import record_digest
from tests.conftest import free_port
from tests.connections import mlflow_conn
from tests.model_server import TOKEN, Server

pytestmark = pytest.mark.integration
NAME = "flights_served"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def registry(trained_models: dict, tmp_path_factory) -> dict:
    """Version 1: the weak model (hidden 4); version 2: the challenger (hidden 32)."""
    from mlflow import MlflowClient

    from airflow_mlops.training.spec import manifest_path

    client = MlflowClient(trained_models["tracking"])
    experiment = client.create_experiment(
        NAME, artifact_location=str(tmp_path_factory.mktemp("served") / "artifacts")
    )
    client.create_registered_model(NAME)
    for folder in (trained_models["champion"], trained_models["challenger"]):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        version = client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        record_digest(client, trained_models["tracking"], NAME, version.version)
    client.set_registered_model_alias(NAME, "champion", "1")
    manifest = json.loads(manifest_path(trained_models["training_set"]).read_text())
    test = pd.read_parquet(manifest_path(manifest["splits"]["test"]["uri"], trained_models["training_set"]))
    return {
        "tracking": trained_models["tracking"],
        "test": test,
        "champion": trained_models["champion"],
        "challenger": trained_models["challenger"],
    }


@pytest.fixture(scope="module")
def server(registry: dict, tmp_path_factory) -> Iterator[Server]:
    # Aliases looked up every second (30 by default), for the test of following the registry.
    running = Server(
        tmp_path_factory.mktemp("server") / "state",
        registry["tracking"],
        args=("--follow-aliases-every", "1"),
    ).start()
    yield running
    running.stop()


def rows(registry: dict, n: int, start: int = 0) -> list[dict]:
    from airflow_mlops.serving.models import json_rows

    return json_rows(registry["test"].iloc[start : start + n])


def deploy(
    server: Server, endpoint: str, variants: dict, policy: dict | None = None, **extra: object
) -> httpx.Response:
    return httpx.put(
        f"{server.url}/v1/admin/deployments/{endpoint}",
        headers=ADMIN,
        timeout=60,
        json={
            "variants": variants,
            "policy": policy or {"kind": "single"},
            "who": "test",
            "why": "test",
            **extra,
        },
    )


V1, V2 = {"name": NAME, "version": "1"}, {"name": NAME, "version": "2"}


def predict(server: Server, endpoint: str, body: dict, client: httpx.Client | None = None) -> httpx.Response:
    """One predict request; many in a row go faster through one ``client`` (a kept connection)."""
    return (client or httpx).post(f"{server.url}/v1/models/{endpoint}/predict", json=body, timeout=30)


def test_admin_routes_refuse_requests_without_the_token(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/admin/deployments").status_code == 401
    wrong = httpx.get(f"{server.url}/v1/admin/deployments", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["detail"] == "the admin token is wrong"
    refused = httpx.put(f"{server.url}/v1/admin/deployments/x", json={"variants": {"a": V1}})
    assert refused.status_code == 401
    assert TOKEN not in (server.state_dir.parent / f"server-{server.port}.log").read_text()


def test_an_idle_client_connection_outlives_a_load_balancers_idle_timeout_window(server: Server) -> None:
    """`serve --keep-alive-s` (default 75 s, longer than a balancer's 60 s idle timeout): a connection
    idle for longer than uvicorn's own default of 5 s is still open and answers."""
    import http.client
    import time
    from urllib.parse import urlsplit

    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        assert first.status == 200 and first.read()
        local = connection.sock.getsockname()
        time.sleep(6)
        connection.request("GET", "/healthz")  # a closed connection: RemoteDisconnected here
        again = connection.getresponse()
        assert again.status == 200 and again.read()
        assert connection.sock.getsockname() == local  # the same connection, not a new one
    finally:
        connection.close()


def test_the_champion_alias_serves_real_flights_with_its_own_preprocessing_and_logs_them(
    server: Server, registry: dict
) -> None:
    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.serving.requestlog import read_log

    deployed = deploy(server, "delay", {"main": {"name": NAME, "alias": "champion"}})
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["variants"]["main"] == {"name": NAME, "version": "1", "alias": "champion"}
    batch = rows(registry, 50)
    answer = predict(server, "delay", {"rows": batch}).json()
    expected = Scorer(registry["champion"])(registry["test"].iloc[:50])
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(expected.tolist(), abs=1e-6)
    assert answer["version"] == "1" and len({p["prediction_id"] for p in answer["predictions"]}) == 50
    single = predict(server, "delay", {"rows": batch[:1]}).json()
    assert single["predictions"][0]["probability"] == pytest.approx(float(expected[0]), abs=1e-6)

    ids = {p["prediction_id"] for p in answer["predictions"]}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the writer flushes every 2 s, off the request path
        logged = read_log(server.state_dir / "requests")
        if ids <= set(logged["prediction_id"]):
            break
        time.sleep(0.2)
    logged = logged.set_index("prediction_id").loc[[p["prediction_id"] for p in answer["predictions"]]]
    assert logged["probability"].tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert set(logged["version"]) == {"1"} and set(logged["role"]) == {"primary"}
    assert json.loads(logged["features"].iloc[0])["carrier"] == registry["test"]["carrier"].iloc[0]

    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'mlops_predictions_total{endpoint="delay",role="primary",variant="main"}' in metrics
    assert "mlops_request_latency_seconds_bucket" in metrics


def test_malformed_rows_get_422_with_the_field_and_an_unknown_model_404(
    server: Server, registry: dict
) -> None:
    deploy(server, "delay", {"main": V1})
    good = rows(registry, 2)
    missing = [good[0], {k: v for k, v in good[1].items() if k != "distance"}]
    answer = predict(server, "delay", {"rows": missing})
    assert answer.status_code == 422
    assert answer.json()["detail"] == [
        {"loc": ["body", "rows", 1, "distance"], "msg": "field required", "input": None}
    ]
    wrong_type = predict(server, "delay", {"rows": [{**good[0], "carrier": 7}]}).json()["detail"][0]
    assert (
        wrong_type["loc"] == ["body", "rows", 0, "carrier"]
        and wrong_type["msg"] == "must be a string or null"
    )
    text = predict(server, "delay", {"rows": [{**good[0], "temp": "warm"}]}).json()["detail"][0]
    assert text == {
        "loc": ["body", "rows", 0, "temp"],
        "msg": "must be a finite number or null",
        "input": "warm",
    }
    assert predict(server, "delay", {"rows": []}).status_code == 422
    assert predict(server, "delay", {"rows": ["not an object"]}).status_code == 422
    unknown = predict(server, "nonesuch", {"rows": good})
    assert unknown.status_code == 404 and "no model is deployed under 'nonesuch'" in unknown.json()["detail"]
    bad_policy = deploy(
        server,
        "delay",
        {"main": V1, "new": V2},
        {"kind": "canary", "primary": "main", "candidate": "new", "weight": 1.5},
    )
    assert (
        bad_policy.status_code == 422
        and "canary weight must be within [0, 1], got 1.5" in bad_policy.json()["detail"]
    )
    no_version = deploy(server, "delay", {"main": {"name": NAME, "version": "99"}})
    assert (
        no_version.status_code == 422
        and "cannot load flights_served version 99" in no_version.json()["detail"]
    )
    assert predict(server, "delay", {"rows": good}).json()["version"] == "1"  # the old routing still serves
    for endpoint, variants, detail in [
        ("bad name", {"main": V1}, "endpoint name must be letters, digits, '-' or '_', got 'bad name'"),
        (
            "delay",
            {"main": {"name": NAME}},
            "variant 'main' must give a model name and either a version or an alias",
        ),
        ("delay", {"main": {"name": NAME, "alias": "nobody"}}, f"model '{NAME}' has no alias 'nobody'"),
    ]:
        refused = deploy(server, endpoint, variants)
        assert refused.status_code == 422 and detail in refused.json()["detail"], refused.text
    deploy(server, "fresh", {"main": V1})
    no_history = httpx.post(f"{server.url}/v1/admin/deployments/fresh/rollback", headers=ADMIN, json={})
    assert (
        no_history.status_code == 409
        and "no earlier deployment to roll back to" in no_history.json()["detail"]
    )
    assert (
        httpx.post(f"{server.url}/v1/admin/deployments/nonesuch/rollback", headers=ADMIN, json={}).status_code
        == 404
    )
    prediction = predict(server, "fresh", {"rows": good[:1]}).json()["predictions"][0]["prediction_id"]
    reward = httpx.post(f"{server.url}/v1/feedback", json={"prediction_id": prediction, "reward": 5})
    assert reward.status_code == 422 and "reward must be within [0, 1], got 5" in reward.json()["detail"]


def test_canary_share_is_within_tolerance_and_ab_is_sticky(server: Server, registry: dict) -> None:
    deploy(
        server,
        "delay",
        {"main": V1, "new": V2},
        {"kind": "canary", "primary": "main", "candidate": "new", "weight": 0.2},
    )
    batch = rows(registry, 1)
    n = 400
    client = httpx.Client()
    variants = Counter(predict(server, "delay", {"rows": batch}, client).json()["variant"] for _ in range(n))
    share = variants["new"] / n
    assert abs(share - 0.2) < 4 * (0.2 * 0.8 / n) ** 0.5, variants  # 4 standard deviations
    stats = httpx.get(f"{server.url}/v1/admin/deployments/delay/stats", headers=ADMIN).json()
    assert (
        stats["variants"]["new"]["requests"] == variants["new"] and stats["variants"]["main"]["errors"] == 0
    )
    # One batcher for the endpoint, each variant's requests scored by its own model.
    assert {v: b["requests"] for v, b in stats["batching"].items()} == dict(variants)

    deploy(server, "delay", {"a": V1, "b": V2}, {"kind": "ab", "weights": {"a": 1, "b": 1}})
    seen = {}
    for user in range(40):
        answers = {
            predict(server, "delay", {"rows": batch, "key": f"user-{user}"}, client).json()["variant"]
            for _ in range(3)
        }
        assert len(answers) == 1, f"user-{user} saw {answers}"
        seen[user] = answers.pop()
    assert set(seen.values()) == {"a", "b"}
    client.close()


def test_shadow_returns_the_primary_answer_and_logs_both(server: Server, registry: dict) -> None:
    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.serving.requestlog import read_log

    deploy(
        server,
        "shadowed",
        {"main": V1, "candidate": V2},
        {"kind": "shadow", "primary": "main", "shadow": "candidate"},
    )
    answer = predict(server, "shadowed", {"rows": rows(registry, 5)}).json()
    frame = registry["test"].iloc[:5]
    assert answer["variant"] == "main"
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(
        Scorer(registry["champion"])(frame).tolist(), abs=1e-6
    )
    ids = [p["prediction_id"] for p in answer["predictions"]]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logged = read_log(server.state_dir / "requests")
        logged = logged[logged["prediction_id"].isin(ids)]
        if len(logged) == 10:
            break
        time.sleep(0.2)
    shadow = logged[logged["role"] == "shadow"].set_index("prediction_id").loc[ids]
    assert shadow["version"].unique().tolist() == ["2"]
    assert shadow["probability"].tolist() == pytest.approx(
        Scorer(registry["challenger"])(frame).tolist(), abs=1e-6
    )


def test_the_bandit_shifts_traffic_to_the_better_arm(server: Server, registry: dict) -> None:
    import random

    deploy(server, "bandit", {"a": V1, "b": V2}, {"kind": "bandit"})
    batch = rows(registry, 1)
    success = {"a": 0.2, "b": 0.8}  # a simulated world where b's predictions are more useful
    world = random.Random(7)
    chosen = []
    with httpx.Client() as client:
        for _ in range(200):
            answer = predict(server, "bandit", {"rows": batch}, client).json()
            chosen.append(answer["variant"])
            reward = float(world.random() < success[answer["variant"]])
            feedback = client.post(
                f"{server.url}/v1/feedback",
                json={"prediction_id": answer["predictions"][0]["prediction_id"], "reward": reward},
            )
            assert feedback.status_code == 200, feedback.text
    assert chosen[-100:].count("b") > 75, Counter(chosen[-100:])
    arms = httpx.get(f"{server.url}/v1/admin/deployments/bandit/stats", headers=ADMIN).json()["arms"]
    assert arms["b"]["mean"] > arms["a"]["mean"]
    assert (
        httpx.post(f"{server.url}/v1/feedback", json={"prediction_id": "nope", "reward": 1}).status_code
        == 404
    )


def test_an_ab_test_with_a_known_effect_is_analysed_from_the_request_log_with_its_interval(
    server: Server, registry: dict, tmp_path: Path
) -> None:
    """A/B traffic (sticky per user) where b's answers are useful 45 % of the time and a's 25 %:
    500 users, feedback for all but 20 predictions; the analysis finds b ahead with the true lift (0.2) in
    its interval, enough samples for an effect of 0.15, leaves out the 10 answers of the deployment
    before the experiment, logs to MLflow, passes its gate; a stricter
    gate skips after writing the report; labels judge AUC per variant; bad settings are refused."""
    import random

    import pandas as pd
    from airflow.sdk.exceptions import AirflowSkipException
    from mlflow import MlflowClient

    from airflow_mlops.evaluation.experiment import ExperimentError
    from airflow_mlops.evaluation.report import loads
    from airflow_mlops.monitoring.monitors import MonitoringError
    from airflow_mlops.operators.experiment import ExperimentAnalysisOperator, predictions_per_variant
    from airflow_mlops.serving.requestlog import read_log

    started = pd.Timestamp.now(tz="UTC")
    deploy(server, "experiment", {"main": V1})  # what the endpoint served before the experiment
    before = httpx.post(
        f"{server.url}/v1/models/experiment/predict", json={"rows": rows(registry, 10)}, timeout=30
    )
    assert before.status_code == 200, before.text
    deploy(server, "experiment", {"a": V1, "b": V2}, {"kind": "ab", "weights": {"a": 1, "b": 1}})
    useful = {"a": 0.25, "b": 0.45}
    world = random.Random(11)
    answered = []
    with httpx.Client(base_url=server.url, timeout=30) as client:  # one connection: 4 times faster
        for user, row in enumerate(rows(registry, 500)):
            answer = client.post(
                "/v1/models/experiment/predict", json={"rows": [row], "key": f"user-{user}"}
            ).json()
            prediction_id = answer["predictions"][0]["prediction_id"]
            answered.append((prediction_id, answer["variant"]))
            if user < 480:
                reward = float(world.random() < useful[answer["variant"]])
                fed = client.post("/v1/feedback", json={"prediction_id": prediction_id, "reward": reward})
                assert fed.status_code == 200, fed.text
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        feedback = read_log(server.state_dir / "requests", "feedback")
        logged = read_log(server.state_dir / "requests")
        if (feedback["endpoint"] == "experiment").sum() >= 480 and (
            logged["endpoint"] == "experiment"
        ).sum() >= 510:
            break
        time.sleep(0.5)
    counted = predictions_per_variant(str(server.state_dir / "requests"), "experiment", started.isoformat())
    assert counted["main"] == 10 and counted["a"] + counted["b"] == 500 and counted["a"] > 150, counted
    with pytest.raises(MonitoringError, match=r"window: start 2026-01-01T00:00:00 has no time zone"):
        predictions_per_variant(str(server.state_dir / "requests"), "experiment", "2026-01-01T00:00:00")
    window = {
        "endpoint": "experiment",
        "request_log": str(server.state_dir / "requests"),
        "start": started.isoformat(),
        "end": pd.Timestamp.now(tz="UTC").isoformat(),
        "control": "a",
    }
    result = ExperimentAnalysisOperator(
        task_id="experiment",
        report_dir=str(tmp_path / "experiments" / "experiment" / "run-1"),
        min_effect=0.15,  # needs ~150 per variant at these rates; ~240 each are sent
        gate={"rules": [{"experiment": "probability_better", "min": 0.95}]},
        mlflow_conn_id=mlflow_conn(registry["tracking"]),
        variants=["a", "b"],  # the 10 answers of "main" before the switch are not the experiment's
        **window,
    ).execute({"ti": None})  # type: ignore[arg-type]
    assert result["method"] == "bayesian" and result["outcomes"] == 480 and result["without_outcome"] == 20
    assert sum(v["samples"] for v in result["variants"].values()) == 480
    b = result["comparisons"]["b"]
    assert result["winner"] == "b" and b["verdict"] == "challenger" and b["probability_better"] > 0.99
    assert b["lower"] < 0.2 < b["upper"] and b["enough_samples"] is True
    assert result["gate"]["passed"] is True
    report = loads((tmp_path / "experiments/experiment/run-1/experiment.json").read_text())
    assert report["versions"] == {"a": ["1"], "b": ["2"]} and report["decision"].startswith("b beats a")
    assert report["other_variants"] == {"main": 10}
    assert "<img" in (tmp_path / "experiments/experiment/run-1/experiment.html").read_text()
    run = MlflowClient(registry["tracking"]).get_run(result["mlflow_run_id"])
    assert run.data.metrics["p_better_b"] == pytest.approx(b["probability_better"])
    assert run.data.metrics["samples_a"] + run.data.metrics["samples_b"] == 480

    strict = ExperimentAnalysisOperator(
        task_id="strict",
        report_dir=str(tmp_path / "strict"),
        gate={"rules": [{"experiment": "difference_lower", "min": 0.5}]},
        mlflow_conn_id=None,
        **window,
    )
    with pytest.raises(
        AirflowSkipException,
        match=r"difference_lower >= 0.5 \(difference_lower of 'b' vs 'a' = 0\.[01][0-9]*, must be >= 0.5",
    ):
        strict.execute({"ti": None})  # type: ignore[arg-type]
    assert loads((tmp_path / "strict/experiment.json").read_text())["gate"]["passed"] is False

    labels = pd.DataFrame(
        {
            "prediction_id": [p for p, _ in answered],
            "is_delayed": registry["test"]["is_delayed"].iloc[:500].to_numpy(),
        }
    )
    labels.to_parquet(tmp_path / "labels.parquet")
    by_label = ExperimentAnalysisOperator(
        task_id="auc",
        report_dir=str(tmp_path / "auc"),
        labels=str(tmp_path / "labels.parquet"),
        label_column="is_delayed",
        draws=200,
        mlflow_conn_id=None,
        **window,
    ).execute({"ti": None})  # type: ignore[arg-type]
    assert by_label["metric"] == "auc" and by_label["method"] == "bootstrap" and by_label["outcomes"] == 500
    for variant, estimate in by_label["variants"].items():
        assert estimate["lower"] <= estimate["value"] <= estimate["upper"], variant

    with pytest.raises(
        ExperimentError,
        match=r"control 'c' has no outcomes in the window \(variants with outcomes: \['a', 'b'\]",
    ):
        ExperimentAnalysisOperator(
            task_id="nocontrol",
            report_dir=str(tmp_path / "x"),
            mlflow_conn_id=None,
            **{**window, "control": "c"},
        ).execute({"ti": None})  # type: ignore[arg-type]
    with pytest.raises(
        MLOpsConfigError,
        match=r"control 'a' is not one of variants \['b', 'c'\] \(rule: the control is a variant",
    ):
        ExperimentAnalysisOperator(task_id="bad", report_dir="x", variants=["b", "c"], **window)
    with pytest.raises(
        MLOpsConfigError, match=r"metric 'auc' with feedback: the metric of feedback is 'reward'"
    ):
        ExperimentAnalysisOperator(task_id="bad", report_dir="x", metric="auc", **window)
    with pytest.raises(
        GateError, match=r"an online experiment's gate takes \{experiment, min\|max\} rules only"
    ):
        ExperimentAnalysisOperator(
            task_id="bad", report_dir="x", gate={"rules": [{"metric": "auc", "min": 0.6}]}, **window
        )
    again = httpx.post(f"{server.url}/v1/feedback", json={"prediction_id": answered[0][0], "reward": 1.0})
    assert again.status_code == 200
    deadline = time.monotonic() + 20
    while (read_log(server.state_dir / "requests", "feedback")["prediction_id"] == answered[0][0]).sum() < 2:
        assert time.monotonic() < deadline, "the second feedback was not logged in 20 s"
        time.sleep(0.5)
    with pytest.raises(
        MonitoringError, match=rf"predictions \['{answered[0][0]}'\] have more than one feedback"
    ):
        ExperimentAnalysisOperator(
            task_id="twice", report_dir=str(tmp_path / "y"), mlflow_conn_id=None, **window
        ).execute({"ti": None})  # type: ignore[arg-type]


def test_two_replicas_sharing_redis_learn_one_bandit_from_feedback_to_either_and_keep_it_over_a_restart(
    server: Server, registry: dict, redis_url: str, tmp_path: Path
) -> None:
    """Predictions made by one replica get their feedback through the other (as a load balancer
    sends it); both route with the one posterior, which a restarted replica still has."""
    import random

    shared = ("--redis-url", f"redis://{redis_url}/0")
    one = Server(tmp_path / "one", registry["tracking"], args=shared).start()
    two = Server(tmp_path / "two", registry["tracking"], args=shared).start()
    alone = server  # the module's server keeps its state locally: its own memory
    try:
        for replica in (one, two, alone):
            assert deploy(replica, "shared", {"a": V1, "b": V2}, {"kind": "bandit"}).status_code == 200
        batch, world = rows(registry, 1), random.Random(11)
        success = {"a": 0.1, "b": 0.9}
        client = httpx.Client()
        for i in range(120):
            answer = predict((one, two)[i % 2], "shared", {"rows": batch}, client).json()
            reward = float(world.random() < success[answer["variant"]])
            other = (two, one)[i % 2]  # the feedback reaches the replica that did not predict
            posted = client.post(
                f"{other.url}/v1/feedback",
                json={"prediction_id": answer["predictions"][0]["prediction_id"], "reward": reward},
            )
            assert posted.status_code == 200, posted.text
        client.close()
        arms = [
            httpx.get(f"{r.url}/v1/admin/deployments/shared/stats", headers=ADMIN).json()["arms"]
            for r in (one, two)
        ]
        assert arms[0] == arms[1] and sum(a["alpha"] + a["beta"] for a in arms[0].values()) == pytest.approx(
            124
        )
        assert arms[0]["b"]["mean"] > arms[0]["a"]["mean"]
        # Without the shared state, the other replica does not know the prediction.
        made = predict(one, "shared", {"rows": batch}).json()["predictions"][0]["prediction_id"]
        unknown = httpx.post(f"{alone.url}/v1/feedback", json={"prediction_id": made, "reward": 1})
        assert unknown.status_code == 404 and "shares no state" in unknown.json()["detail"]
        one.kill()
        one.start()  # restored from its store; the posteriors and the prediction are in Redis
        after = httpx.get(f"{one.url}/v1/admin/deployments/shared/stats", headers=ADMIN).json()["arms"]
        assert after == arms[0]
        assert (
            httpx.post(f"{one.url}/v1/feedback", json={"prediction_id": made, "reward": 1}).status_code == 200
        )
    finally:
        for replica in (one, two):
            replica.stop()


def test_the_request_log_goes_to_object_storage_and_the_monitors_read_it_there(
    registry: dict, aws_conn: str, moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A server whose request log is an S3 prefix (moto's server) writes its predictions there and
    nothing locally; the monitors read the window, the reference training set and the labels
    through the Airflow connection and write their reports to the bucket (logged to MLflow from
    there), with no local file."""
    import io

    import boto3
    import pandas as pd

    from airflow_mlops.evaluation.report import loads
    from airflow_mlops.operators.monitor import DriftMonitorOperator, PerformanceMonitorOperator

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="served-log")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)  # the server's own credentials: the environment
    started = pd.Timestamp.now(tz="UTC")
    remote = Server(
        tmp_path / "state", registry["tracking"], args=("--request-log-dir", "s3://served-log/requests")
    ).start()
    try:
        assert deploy(remote, "remote", {"main": V1}).status_code == 200
        answer = predict(remote, "remote", {"rows": rows(registry, 400)}).json()
    finally:
        remote.stop()  # flushes the log
    ended = pd.Timestamp.now(tz="UTC")
    monitored = {
        "endpoint": "remote",
        "request_log": "s3://served-log/requests",
        "storage_conn_id": aws_conn,
        "start": started.isoformat(),
        "end": ended.isoformat(),
    }
    monitor = DriftMonitorOperator(
        task_id="drift",
        report_dir="s3://served-log/reports/drift",
        model_name=NAME,
        mlflow_conn_id=None,
        **monitored,
    )
    logged = monitor.read_requests(started, ended)
    assert sorted(logged["prediction_id"]) == sorted(p["prediction_id"] for p in answer["predictions"])
    assert not (tmp_path / "state" / "requests").exists()

    # The reference: a training set whose manifest and split are objects in the bucket.
    buffer = io.BytesIO()
    registry["test"].to_parquet(buffer)
    s3.put_object(Bucket="served-log", Key="sets/flights/test.parquet", Body=buffer.getvalue())
    manifest = {"splits": {"test": {"uri": "s3://served-log/sets/flights/test.parquet"}}}
    s3.put_object(Bucket="served-log", Key="sets/flights/manifest.json", Body=json.dumps(manifest))
    context = {"ti": None, "data_interval_start": None, "data_interval_end": None}
    drift = DriftMonitorOperator(
        task_id="drift",
        report_dir="s3://served-log/reports/drift",
        model_name=NAME,
        mlflow_conn_id=mlflow_conn(registry["tracking"]),
        reference="s3://served-log/sets/flights/manifest.json",
        reference_split="test",
        reference_sample=400,
        **monitored,
    ).execute(context)  # type: ignore[arg-type]
    body = lambda key: s3.get_object(Bucket="served-log", Key=key)["Body"].read()  # noqa: E731
    assert drift["report_uri"] == "s3://served-log/reports/drift/drift.json" and drift["rows"] == 400
    report = loads(body("reports/drift/drift.json").decode())
    assert report["reference"] == "s3://served-log/sets/flights/manifest.json (test)"
    assert report["current_rows"] == 400 and {"distance", "carrier"} <= {
        c["column"] for c in report["columns"]
    }
    assert report["prediction_drift"] is not None  # the model scored the reference rows read from the bucket
    assert b"<img" in body("reports/drift/drift.html")

    # The labels: a folder of Parquet objects keyed by prediction id.
    labels = pd.DataFrame(
        {
            "prediction_id": [p["prediction_id"] for p in answer["predictions"]],
            "is_delayed": registry["test"]["is_delayed"].iloc[:400].to_numpy(),
        }
    )
    for part, half in enumerate((labels.iloc[:200], labels.iloc[200:])):
        buffer = io.BytesIO()
        half.to_parquet(buffer)
        s3.put_object(Bucket="served-log", Key=f"labels/part-{part}.parquet", Body=buffer.getvalue())
    performance = PerformanceMonitorOperator(
        task_id="performance",
        report_dir="s3://served-log/reports/performance",
        labels="s3://served-log/labels",
        label_column="is_delayed",
        mlflow_conn_id=mlflow_conn(registry["tracking"]),
        **monitored,
    ).execute(context)  # type: ignore[arg-type]
    assert performance["overall"]["labelled"] == 400 and performance["overall"]["unlabeled_predictions"] == 0
    assert loads(body("reports/performance/performance.json").decode())["labelled"] == 400
    assert not [*tmp_path.rglob("drift.*"), *tmp_path.rglob("performance.*")]  # no report written locally

    from mlflow import MlflowClient

    client = MlflowClient(registry["tracking"])
    for run_id, name in ((drift["mlflow_run_id"], "drift"), (performance["mlflow_run_id"], "performance")):
        assert {f.path for f in client.list_artifacts(run_id)} == {f"{name}.json", f"{name}.html"}
    with pytest.raises(
        MLOpsConfigError, match=r"labels 's3://served-log/reports/drift' is a folder without Parquet"
    ):
        PerformanceMonitorOperator(
            task_id="performance",
            report_dir="s3://served-log/reports/none",
            labels="s3://served-log/reports/drift",
            label_column="is_delayed",
            mlflow_conn_id=None,
            **monitored,
        ).execute(context)  # type: ignore[arg-type]


def test_composite_routines_chain_and_ensemble(server: Server, registry: dict) -> None:
    deploy(server, "ensemble", {"a": V1, "b": V2}, {"kind": "ensemble", "weights": {"a": 1, "b": 3}})
    answer = predict(server, "ensemble", {"rows": rows(registry, 3)}).json()
    for i, prediction in enumerate(answer["predictions"]):
        assert prediction["probability"] == pytest.approx(
            0.25 * answer["steps"]["a"][i] + 0.75 * answer["steps"]["b"][i]
        )
    deploy(server, "chain", {"first": V1, "second": V2}, {"kind": "chain"})
    chained = predict(server, "chain", {"rows": rows(registry, 3)}).json()
    assert [p["probability"] for p in chained["predictions"]] == pytest.approx(chained["steps"]["second"])
    assert chained["variant"] == "chain" and chained["version"] == "2"


def test_explanations_add_up_to_the_change_in_the_logit(server: Server, registry: dict) -> None:
    deploy(server, "delay", {"main": V2})
    row = rows(registry, 1)[0]
    answer = httpx.post(
        f"{server.url}/v1/models/delay/explain", json={"row": row, "steps": 64}, timeout=30
    ).json()
    attributions = answer["attributions"]
    assert set(attributions) >= {"carrier", "origin", "dest", "distance", "temp"}
    assert sum(attributions.values()) == pytest.approx(answer["logit"] - answer["baseline_logit"], abs=0.02)
    predicted = predict(server, "delay", {"rows": [row]}).json()["predictions"][0]["probability"]
    assert answer["probability"] == pytest.approx(predicted, abs=1e-5)
    bad = httpx.post(f"{server.url}/v1/models/delay/explain", json={"row": {"carrier": "UA"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["msg"] == "field required"


def test_a_model_swap_under_concurrent_load_fails_no_request_and_rollback_restores(
    server: Server, registry: dict
) -> None:
    deploy(server, "swap", {"main": V1})
    batch = rows(registry, 20)
    failures, versions = [], Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.post(f"{server.url}/v1/models/swap/predict", json={"rows": batch})
                if response.status_code != 200:
                    failures.append(response.text)
                else:
                    versions[response.json()["version"]] += 1

    workers = [threading.Thread(target=load) for _ in range(6)]
    for worker in workers:
        worker.start()
    try:
        for version in (V2, V1, V2):
            assert deploy(server, "swap", {"main": version}).status_code == 200
            time.sleep(0.3)  # let traffic run on this version for a moment
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == [] and set(versions) == {"1", "2"} and sum(versions.values()) > 20
    rolled = httpx.post(
        f"{server.url}/v1/admin/deployments/swap/rollback", headers=ADMIN, json={"who": "ops", "why": "drill"}
    )
    assert rolled.status_code == 200 and rolled.json()["variants"]["main"]["version"] == "1"
    assert predict(server, "swap", {"rows": batch[:1]}).json()["version"] == "1"


def test_concurrent_requests_are_batched_and_each_answer_is_its_own(server: Server, registry: dict) -> None:
    """Sixteen clients at once: the variant's batcher scores waiting requests in shared model calls,
    each answer equals its rows scored alone (by an endpoint deployed without batching, which
    scores every request in its own call), and a bad row is still its own request's 422."""
    assert (
        deploy(server, "batched", {"main": V1}, batching={"max_rows": 64, "max_wait_ms": 2}).status_code
        == 200
    )
    requests = [rows(registry, 1 + i % 3, start=i * 3) for i in range(96)]

    def send(i: int) -> httpx.Response:
        body = {"rows": requests[i]} if i != 50 else {"rows": [{**requests[i][0], "distance": "far"}]}
        return predict(server, "batched", body)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(len(requests))))
    assert answers[50].status_code == 422 and answers[50].json()["detail"][0]["loc"][-1] == "distance"
    for i, answer in enumerate(answers):
        if i != 50:
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["predictions"]) == len(requests[i])
    stats = httpx.get(f"{server.url}/v1/admin/deployments/batched/stats", headers=ADMIN).json()["batching"]
    assert stats["main"]["requests"] == 95 and stats["main"]["model_calls"] < 95  # shared calls
    assert deploy(server, "unbatched", {"main": V1}, batching={"max_rows": 0}).status_code == 200
    for i in (0, 1, 2, 49, 51, 95):  # the same rows, each request scored in its own call
        alone = predict(server, "unbatched", {"rows": requests[i]}).json()["predictions"]
        expected = [p["probability"] for p in alone]
        assert [p["probability"] for p in answers[i].json()["predictions"]] == pytest.approx(
            expected, abs=1e-6
        )
    unbatched = httpx.get(f"{server.url}/v1/admin/deployments/unbatched/stats", headers=ADMIN).json()
    assert unbatched["batching"] == {}
    refused = deploy(server, "batched", {"main": V1}, batching={"max_rows": -1})
    assert refused.status_code == 422 and "max_rows must be a whole number >= 0" in refused.text


def test_a_killed_server_restarts_from_its_cache_with_the_registry_stopped_and_a_broken_endpoint(
    registry: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Server(tmp_path / "state", registry["tracking"]).start()
    try:
        deploy(
            first,
            "delay",
            {"main": V1, "new": V2},
            {"kind": "canary", "primary": "main", "candidate": "new", "weight": 0.5},
        )
        deploy(first, "other", {"only": V2})
    finally:
        first.kill()
    # An endpoint whose version is in neither the cache nor (stopped) registry, and a cache entry
    # left half-downloaded by a crash: neither stops the restart.
    store = json.loads((tmp_path / "state" / "deployments.json").read_text())
    broken = json.loads(json.dumps(store["other"]))
    broken["current"]["variants"]["only"]["version"] = "7"
    store["broken"] = broken
    (tmp_path / "state" / "deployments.json").write_text(json.dumps(store))
    (tmp_path / "state" / "models" / NAME / ".7-download-crashed").mkdir()
    # The registry is a tracking server nobody runs: the models must come from the cache.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    second = Server(tmp_path / "state", f"http://127.0.0.1:{free_port()}")
    second.port, second.url = first.port, first.url
    second.start()
    try:
        listed = httpx.get(f"{second.url}/v1/admin/deployments", headers=ADMIN).json()
        assert listed["delay"]["policy"] == {
            "kind": "canary",
            "primary": "main",
            "candidate": "new",
            "weight": 0.5,
        }
        assert listed["delay"]["history"] == 0 and listed["other"]["variants"]["only"]["version"] == "2"
        assert (
            "error" not in listed["other"]
            and "cannot load flights_served version 7" in listed["broken"]["error"]
        )
        assert predict(second, "other", {"rows": rows(registry, 1)}).json()["version"] == "2"
        assert predict(second, "delay", {"rows": rows(registry, 1)}).status_code == 200
        ready = httpx.get(f"{second.url}/readyz").json()
        assert ready["ready"] is True and ready["endpoints"] == ["delay", "other"]
        assert list(ready["failed"]) == ["broken"]
        unavailable = predict(second, "broken", {"rows": rows(registry, 1)})
        assert unavailable.status_code == 503, unavailable.text
        assert "endpoint 'broken' could not be loaded" in unavailable.json()["detail"]
    finally:
        second.stop()


def test_ten_concurrent_rollbacks_step_back_once_each_and_stop_at_the_oldest(server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for variants in ({"main": V1}, {"main": V2}, {"main": V1}, {"main": V2}):
        assert deploy(server, "history", variants).status_code == 200
    url = f"{server.url}/v1/admin/deployments/history/rollback"
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(lambda i: httpx.post(url, headers=ADMIN, json={"why": f"r{i}"}, timeout=60), range(10))
        )
    assert sorted(a.status_code for a in answers) == [200] * 3 + [409] * 7
    served = [a.json()["variants"]["main"]["version"] for a in answers if a.status_code == 200]
    assert sorted(served) == ["1", "1", "2"]  # V1, V2, V1 stepped back through, one each
    listed = httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN).json()["history"]
    assert listed["history"] == 0 and listed["variants"]["main"]["version"] == "1"


def test_bad_numbers_long_values_and_large_bodies_are_refused_and_count_no_model_error(
    server: Server, registry: dict
) -> None:
    from airflow_mlops.serving.requestlog import read_log

    for fields, message in [
        ("flight_id", "Input should be a valid list"),
        (["flight id"], "'flight id' is not a field name"),
        (["a", "a"], "names a field twice"),
        ([f"f{i}" for i in range(17)], "at most 16 field names"),
    ]:
        refused = deploy(server, "limits", {"main": V1}, log_fields=fields)
        assert refused.status_code == 422 and message in json.dumps(refused.json()), refused.text
    assert deploy(server, "limits", {"main": V1}, log_fields=["flight_id"]).status_code == 200
    row = rows(registry, 1)[0]
    url = f"{server.url}/v1/models/limits/predict"
    body = json.dumps({"rows": [row]})
    for field, raw, msg in [
        ("distance", "Infinity", "must be a finite number or null"),
        ("distance", "-Infinity", "must be a finite number or null"),
        ("distance", "NaN", "must be a finite number or null"),
        ("distance", "1e999", "must be a finite number or null"),
        ("distance", "9" * 400, "must lie within"),
        ("sched_dep_time", "9" * 30, "must lie within"),
        ("carrier", json.dumps("x" * 5000), "must be at most 4096 characters, got 5000"),
    ]:
        bad = body.replace(f'"{field}": {json.dumps(row[field])}', f'"{field}": {raw}')
        assert bad != body
        answer = httpx.post(url, content=bad, headers={"content-type": "application/json"}, timeout=30)
        assert answer.status_code == 422, (field, raw, answer.text)
        detail = answer.json()["detail"][0]
        assert detail["loc"] == ["body", "rows", 0, field] and msg in detail["msg"], detail
        assert len(json.dumps(detail["input"])) < 200  # a long value is cut short in the answer
    nan_key = body[:-1] + ', "key": NaN}'
    answer = httpx.post(url, content=nan_key, headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "key"]
    huge = json.dumps({"rows": [{**row, "note": "x" * (17 * 1024 * 1024)}]})
    assert (
        httpx.post(url, content=huge, headers={"content-type": "application/json"}, timeout=60).status_code
        == 413
    )

    def chunks():  # no Content-Length: the server counts what it reads
        yield b'{"rows": [{"note": "'
        for _ in range(17):
            yield b"x" * (1024 * 1024)
        yield b'"}]}'

    streamed = httpx.post(url, content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert streamed.status_code == 413, streamed.text
    stats = httpx.get(f"{server.url}/v1/admin/deployments/limits/stats", headers=ADMIN).json()
    # Nothing reached the model: no model error, no latency. The 7 rows its signature refused are
    # counted as refusals (a canary compares them with the primary's); the key and the bodies
    # refused before routing are nobody's.
    assert stats["variants"] == {
        "main": {
            "requests": 7,
            "rows": 7,
            "errors": 0,
            "error_rate": 0.0,
            "refused": 7,
            "refused_rate": 1.0,
            "p50_ms": None,
            "p99_ms": None,
        }
    }
    reward = httpx.post(
        f"{server.url}/v1/feedback",
        content='{"prediction_id": "x", "reward": NaN}',
        headers={"content-type": "application/json"},
    )
    assert reward.status_code == 422 and reward.json()["detail"][0]["loc"] == ["body", "reward"]

    # Fields outside the signature: the one the deployment declared (log_fields) is logged, no
    # other; a declared field holding an object or a long string is a 422.
    for bad in ({"password": "hunter2"}, "x" * 129, float("inf")):
        answer = httpx.post(
            url,
            content=json.dumps({"rows": [{**row, "flight_id": bad}]}),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["body", "rows", 0, "flight_id"]
        assert "a field the request log keeps must be" in answer.json()["detail"][0]["msg"]
    extra = {"flight_id": 42, "note": "short", "nested": {"password": "hunter2"}}
    answer = predict(server, "limits", {"rows": [{**row, **extra}]}).json()
    prediction_id = answer["predictions"][0]["prediction_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logged = read_log(server.state_dir / "requests")
        if prediction_id in set(logged["prediction_id"]):
            break
        time.sleep(0.2)
    text = logged.set_index("prediction_id").loc[prediction_id, "features"]
    features = json.loads(text)
    assert features["flight_id"] == 42 and features["distance"] == row["distance"]
    assert "note" not in features and "nested" not in features and "hunter2" not in text


class Unpickled:
    """A pickle that runs a command when it is loaded: what an MLflow Python model's file can be."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def register_package(registry: dict, name: str, folder: Path, vouch: bool = True) -> str:
    """``folder`` registered as a new version of ``name``; its digest recorded unless ``vouch`` is False."""
    from mlflow import MlflowClient

    client = MlflowClient(registry["tracking"])
    experiment = client.get_experiment_by_name(NAME).experiment_id
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    if vouch:
        record_digest(client, registry["tracking"], name, version.version)
    return str(version.version)


def test_the_server_loads_only_vouched_packages_and_imports_only_trusted_modules(
    server: Server, registry: dict, tmp_path: Path
) -> None:
    """A registered package naming a module to run, one whose files changed after registration, one
    registered without a digest and an MLflow Python model that unpickles a command: each is
    refused with its reason, and no marker file appears (nothing of theirs ran)."""
    import shutil

    from mlflow import MlflowClient
    from mlflow.models import Model, infer_signature

    markers = [tmp_path / f"ran-{i}" for i in range(4)]

    by_name = shutil.copytree(registry["challenger"], tmp_path / "by_name")
    config = json.loads((by_name / "config.json").read_text())
    named = {k: v for k, v in config.items() if k != "code"}  # the module named, not carried
    (by_name / "config.json").write_text(
        json.dumps({**named, "model": "subprocess:run", "init": {"args": ["touch", str(markers[0])]}})
    )
    by_name_version = register_package(registry, "evil_by_name", by_name)

    carried = shutil.copytree(registry["challenger"], tmp_path / "carried")
    (carried / "code").mkdir(exist_ok=True)
    (carried / "code" / "evil_net.py").write_text("from torch import nn\n\nclass Net(nn.Module):\n    pass\n")
    (carried / "config.json").write_text(
        json.dumps({**config, "model": "evil_net:Net", "code": "evil_net.py"})
    )
    carried_version = register_package(registry, "evil_carried", carried)
    # The artifact store's copy changes after registration: the code now runs a command on import.
    source = MlflowClient(registry["tracking"]).get_model_version("evil_carried", carried_version).source
    stored = Path(source.removeprefix("file://")) / "code" / "evil_net.py"
    stored.write_text(f"import os\nos.system('touch {markers[1]}')\n" + stored.read_text())

    unvouched_version = register_package(
        registry, "unvouched", shutil.copytree(registry["challenger"], tmp_path / "unvouched"), vouch=False
    )

    python_model = tmp_path / "python_model"
    python_model.mkdir()
    (python_model / "python_model.pkl").write_bytes(__import__("pickle").dumps(Unpickled(markers[2])))
    logged = Model(metadata={"mlops_task": "binary"})
    logged.add_flavor("python_function", loader_module="mlflow.pyfunc.model", python_model="python_model.pkl")
    example = rows(registry, 2)
    logged.signature = infer_signature(pd.DataFrame(example), pd.Series([0.5, 0.5], name="probability"))
    logged.save(str(python_model / "MLmodel"))
    python_version = register_package(registry, "evil_pyfunc", python_model)

    for endpoint, name, version, message in [
        (
            "by_name",
            "evil_by_name",
            by_name_version,
            r"module 'subprocess' is neither carried in the package nor trusted",
        ),
        (
            "carried",
            "evil_carried",
            carried_version,
            r"the downloaded package's SHA-256 is [0-9a-f]{16}\.\.\., the registry recorded",
        ),
        (
            "unvouched",
            "unvouched",
            unvouched_version,
            r"the registry records no package_sha256 for it.*record-digest --model unvouched",
        ),
        ("pyfunc", "evil_pyfunc", python_version, r"its loader 'mlflow.pyfunc.model' is not trusted"),
    ]:
        refused = deploy(server, endpoint, {"main": {"name": name, "version": version}})
        assert refused.status_code == 422, refused.text
        assert re.search(message, refused.json()["detail"]), refused.json()["detail"]
        assert predict(server, endpoint, {"rows": example}).status_code == 404
    assert [m for m in markers if m.exists()] == []
    # The tampered download left nothing in the cache; the vouched ones are cached as registered.
    assert not (server.state_dir / "models" / "evil_carried" / carried_version).exists()
    assert not list((server.state_dir / "models").glob("evil_carried/.*"))


def test_a_changed_cache_entry_is_downloaded_again_before_it_loads(registry: dict, tmp_path: Path) -> None:
    first = Server(tmp_path / "state", registry["tracking"]).start()
    try:
        assert deploy(first, "delay", {"main": V2}).status_code == 200
        expected = predict(first, "delay", {"rows": rows(registry, 3)}).json()["predictions"]
    finally:
        first.stop()
    cached = next((tmp_path / "state" / "models" / NAME / "2").rglob("config.json"))
    config = json.loads(cached.read_text())
    cached.write_text(
        json.dumps({**config, "model": "subprocess:run", "init": {"args": ["touch", str(tmp_path / "ran")]}})
    )
    second = Server(tmp_path / "state", registry["tracking"]).start()
    try:
        answer = predict(second, "delay", {"rows": rows(registry, 3)}).json()["predictions"]
        assert [a["probability"] for a in answer] == [e["probability"] for e in expected]
        assert json.loads(cached.read_text())["model"] == config["model"]  # the registered file again
        assert not (tmp_path / "ran").exists()
    finally:
        second.stop()


def test_a_promotion_or_rollback_made_outside_a_dag_moves_the_served_version(
    server: Server, registry: dict
) -> None:
    """An endpoint deployed by alias (a release's rollout) follows the registry: the promotion and
    the rollback the MLOps pages and the CLI make (``registry.governance``) move the traffic; a
    version the server must not load leaves it serving, with the reason in the admin listing."""
    from mlflow import MlflowClient

    from airflow_mlops.registry.governance import decide, promote, rollback

    client = MlflowClient(registry["tracking"])
    for folder in (registry["champion"], registry["challenger"]):
        register_package(registry, "followed", folder)
    decide(client, "followed", "1", True, "alice", "first")
    promote(client, "followed", "1", "alice", "first")
    deployed = deploy(server, "followed", {"main": {"name": "followed", "alias": "champion"}})
    assert deployed.json()["variants"]["main"] == {"name": "followed", "version": "1", "alias": "champion"}

    def served_version(expected: str) -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answer = predict(server, "followed", {"rows": rows(registry, 1)}).json()
            if answer["version"] == expected:
                return httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN).json()["followed"]
            time.sleep(0.3)
        raise AssertionError(f"the endpoint still serves v{answer['version']}, not v{expected}")

    decide(client, "followed", "2", True, "bob", "better AUC")
    promote(client, "followed", "2", "bob", "promoted in the UI")
    listed = served_version("2")
    assert listed["deployed_by"] == "registry" and listed["history"] == 1
    assert listed["reason"] == "alias champion of followed moved from v1 to v2"
    rollback(client, "followed", "carol", "rolled back in the UI")
    listed = served_version("1")
    assert listed["reason"] == "alias champion of followed moved from v2 to v1" and listed["history"] == 2

    # A version registered without a digest: the alias moves, the endpoint keeps serving v1 and says why.
    unvouched = register_package(registry, "followed", registry["challenger"], vouch=False)
    decide(client, "followed", unvouched, True, "dave", "hotfix")
    promote(client, "followed", unvouched, "dave", "hotfix")
    deadline = time.monotonic() + 30
    while "follow_error" not in (
        listed := httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN).json()["followed"]
    ):
        assert time.monotonic() < deadline, listed
        time.sleep(0.3)
    assert f"moved from v1 to v{unvouched}, but it cannot be served" in listed["follow_error"]
    assert "package_sha256" in listed["follow_error"]
    assert predict(server, "followed", {"rows": rows(registry, 1)}).json()["version"] == "1"


def test_model_names_and_versions_that_could_be_paths_are_refused(server: Server) -> None:
    cache = server.state_dir / "models"
    before = sorted(p.relative_to(server.state_dir) for p in server.state_dir.rglob("*") if p.is_dir())
    for spec, field in [
        ({"name": "../../outside", "version": "1"}, "name"),
        ({"name": "a/b", "version": "1"}, "name"),
        ({"name": "..", "version": "1"}, "name"),
        ({"name": NAME, "version": "1/../../2"}, "version"),
        ({"name": NAME, "version": "0"}, "version"),
        ({"name": NAME, "alias": "champion/../x"}, "alias"),
    ]:
        refused = deploy(server, "paths", {"main": spec})
        assert refused.status_code == 422, refused.text
        assert f"variant 'main': model {field} must be" in refused.json()["detail"]
    after = sorted(p.relative_to(server.state_dir) for p in server.state_dir.rglob("*") if p.is_dir())
    assert [p for p in after if p not in before and not str(p).startswith("requests")] == []
    assert not (cache.parent.parent / "outside").exists()


def test_without_a_token_the_admin_api_is_disabled(registry: dict, tmp_path: Path) -> None:
    server = Server(tmp_path / "state", registry["tracking"], token=None).start()
    try:
        refused = httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN)
        assert refused.status_code == 403 and "started without a token" in refused.json()["detail"]
    finally:
        server.stop()


@pytest.fixture
def server_connection(server: Server, monkeypatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLOPS_MODEL_SERVER",
        json.dumps(
            {"conn_type": "mlopsmodelserver", "host": "127.0.0.1", "port": server.port, "password": TOKEN}
        ),
    )
    return "mlops_model_server"


def context() -> dict:
    from types import SimpleNamespace

    return {"dag_run": SimpleNamespace(dag_id="flights_training", run_id="manual__test")}


def test_progressive_rollout_first_deploy_canary_healthy_verdict_and_full_rollout(
    server: Server, registry: dict, server_connection: str
) -> None:
    from airflow_mlops.operators.deploy import DeployModelOperator
    from airflow_mlops.sensors.canary import CanaryAnalysisSensor

    first = DeployModelOperator(
        task_id="canary", endpoint="rollout", model_name=NAME, version="1", canary_weight=0.5
    ).execute(context())  # type: ignore[arg-type]
    assert first["mode"] == "first" and first["deployment"]["policy"] == {"kind": "single"}
    assert (
        CanaryAnalysisSensor(task_id="analysis", endpoint="rollout", deferrable=False).execute(context())[
            "healthy"
        ]
        is True
    )  # type: ignore[arg-type]
    canary = DeployModelOperator(
        task_id="canary", endpoint="rollout", model_name=NAME, version="2", canary_weight=0.5
    ).execute(context())  # type: ignore[arg-type]
    assert canary["mode"] == "canary" and canary["deployment"]["variants"]["candidate"]["version"] == "2"
    assert canary["deployment"]["deployed_by"] == "DeployModelOperator (flights_training/manual__test)"
    batch = rows(registry, 5)
    for _ in range(60):
        predict(server, "rollout", {"rows": batch})
    verdict = CanaryAnalysisSensor(
        task_id="analysis",
        endpoint="rollout",
        deferrable=False,
        poke_interval=0.2,
        criteria={"min_requests": 10, "max_latency_ratio": 3.0, "latency_slack_ms": 50},
    ).execute(context())  # type: ignore[arg-type]
    assert verdict["healthy"] and any(r.startswith("pass error rate") for r in verdict["reasons"])
    full = DeployModelOperator(task_id="rollout", endpoint="rollout", model_name=NAME, version="2").execute(
        context()
    )  # type: ignore[arg-type]
    assert full["mode"] == "replace" and full["deployment"]["variants"] == {
        "main": {"name": NAME, "version": "2"}
    }
    again = DeployModelOperator(task_id="rollout", endpoint="rollout", model_name=NAME, version="2").execute(
        context()
    )  # type: ignore[arg-type]
    assert again["deployment"]["deployed_at"] == full["deployment"]["deployed_at"]  # a retry changes nothing


def test_an_unhealthy_canary_is_rolled_back_rejected_and_skips_promotion(
    server: Server, registry: dict, server_connection: str
) -> None:
    from airflow.sdk.exceptions import AirflowSkipException
    from mlflow import MlflowClient

    from airflow_mlops.operators.deploy import DeployModelOperator
    from airflow_mlops.sensors.canary import CanaryAnalysisSensor

    DeployModelOperator(task_id="d", endpoint="strict", model_name=NAME, version="1").execute(context())  # type: ignore[arg-type]
    DeployModelOperator(
        task_id="d", endpoint="strict", model_name=NAME, version="2", canary_weight=0.5
    ).execute(context())  # type: ignore[arg-type]
    for _ in range(40):
        predict(server, "strict", {"rows": rows(registry, 5)})
    sensor = CanaryAnalysisSensor(
        task_id="analysis",
        endpoint="strict",
        deferrable=False,
        poke_interval=0.2,
        model_name=NAME,
        version="2",
        mlflow_conn_id=mlflow_conn(registry["tracking"]),
        criteria={"min_requests": 5, "max_latency_ratio": 0.001, "latency_slack_ms": 0},
    )
    with pytest.raises(
        AirflowSkipException, match=r"canary on strict failed, rolled back: .*FAIL p99 latency"
    ):
        sensor.execute(context())  # type: ignore[arg-type]
    assert httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN).json()["strict"]["policy"] == {
        "kind": "single"
    }
    tags = MlflowClient(registry["tracking"]).get_model_version(NAME, "2").tags
    assert tags["state"] == "rejected" and "canary failed" in tags["state_reason"]

    waiting = CanaryAnalysisSensor(
        task_id="analysis",
        endpoint="strict",
        deferrable=False,
        poke_interval=0.1,
        timeout=0.5,
        criteria={"min_requests": 10_000},
    )
    DeployModelOperator(
        task_id="d", endpoint="strict", model_name=NAME, version="2", canary_weight=0.5
    ).execute(context())  # type: ignore[arg-type]
    with pytest.raises(
        AirflowSkipException, match=r"too little traffic in 0 s: candidate served 0 of the 10000"
    ):
        waiting.execute(context())  # type: ignore[arg-type]


def test_the_canary_trigger_reads_the_token_from_the_connection_and_yields_the_verdict(
    server: Server, registry: dict, server_connection: str
) -> None:
    import asyncio

    from airflow_mlops.operators.deploy import DeployModelOperator
    from airflow_mlops.triggers.canary import CanaryAnalysisTrigger

    DeployModelOperator(task_id="d", endpoint="triggered", model_name=NAME, version="1").execute(context())  # type: ignore[arg-type]
    DeployModelOperator(
        task_id="d", endpoint="triggered", model_name=NAME, version="2", canary_weight=0.9
    ).execute(context())  # type: ignore[arg-type]
    trigger = CanaryAnalysisTrigger(
        model_server_conn_id=server_connection,
        endpoint="triggered",
        criteria={"min_requests": 3},
        deadline=time.time() + 60,
        poll_interval=0.1,
    )
    assert TOKEN not in json.dumps(trigger.serialize())

    async def first_event() -> dict:
        async def traffic() -> None:
            async with httpx.AsyncClient() as client:
                for _ in range(30):
                    await client.post(
                        f"{server.url}/v1/models/triggered/predict", json={"rows": rows(registry, 1)}
                    )

        sender = asyncio.create_task(traffic())
        event = await anext(trigger.run())
        await sender
        return event.payload

    event = asyncio.run(first_event())
    assert event["done"] and event["stats"]["variants"]["candidate"]["requests"] >= 3


def test_the_hook_names_the_server_error_without_the_token(server: Server, monkeypatch) -> None:
    from airflow_mlops.exceptions import ModelServerError
    from airflow_mlops.hooks.model_server import ModelServerHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_WRONG_TOKEN",
        json.dumps(
            {"conn_type": "mlopsmodelserver", "host": "127.0.0.1", "port": server.port, "password": "guess"}
        ),
    )
    with pytest.raises(ModelServerError, match="HTTP 403: the admin token is wrong") as raised:
        ModelServerHook("wrong_token").deployments()
    assert "guess" not in str(raised.value)
    monkeypatch.setenv(
        "AIRFLOW_CONN_NO_SERVER",
        json.dumps({"conn_type": "mlopsmodelserver", "host": "127.0.0.1", "port": free_port()}),
    )
    with pytest.raises(
        ModelServerError, match=r"model server http://127.0.0.1:\d+ \(no_server\): ConnectError"
    ):
        ModelServerHook("no_server").deployments()


def test_the_hook_deploys_to_every_replica_and_adds_their_stats_up(
    registry: dict, server: Server, tmp_path: Path, monkeypatch
) -> None:
    """Two replicas in the connection's extra: a deployment reaches both, stats add up; when one
    replica fails, the one already switched is rolled back and the error names both."""
    from airflow_mlops.exceptions import ModelServerError
    from airflow_mlops.hooks.model_server import ModelServerHook

    other = Server(tmp_path / "replica2", registry["tracking"]).start()
    try:
        replicas = [f"127.0.0.1:{server.port}", f"127.0.0.1:{other.port}"]
        monkeypatch.setenv(
            "AIRFLOW_CONN_REPLICAS",
            json.dumps(
                {
                    "conn_type": "mlopsmodelserver",
                    "host": "127.0.0.1",
                    "port": server.port,
                    "password": TOKEN,
                    "extra": {"replicas": replicas},
                }
            ),
        )
        hook = ModelServerHook("replicas")
        answer = hook.deploy("replicated", {"main": V1}, {"kind": "single"}, who="test", why="both")
        assert answer["replicas"] == 2
        canary = {"kind": "canary", "primary": "a", "candidate": "b", "weight": 0.5}
        hook.deploy("replicated", {"a": V1, "b": V2}, canary, who="test", why="canary")
        for replica in (server, other):
            served = httpx.get(f"{replica.url}/v1/admin/deployments", headers=ADMIN).json()["replicated"]
            assert served["variants"] == {"a": V1, "b": V2} and served["history"] == 1
            for i in range(10):
                assert predict(replica, "replicated", {"rows": rows(registry, 1, i)}).status_code == 200
        stats = hook.stats("replicated")
        each = [
            httpx.get(f"{r.url}/v1/admin/deployments/replicated/stats", headers=ADMIN).json()
            for r in (server, other)
        ]
        assert stats["replicas"] == 2
        for variant in ("a", "b"):
            assert stats["variants"][variant]["requests"] == sum(
                e["variants"][variant]["requests"] for e in each
            )
            assert stats["variants"][variant]["p99_ms"] == max(e["variants"][variant]["p99_ms"] for e in each)
        assert sum(v["requests"] for v in stats["variants"].values()) == 20
        # The second replica is down: the first, already switched, goes back to the canary.
        other.stop()
        with pytest.raises(
            ModelServerError,
            match=rf"{other.port} \(replicas\): ConnectError.*replicas switched "
            rf"before it: http://127.0.0.1:{server.port} rolled back",
        ):
            hook.deploy("replicated", {"main": V2}, {"kind": "single"})
        other.start()  # restores what it served
        for replica in (server, other):
            served = httpx.get(f"{replica.url}/v1/admin/deployments", headers=ADMIN).json()["replicated"]
            assert served["variants"] == {"a": V1, "b": V2}, replica.url
        # A rollback that fails on the second replica is not undone by a second rollback: the error says where.
        other.stop()
        with pytest.raises(
            ModelServerError,
            match=rf"rolled back already: http://127.0.0.1:{server.port}; "
            rf"not rolled back: http://127.0.0.1:{other.port}",
        ):
            hook.rollback("replicated", who="test", why="back")
        other.start()
        served = {
            r.url: httpx.get(f"{r.url}/v1/admin/deployments", headers=ADMIN).json()["replicated"]["variants"]
            for r in (server, other)
        }
        assert served == {server.url: {"main": V1}, other.url: {"a": V1, "b": V2}}
        assert ModelServerHook("replicas").rollback_replica(other.url, "replicated", "test", "catch up")
        assert httpx.get(f"{other.url}/v1/admin/deployments", headers=ADMIN).json()["replicated"][
            "variants"
        ] == {"main": V1}
        hook.deploy("replicated", {"a": V1, "b": V2}, canary, who="test", why="canary again")
        assert hook.rollback("replicated", who="test", why="back")["replicas"] == 2
        for replica in (server, other):
            assert httpx.get(f"{replica.url}/v1/admin/deployments", headers=ADMIN).json()["replicated"][
                "variants"
            ] == {"main": V1}
    finally:
        other.stop()


def test_the_hook_refuses_a_replicas_extra_that_is_not_a_list_of_addresses(monkeypatch) -> None:
    from airflow_mlops.exceptions import ModelServerError
    from airflow_mlops.hooks.model_server import ModelServerHook

    for bad in ("127.0.0.1:1", [], [""], [8765]):
        monkeypatch.setenv(
            "AIRFLOW_CONN_BAD_REPLICAS",
            json.dumps(
                {
                    "conn_type": "mlopsmodelserver",
                    "host": "127.0.0.1",
                    "port": 1,
                    "extra": {"replicas": bad},
                }
            ),
        )
        with pytest.raises(
            ModelServerError,
            match=r"'bad_replicas': extra 'replicas' must be a non-empty list of "
            r"'host:port' strings, got " + re.escape(repr(bad)),
        ):
            ModelServerHook("bad_replicas").deploy("x", {"main": V1}, {"kind": "single"})


@pytest.mark.parametrize("lake", ["local", "s3"])
def test_batch_prediction_scores_a_partition_with_the_champion_version(
    registry: dict, tmp_path: Path, lake: str, request: pytest.FixtureRequest
) -> None:
    """The partition, the predictions and their manifest on the local lake or in S3 (moto's
    server, reached through the task's ``aws`` connection only)."""
    from airflow_mlops.artifacts import MANIFEST_SUFFIX, Artifact
    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.operators.predict import BatchPredictionOperator

    partition = tmp_path / "flights.parquet"
    registry["test"].to_parquet(partition)
    read = {"predictions.parquet": lambda: pd.read_parquet(tmp_path / "out" / "predictions.parquet")}
    read[MANIFEST_SUFFIX] = lambda: (tmp_path / "out" / f"predictions{MANIFEST_SUFFIX}").read_text()
    input_uri, output_uri, conn = partition.as_uri(), str(tmp_path / "out" / "predictions.parquet"), None
    if lake == "s3":
        import io

        s3, conn = s3_bucket(request), request.getfixturevalue("aws_conn")
        s3.upload_file(str(partition), "lake", "flights/2013-06.parquet")
        partition.unlink()  # nothing on the local disk
        input_uri, output_uri = "s3://lake/flights/2013-06.parquet", "s3://lake/predictions/2013-06.parquet"
        body = lambda key: s3.get_object(Bucket="lake", Key=key)["Body"].read()  # noqa: E731
        read["predictions.parquet"] = lambda: pd.read_parquet(io.BytesIO(body("predictions/2013-06.parquet")))
        read[MANIFEST_SUFFIX] = lambda: body(f"predictions/2013-06{MANIFEST_SUFFIX}").decode()
    result = BatchPredictionOperator(
        task_id="score",
        input_uri=input_uri,
        model_uri=f"models:/{NAME}@champion",
        output_uri=output_uri,
        key_columns=["flight_id"],
        mlflow_conn_id=mlflow_conn(registry["tracking"]),
        chunk_rows=1000,
        storage_conn_id=conn,
    ).execute({"outlet_events": {}})  # type: ignore[arg-type]
    predictions = read["predictions.parquet"]()
    assert result["rows"] == len(registry["test"]) == len(predictions) and result["version"] == "1"
    assert predictions["flight_id"].tolist() == registry["test"]["flight_id"].tolist()
    assert predictions["probability"].to_numpy() == pytest.approx(
        Scorer(registry["champion"])(registry["test"]), abs=1e-6
    )
    assert predictions["prediction_id"].is_unique and set(predictions["version"]) == {"1"}
    manifest = Artifact.from_json(read[MANIFEST_SUFFIX]())
    expected_input = input_uri if lake == "s3" else partition.resolve().as_uri()
    assert manifest.parents == (expected_input, f"models:/{NAME}/1") and manifest.sha256 == result["sha256"]
    assert result["uri"] == (output_uri if lake == "s3" else Path(output_uri).resolve().as_uri())


def test_batch_prediction_downloads_a_model_folder_from_object_storage(
    registry: dict, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A model package that is only in the bucket (a training task's output before registration)."""
    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.operators.predict import BatchPredictionOperator

    s3, conn = s3_bucket(request), request.getfixturevalue("aws_conn")
    for file in Path(registry["champion"]).rglob("*"):
        if file.is_file():
            s3.upload_file(str(file), "lake", f"models/candidate/{file.relative_to(registry['champion'])}")
    registry["test"].head(300).to_parquet(tmp_path / "rows.parquet")
    s3.upload_file(str(tmp_path / "rows.parquet"), "lake", "rows.parquet")
    result = BatchPredictionOperator(
        task_id="score",
        input_uri="s3://lake/rows.parquet",
        model_uri="s3://lake/models/candidate",
        output_uri=str(tmp_path / "scored.parquet"),
        key_columns=["flight_id"],
        mlflow_conn_id=None,
        storage_conn_id=conn,
    ).execute({"outlet_events": {}})  # type: ignore[arg-type]
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["probability"].to_numpy() == pytest.approx(
        Scorer(registry["champion"])(registry["test"].head(300)), abs=1e-6
    )
    assert result["model"] == "s3://lake/models/candidate" and result["version"] == ""
    assert result["parents"] == ["s3://lake/rows.parquet", "s3://lake/models/candidate"]
    with pytest.raises(BatchPredictionError, match=r"input 's3://lake/nothing.parquet' does not exist"):
        BatchPredictionOperator(
            task_id="score",
            input_uri="s3://lake/nothing.parquet",
            model_uri="s3://lake/models/candidate",
            output_uri=str(tmp_path / "none.parquet"),
            mlflow_conn_id=None,
            storage_conn_id=conn,
        ).execute({"outlet_events": {}})  # type: ignore[arg-type]
    assert not (tmp_path / "none.parquet").exists()


def s3_bucket(request: pytest.FixtureRequest) -> Any:
    """A client of moto's S3 server with the bucket ``lake`` (created once per server)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=request.getfixturevalue("moto_server"), region_name="us-east-1")
    if "lake" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket="lake")
    return s3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_uri": "/nowhere/flights.parquet"}, "input '/nowhere/flights.parquet' does not exist"),
        ({"key_columns": ["tail"]}, r"key_columns \['tail'\] are not columns of"),
        ({"drop": ["distance", "temp"]}, r"lacks the model's feature columns \['distance', 'temp'\]"),
        ({"garbage": True}, "is not a readable Parquet file"),
    ],
)
def test_batch_prediction_refuses_bad_input_and_writes_nothing(
    registry: dict, tmp_path: Path, change: dict, message: str
) -> None:
    from airflow_mlops.serving.batch import predict_partition

    partition = tmp_path / "flights.parquet"
    if change.get("garbage"):
        partition.write_text("not parquet")
    else:
        registry["test"].head(50).drop(columns=change.get("drop", [])).to_parquet(partition)
    with pytest.raises(BatchPredictionError, match=message):
        predict_partition(
            change.get("input_uri", str(partition)),
            f"models:/{NAME}/1",
            str(tmp_path / "out.parquet"),
            tracking_uri=registry["tracking"],
            key_columns=change.get("key_columns", ["flight_id"]),
        )
    assert not (tmp_path / "out.parquet").exists()


def test_flights_batch_scoring_scores_the_held_out_split_with_the_champion(
    airflow_db, lake: Path, registry: dict, trained_models: dict, tmp_path: Path, monkeypatch
) -> None:
    from datetime import UTC, datetime

    from mlflow import MlflowClient

    from tests.integration.test_flights_ingest import asset_events, load_dag, task_states

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"  # its own registry: flight_delay@champion
    client = MlflowClient(tracking)
    run = client.create_run(client.create_experiment("batch", artifact_location=str(tmp_path / "artifacts")))
    client.log_artifacts(run.info.run_id, str(registry["challenger"]), "model")
    client.create_registered_model("flight_delay")
    client.create_model_version("flight_delay", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("flight_delay", "champion", "1")
    monkeypatch.setenv("AIRFLOW__MLOPS__MLFLOW_CONN_ID", mlflow_conn(tracking))

    dag_run = load_dag("flights_batch_scoring", "flights_batch_scoring.py").test(
        logical_date=datetime(2013, 3, 2, tzinfo=UTC),
        run_conf={"manifest_uri": trained_models["training_set"]},
    )
    assert str(dag_run.state) == "success", task_states(dag_run)
    event = asset_events("flight_delay_predictions")[-1]
    predictions = pd.read_parquet(event["uri"].removeprefix("file://"))
    assert event["rows"] == len(registry["test"]) == len(predictions) and event["version"] == "1"
    assert event["uri"].startswith((lake / "predictions" / "flight_delay").as_uri())
    assert predictions["flight_id"].tolist() == registry["test"]["flight_id"].tolist()


def test_rows_with_entity_keys_are_completed_from_the_feast_online_store(
    registry: dict, server: Server, lake: Path, tmp_path: Path, monkeypatch
) -> None:
    from datetime import UTC, datetime

    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.hooks.feast import FeastHook
    from airflow_mlops.serving.models import json_rows
    from flights.features import month_feature_tables, plane_features
    from flights.source import read_table
    from tests.conftest import ROOT
    from tests.integration.test_feast import write_tables
    from tests.partitions import month_frame

    january, february = month_frame("flights", 1), month_frame("flights", 2)
    features = lake / "features"
    write_tables(features, month_feature_tables("2013-01", [january], month_frame("weather", 1)), "2013-01")
    write_tables(
        features, month_feature_tables("2013-02", [january, february], month_frame("weather", 2)), "2013-02"
    )
    write_tables(features, {"plane_attributes": plane_features(read_table("planes"))}, "planes")
    hook = FeastHook()
    hook.apply()
    hook.materialize(datetime(2012, 12, 1, tzinfo=UTC), datetime(2013, 3, 1, tzinfo=UTC))

    refused = httpx.put(
        f"{server.url}/v1/admin/deployments/keys",
        headers=ADMIN,
        timeout=60,
        json={"variants": {"main": V2}, "feature_service": "flight_delay_v1"},
    )
    assert refused.status_code == 422 and "started without a feature repository" in refused.json()["detail"]

    variables = hook._settings()[2]  # the server process reads the repository with the same variables
    monkeypatch.setenv("MLOPS_FEAST_DIR", variables["MLOPS_FEAST_DIR"])
    monkeypatch.setenv("MLOPS_FEATURES_URI", variables["MLOPS_FEATURES_URI"])
    keyed = Server(
        tmp_path / "state", registry["tracking"], args=("--feature-repo", str(ROOT / "feature_repo"))
    ).start()
    try:
        deployed = httpx.put(
            f"{keyed.url}/v1/admin/deployments/keys",
            headers=ADMIN,
            timeout=60,
            json={"variants": {"main": V2}, "feature_service": "flight_delay_v1"},
        )
        assert deployed.status_code == 200, deployed.text
        request_fields = [
            "origin",
            "carrier",
            "tailnum",
            "route",
            "dest",
            "distance",
            "sched_dep_time",
            "sched_arr_time",
            "hour",
            "month",
            "day",
        ]
        entity_rows = json_rows(registry["test"].head(20), request_fields)
        answer = httpx.post(
            f"{keyed.url}/v1/models/keys/predict", json={"rows": entity_rows}, timeout=30
        ).json()
        keys = [{k: r[k] for k in ("origin", "carrier", "tailnum", "route")} for r in entity_rows]
        online = hook.get_online_features("flight_delay_v1", keys)
        completed = pd.DataFrame(
            [{**{c: online[c][i] for c in online}, **row} for i, row in enumerate(entity_rows)]
        )
        assert completed["temp"].notna().all()  # the online store answered
        expected = Scorer(registry["challenger"])(completed)
        assert [p["probability"] for p in answer["predictions"]] == pytest.approx(expected.tolist(), abs=1e-6)
        missing = httpx.post(
            f"{keyed.url}/v1/models/keys/predict",
            json={"rows": [{k: v for k, v in entity_rows[0].items() if k != "tailnum"}]},
        ).json()
        assert missing["detail"][0]["loc"] == ["body", "rows", 0, "tailnum"]
        assert "join key of feature service 'flight_delay_v1'" in missing["detail"][0]["msg"]
    finally:
        keyed.stop()


INFRA = "flights_infra"


@pytest.fixture(scope="module")
def infra_registry(registry: dict, trained_models: dict, tmp_path_factory) -> dict:
    """``flights_infra`` v1 (the champion alias; hidden 4), v2 (hidden 32) and v3: v2 with a changed
    input schema, a required field ``gate`` the champion never took (in its signature and example)."""
    import shutil

    from mlflow import MlflowClient

    client = MlflowClient(registry["tracking"])
    root = tmp_path_factory.mktemp("infra")
    changed = root / "changed"
    shutil.copytree(trained_models["challenger"], changed)
    config = json.loads((changed / "config.json").read_text())
    config["signature"]["inputs"].append({"name": "gate", "type": "string", "required": True})
    config["input_example"] = [{**row, "gate": "B12"} for row in config["input_example"]]
    (changed / "config.json").write_text(json.dumps(config))
    experiment = client.create_experiment(INFRA, artifact_location=str(root / "artifacts"))
    client.create_registered_model(INFRA)
    for folder in (trained_models["champion"], trained_models["challenger"], changed):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        version = client.create_model_version(INFRA, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        record_digest(client, registry["tracking"], INFRA, version.version)
    client.set_registered_model_alias(INFRA, "champion", "1")
    return {"tracking": registry["tracking"], "conn": mlflow_conn(registry["tracking"])}


def logged_traffic(server: Server, registry: dict, endpoint: str, n: int) -> None:
    """``n`` requests of one real flight each to ``endpoint``, then wait for the request log's flush."""
    from airflow_mlops.serving.requestlog import read_log

    with httpx.Client() as client:
        for i in range(n):
            assert predict(server, endpoint, {"rows": rows(registry, 1, start=i)}, client).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = read_log(server.state_dir / "requests")
        if (log["endpoint"] == endpoint).sum() >= n if len(log) else False:
            return
        time.sleep(0.5)
    raise AssertionError(f"the request log did not get {n} requests of {endpoint} in 20 s")


def test_infra_validation_blesses_a_servable_version_and_deploy_requires_the_blessing(
    server: Server, registry: dict, infra_registry: dict, server_connection: str, monkeypatch
) -> None:
    """v2 in a sandbox server: it loads, answers its example and the champion's, and the requests the
    endpoint logged; within the limits: blessed, tagged, reported. A deployment that requires the
    blessing takes v2 and refuses v1, which was never validated, before asking the server."""
    from mlflow import MlflowClient

    from airflow_mlops.exceptions import DeploymentError
    from airflow_mlops.operators.deploy import DeployModelOperator
    from airflow_mlops.operators.infra import InfraValidateOperator

    assert deploy(server, "infra", {"main": {"name": INFRA, "version": "1"}}).status_code == 200
    logged_traffic(server, registry, "infra", 25)
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", str(server.state_dir.parent / "lake"))
    result = InfraValidateOperator(
        task_id="infra_validate",
        model_name=INFRA,
        version="2",
        endpoint="infra",
        request_log_uri=str(server.state_dir / "requests"),
        mlflow_conn_id=infra_registry["conn"],
    ).execute(context())  # type: ignore[arg-type]
    assert result["blessed"] and result["champion"] == "1", result["checks"]
    assert [c["check"] for c in result["checks"]] == ["loads", "answers", "latency", "memory", "inputs"]
    inputs = next(c for c in result["checks"] if c["check"] == "inputs")
    # its own 3 example rows + the 25 logged ones; the champion's example and the logged ones compared
    assert result["requests"] == 28 and inputs["detail"].startswith("28 of the 28 requests the champion")
    assert 0 < result["p99_ms"] < 1000 and 100 < result["peak_rss_mb"] < 4096
    print(f"infra validation: p99 {result['p99_ms']} ms, peak RSS {result['peak_rss_mb']} MB")
    report = json.loads(Path(result["report_uri"].removeprefix("file://")).read_text())
    assert report["blessed"] and report["version"] == "2"
    tags = MlflowClient(registry["tracking"]).get_model_version(INFRA, "2").tags
    assert tags["infra_blessing"] == "blessed" and tags["infra_report"] == result["report_uri"]

    monkeypatch.setenv("AIRFLOW__MLOPS__REQUIRE_INFRA_BLESSING", "True")
    canary = DeployModelOperator(
        task_id="canary",
        endpoint="infra",
        model_name=INFRA,
        version="2",
        canary_weight=0.2,
        mlflow_conn_id=infra_registry["conn"],
    ).execute(context())  # type: ignore[arg-type]
    assert canary["mode"] == "canary"  # v1, already served, is not asked for a blessing again
    with pytest.raises(
        DeploymentError,
        match=r"flights_infra v1\) is not blessed by infra validation \(its infra_blessing tag is None",
    ):
        DeployModelOperator(
            task_id="d",
            endpoint="elsewhere",
            model_name=INFRA,
            version="1",
            mlflow_conn_id=infra_registry["conn"],
        ).execute(context())  # type: ignore[arg-type]
    assert "elsewhere" not in httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN).json()


def test_a_candidate_with_a_changed_input_schema_fails_infra_validation_and_never_takes_traffic(
    server: Server, registry: dict, infra_registry: dict, server_connection: str, monkeypatch
) -> None:
    """v3 requires a field the champion never took: the requests the champion answers get 422 from
    it, the check names the field; v3 is tagged not blessed and rejected, the task is skipped, and a
    deployment that requires the blessing refuses it. Tight limits fail the latency and memory checks."""
    from airflow.sdk.exceptions import AirflowSkipException
    from mlflow import MlflowClient

    from airflow_mlops.exceptions import DeploymentError
    from airflow_mlops.operators.deploy import DeployModelOperator
    from airflow_mlops.operators.infra import InfraValidateOperator
    from airflow_mlops.serving.infra import InfraLimits, validate

    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", str(server.state_dir.parent / "lake"))
    before = httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN).json()
    operator = InfraValidateOperator(
        task_id="infra_validate", model_name=INFRA, version="3", mlflow_conn_id=infra_registry["conn"]
    )
    with pytest.raises(
        AirflowSkipException, match=r"flights_infra v3: infra validation failed: inputs: 0 of the 3 requests"
    ):
        operator.execute(context())  # type: ignore[arg-type]
    tags = MlflowClient(registry["tracking"]).get_model_version(INFRA, "3").tags
    assert tags["infra_blessing"] == "not_blessed" and tags["state"] == "rejected"
    assert "body.rows.0.gate: field required" in tags["state_reason"]
    assert "fields the champion does not take: ['gate']" in tags["state_reason"]
    monkeypatch.setenv("AIRFLOW__MLOPS__REQUIRE_INFRA_BLESSING", "True")
    with pytest.raises(DeploymentError, match=r"its infra_blessing tag is 'not_blessed'"):
        DeployModelOperator(
            task_id="d",
            endpoint="infra",
            model_name=INFRA,
            version="3",
            canary_weight=0.1,
            mlflow_conn_id=infra_registry["conn"],
        ).execute(context())  # type: ignore[arg-type]
    assert httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN).json() == before  # no traffic

    tight = validate(
        {"name": INFRA, "version": "2"},
        None,
        registry["tracking"],
        limits=InfraLimits(max_p99_ms=0.001, max_rss_mb=1),
    )
    failed = {c["check"]: c["detail"] for c in tight["checks"] if not c["passed"]}
    assert not tight["blessed"] and set(failed) == {"latency", "memory"}, tight["checks"]
    assert "(at most 0.001 ms)" in failed["latency"] and "(at most 1 MB)" in failed["memory"]
    missing = validate({"name": INFRA, "version": "9"}, None, registry["tracking"])
    assert [(c["check"], c["passed"]) for c in missing["checks"]] == [("loads", False)]
    assert "cannot load flights_infra version 9" in missing["checks"][0]["detail"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limits": {"max_p99_ms": 0}}, r"infra limits: max_p99_ms must be a positive number, got 0"),
        ({"limits": {"max_rss": 10}}, r"infra limits: unknown fields \['max_rss'\]"),
        ({"limits": {"max_rss_mb": "1G"}}, r"max_rss_mb must be a positive number, got '1G'"),
        ({"sample_requests": -1}, r"sample_requests must be a whole number >= 0, got -1"),
        ({"lookback_days": 0}, r"lookback_days must be positive, got 0"),
    ],
)
def test_bad_infra_validation_arguments_are_refused_when_the_dag_is_parsed(
    kwargs: dict, message: str
) -> None:
    from airflow_mlops.operators.infra import InfraValidateOperator

    with pytest.raises(MLOpsConfigError, match=message):
        InfraValidateOperator(task_id="infra_validate", model_name=INFRA, version="2", **kwargs)


class Traffic:
    """Clients sending real flights to an endpoint in a thread until stopped; ``rows(weight)`` picks
    each request's rows from the candidate's share the endpoint serves now."""

    def __init__(self, server: Server, endpoint: str, rows_for: Any) -> None:
        self.server, self.endpoint, self.rows_for = server, endpoint, rows_for
        self.sent, self.stopped = Counter(), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopped.is_set():
                served = client.get(f"{self.server.url}/v1/admin/deployments", headers=ADMIN).json()
                weight = served.get(self.endpoint, {}).get("policy", {}).get("weight", 1.0)
                for _ in range(10):
                    answer = client.post(
                        f"{self.server.url}/v1/models/{self.endpoint}/predict",
                        json={"rows": self.rows_for(weight)},
                    )
                    self.sent[answer.status_code] += 1

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(30)


def rollout_from_v1(server: Server, infra_registry: dict, endpoint: str, version: str) -> Any:
    """``endpoint`` serving flights_infra v1 alone, and a rollout of ``version`` in three steps."""
    from airflow_mlops.operators.rollout import StepwiseRolloutOperator

    assert deploy(server, endpoint, {"main": {"name": INFRA, "version": "1"}}).status_code == 200
    return StepwiseRolloutOperator(
        task_id="rollout",
        endpoint=endpoint,
        model_name=INFRA,
        version=version,
        steps=[0.25, 0.5, 1.0],
        criteria={"min_requests": 8, "max_latency_ratio": 5.0, "latency_slack_ms": 200},
        poll_interval=0.2,
        step_timeout=60,
        deferrable=False,
        mlflow_conn_id=infra_registry["conn"],
    )


def test_a_stepwise_rollout_takes_every_step_judged_on_its_own_traffic(
    server: Server, registry: dict, infra_registry: dict, server_connection: str
) -> None:
    from mlflow import MlflowClient

    operator = rollout_from_v1(server, infra_registry, "stepwise", "2")
    with Traffic(server, "stepwise", lambda weight: rows(registry, 1)) as traffic:
        result = operator.execute(context())  # type: ignore[arg-type]
    assert [(s["step"], s["weight"], s["healthy"]) for s in result["steps"]] == [
        (1, 0.25, True),
        (2, 0.5, True),
    ]
    assert all(s["candidate_requests"] >= 8 for s in result["steps"]) and set(traffic.sent) == {200}
    assert result["deployment"]["variants"] == {"main": {"name": INFRA, "version": "2"}}
    assert result["deployment"]["reason"].startswith("stepwise rollout: step 3 of 3 (100%)")
    tags = MlflowClient(registry["tracking"]).get_model_version(INFRA, "2").tags
    assert json.loads(tags["rollout"]) == result["steps"]


def test_a_deferred_rollout_resumes_each_step_from_the_trigger_event_alone(
    server: Server, registry: dict, infra_registry: dict, server_connection: str
) -> None:
    """With ``deferrable=True`` every step waits in ``CanaryAnalysisTrigger``; resumed as ``dag.test``
    resumes it (Airflow 3.3 passes the event alone, no ``defer`` kwargs), the rollout goes on from
    the step and the decisions the trigger carried back."""
    import asyncio

    from airflow.sdk.exceptions import TaskDeferred

    operator = rollout_from_v1(server, infra_registry, "deferred", "2")
    operator.deferrable = True
    # Judged on a few requests a step, one slow request is the p99: this test is about resuming.
    operator.criteria = {**operator.criteria, "latency_slack_ms": 5000}
    waits = 0
    with Traffic(server, "deferred", lambda weight: rows(registry, 1)):
        try:
            result = operator.execute(context())  # type: ignore[arg-type]
        except TaskDeferred as deferred:
            while True:
                waits += 1

                async def first_event(trigger: Any = deferred.trigger) -> dict:
                    async for event in trigger.run():
                        return event.payload
                    raise AssertionError("the trigger ended without an event")

                event = asyncio.run(first_event())
                try:
                    result = getattr(operator, deferred.method_name)(context(), event=event)
                    break
                except TaskDeferred as again:
                    deferred = again
    assert waits == 2 and [(s["step"], s["healthy"]) for s in result["steps"]] == [(1, True), (2, True)]
    assert result["deployment"]["variants"] == {"main": {"name": INFRA, "version": "2"}}


def test_a_rollout_whose_second_step_breaches_the_error_budget_rolls_back_and_records_why(
    server: Server, registry: dict, infra_registry: dict, server_connection: str, inbox: Any
) -> None:
    """v3 requires the field ``gate``: callers send it during the first step (both versions answer),
    then stop sending it; at 50 % the candidate refuses its share (422), the primary answers all:
    the rollout puts v1 back alone, records v3 rejected with the step and the reason, and skips."""
    from airflow.sdk.exceptions import AirflowSkipException
    from mlflow import MlflowClient

    operator = rollout_from_v1(server, infra_registry, "breach", "3")

    def flights(weight: float) -> list[dict]:  # with the field until the 50 % step is seen
        row = rows(registry, 1)[0]
        return [row if weight == 0.5 else {**row, "gate": "B12"}]

    with (
        Traffic(server, "breach", flights),
        pytest.raises(
            AirflowSkipException,
            match=r"rollout of flights_infra v3 on breach rolled back at step 2 of 3 \(50%\): FAIL error rate",
        ),
    ):
        operator.execute(context())  # type: ignore[arg-type]
    served = httpx.get(f"{server.url}/v1/admin/deployments", headers=ADMIN).json()["breach"]
    assert served["variants"] == {"main": {"name": INFRA, "version": "1"}} and served["policy"] == {
        "kind": "single"
    }
    assert "rolled back at step 2 of 3" in served["reason"]
    tags = MlflowClient(registry["tracking"]).get_model_version(INFRA, "3").tags
    steps = json.loads(tags["rollout"])
    assert [(s["step"], s["healthy"]) for s in steps] == [(1, True), (2, False)]
    assert "the candidate refused" in steps[1]["reasons"][0]
    assert tags["state"] == "rejected" and "stepwise rollout rolled back at step 2" in tags["state_reason"]
    (mail,) = inbox.wait(1)  # the alert: a local SMTP server, [mlops] alert_email_to
    assert mail["Subject"] == f"[airflow-mlops] rollout of {INFRA} v3 on breach rolled back"
    assert "the candidate refused" in inbox.body(mail) and f"/mlops/models#{INFRA}-v3" in inbox.body(mail)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            [0.5, 0.25, 1.0],
            r"steps must increase and end at 1.0 \(the version alone\), got \[0.5, 0.25, 1.0\]",
        ),
        ([0.1, 0.5], r"steps must increase and end at 1.0"),
        ([0, 1.0], r"every step must be a share within \(0, 1\], got 0 in \[0, 1.0\]"),
        ("0.1,1", r"steps must be a list of traffic shares, got '0.1,1'"),
        ([], r"steps must be a list of traffic shares, got \[\]"),
    ],
)
def test_bad_rollout_steps_are_refused_when_the_dag_is_parsed(steps: Any, message: str) -> None:
    from airflow_mlops.operators.rollout import StepwiseRolloutOperator

    with pytest.raises(MLOpsConfigError, match=message):
        StepwiseRolloutOperator(task_id="rollout", endpoint="e", model_name=INFRA, version="2", steps=steps)
