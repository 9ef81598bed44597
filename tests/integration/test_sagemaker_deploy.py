"""SageMakerDeployModelOperator against moto's SageMaker and S3 (a contract test: requests and the
resulting endpoint configurations, not AWS), and the inference container's app on loopback."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import boto3
import httpx
import pytest

from tests.conftest import free_port
from tests.connections import mlflow_conn

pytestmark = pytest.mark.integration
ROLE = "arn:aws:iam::123456789012:role/sagemaker-inference"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/airflow-mlops:0.1.0"


@pytest.fixture(scope="module")
def registry(trained_models: dict, tmp_path_factory) -> str:
    """flight_delay versions 1 (weak) and 2 (challenger) in a registry of their own (read only here)."""
    from mlflow import MlflowClient

    tmp_path = tmp_path_factory.mktemp("sagemaker-registry")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking)
    experiment = client.create_experiment("deploy", artifact_location=str(tmp_path / "artifacts"))
    client.create_registered_model("flight_delay")
    for folder in (trained_models["champion"], trained_models["challenger"]):
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        client.create_model_version("flight_delay", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("flight_delay", "champion", "1")
    return tracking


@pytest.fixture
def sagemaker(aws_conn: str, moto_server: str, monkeypatch):
    """moto's SageMaker. moto has no UpdateEndpoint: the double records the request and reaches the
    state SageMaker ends in (the endpoint serving the new configuration) by re-creating it."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket="ml-models")
    client = boto3.client("sagemaker", endpoint_url=moto_server, region_name="us-east-1")
    updates: list[dict] = []

    def update_endpoint(self, config: dict, wait_for_completion: bool = True, **kwargs) -> dict:
        updates.append(config)
        self.get_conn().delete_endpoint(EndpointName=config["EndpointName"])
        return self.get_conn().create_endpoint(**config)

    configs: list[dict] = []  # the CreateEndpointConfig requests (moto keeps no ShadowProductionVariants)
    create_config = SageMakerHook.create_endpoint_config

    def create_endpoint_config(self, config: dict) -> dict:
        configs.append(config)
        return create_config(self, config)

    monkeypatch.setattr(SageMakerHook, "update_endpoint", update_endpoint)
    monkeypatch.setattr(SageMakerHook, "create_endpoint_config", create_endpoint_config)
    client.updates, client.configs = updates, configs  # type: ignore[attr-defined]
    return client


def deploy(registry: str, endpoint: str = "flight-delay", **arguments) -> dict:
    from airflow_mlops.operators.sagemaker import SageMakerDeployModelOperator

    return SageMakerDeployModelOperator(
        task_id="deploy",
        endpoint=endpoint,
        s3_prefix="s3://ml-models/serving",
        image_uri=IMAGE,
        role_arn=ROLE,
        mlflow_conn_id=mlflow_conn(registry),
        check_interval=1,
        **arguments,
    ).execute({"dag_run": SimpleNamespace(dag_id="flights_training", run_id="r1")})  # type: ignore[arg-type]


def variants_of(sagemaker, endpoint: str) -> tuple[dict, list]:
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    )
    return (
        {v["VariantName"]: (v["ModelName"], v["InitialVariantWeight"]) for v in config["ProductionVariants"]},
        config.get("ShadowProductionVariants", []),
    )


def test_first_deploy_then_a_weighted_canary_then_the_rollout(
    registry: str, sagemaker, moto_server: str
) -> None:
    first = deploy(registry, model_name="flight_delay", version="1", canary_weight=0.1)
    assert first["mode"] == "first"
    assert variants_of(sagemaker, "flight-delay")[0] == {"main": ("flight-delay-v1", 1.0)}
    model = sagemaker.describe_model(ModelName="flight-delay-v1")
    assert model["PrimaryContainer"]["Image"] == IMAGE and model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Environment"] == {
        "MLOPS_MODEL_NAME": "flight_delay",
        "MLOPS_MODEL_VERSION": "1",
    }
    archive = (
        boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
        .get_object(Bucket="ml-models", Key="serving/flight_delay/1/model.tar.gz")["Body"]
        .read()
    )
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert sorted(tar.getnames()) == ["config.json", "model.pt"]

    canary = deploy(registry, model_name="flight_delay", version="2", canary_weight=0.1)
    assert canary["mode"] == "canary"
    assert sagemaker.updates == [
        {"EndpointName": "flight-delay", "EndpointConfigName": canary["deployment"]["config"]}
    ]
    production, shadows = variants_of(sagemaker, "flight-delay")
    assert (
        production == {"main": ("flight-delay-v1", 0.9), "candidate": ("flight-delay-v2", 0.1)}
        and shadows == []
    )

    rollout = deploy(registry, model_name="flight_delay", version="2")
    assert rollout["mode"] == "replace"
    assert variants_of(sagemaker, "flight-delay")[0] == {"main": ("flight-delay-v2", 1.0)}
    again = deploy(registry, model_name="flight_delay", version="2")  # a retry: same configuration, no update
    assert again["deployment"]["config"] == rollout["deployment"]["config"] and len(sagemaker.updates) == 2


def test_ab_and_shadow_policies_become_weighted_and_shadow_variants(registry: str, sagemaker) -> None:
    deploy(
        registry,
        endpoint="ab-test",
        variants={
            "a": {"name": "flight_delay", "alias": "champion"},
            "b": {"name": "flight_delay", "version": "2"},
        },
        policy={"kind": "ab", "weights": {"a": 3, "b": 1}},
    )
    assert variants_of(sagemaker, "ab-test")[0] == {
        "a": ("flight-delay-v1", 3.0),
        "b": ("flight-delay-v2", 1.0),
    }
    deploy(
        registry,
        endpoint="shadowed",
        variants={
            "main": {"name": "flight_delay", "version": "1"},
            "copy": {"name": "flight_delay", "version": "2"},
        },
        policy={"kind": "shadow", "primary": "main", "shadow": "copy"},
    )
    assert variants_of(sagemaker, "shadowed")[0] == {"main": ("flight-delay-v1", 1.0)}
    request = sagemaker.configs[-1]
    assert [(v["VariantName"], v["ModelName"]) for v in request["ShadowProductionVariants"]] == [
        ("copy", "flight-delay-v2")
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {
                "variants": {
                    "a": {"name": "flight_delay", "version": "1"},
                    "b": {"name": "flight_delay", "version": "2"},
                },
                "policy": {"kind": "bandit"},
            },
            "policy 'bandit' needs the airflow-mlops model server",
        ),
        (
            {
                "variants": {"a": {"name": "flight_delay", "version": "1"}},
                "policy": {"kind": "canary", "weight": 2},
            },
            "a canary policy takes exactly 2 variant",
        ),
        (
            {"model_name": "flight_delay", "version": "1", "s3_prefix": "/tmp/models"},
            "s3_prefix must be an s3:// URI",
        ),
    ],
)
def test_refused_deployments_create_nothing(registry: str, sagemaker, arguments: dict, message: str) -> None:
    from airflow_mlops.operators.sagemaker import SageMakerDeployModelOperator

    base = {
        "task_id": "deploy",
        "endpoint": "refused",
        "s3_prefix": "s3://ml-models/serving",
        "image_uri": IMAGE,
        "role_arn": ROLE,
        "mlflow_conn_id": mlflow_conn(registry),
        "check_interval": 1,
    }
    with pytest.raises(ValueError, match=message):
        SageMakerDeployModelOperator(**{**base, **arguments}).execute({})  # type: ignore[arg-type]
    assert sagemaker.list_endpoints()["Endpoints"] == [] or all(
        e["EndpointName"] != "refused" for e in sagemaker.list_endpoints()["Endpoints"]
    )
    assert sagemaker.list_models()["Models"] == [] or all(
        not m["ModelName"].startswith("refused") for m in sagemaker.list_models()["Models"]
    )


def test_the_inference_container_answers_ping_and_invocations(trained_models: dict, tmp_path: Path) -> None:
    import pandas as pd

    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.serving.models import json_rows
    from airflow_mlops.training.spec import manifest_path

    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("airflow-mlops")),
            "serve-sagemaker",
            "--model-dir",
            str(trained_models["challenger"]),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "serve",
        ],
        env={**os.environ, "MLOPS_MODEL_NAME": "flight_delay", "MLOPS_MODEL_VERSION": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                ping = httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, (
                    "the inference app did not start"
                )
                time.sleep(0.2)
        assert ping.json() == {"status": "ok", "model": "flight_delay", "version": "2"}
        manifest = json.loads(manifest_path(trained_models["training_set"]).read_text())
        test = pd.read_parquet(
            manifest_path(manifest["splits"]["test"]["uri"], trained_models["training_set"])
        ).head(10)
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"rows": json_rows(test)}).json()
        assert [p["probability"] for p in answer["predictions"]] == pytest.approx(
            Scorer(trained_models["challenger"])(test).tolist(), abs=1e-6
        )
        bad = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"rows": [{"carrier": "UA"}]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["msg"] == "field required"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
