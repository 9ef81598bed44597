"""SageMakerLightningTrainOperator against moto's SageMaker and S3, with a double of the platform
that runs the job's own container command (entrypoint and arguments from the request) the way a
SageMaker instance does: channels downloaded to <root>/input/data, resourceconfig.json, checkpoints
synced with the CheckpointConfig URI, <root>/model uploaded as model.tar.gz."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from tests.connections import mlflow_conn
from tests.training_sets import write_training_set

pytestmark = pytest.mark.integration
ROLE = "arn:aws:iam::123456789012:role/sagemaker-training"


@pytest.fixture(scope="module")
def training_set(tmp_path_factory) -> str:
    return write_training_set(tmp_path_factory.mktemp("training-set"))


@pytest.fixture
def s3(aws_conn: str, moto_server: str):
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    client.create_bucket(Bucket="ml-jobs")
    return client


def _sync_down(s3, uri: str, folder: Path) -> None:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        target = folder / item["Key"][len(prefix) :].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, item["Key"], str(target))


class Platform:
    """Runs each created job on this machine as one SageMaker instance (host algo-1) would."""

    def __init__(self, s3, root: Path) -> None:
        self.s3, self.root, self.jobs = s3, root, []

    def run(self, config: dict) -> None:
        job = self.root / config["TrainingJobName"]
        for channel in config["InputDataConfig"]:
            _sync_down(
                self.s3,
                channel["DataSource"]["S3DataSource"]["S3Uri"],
                job / "input" / "data" / channel["ChannelName"],
            )
        checkpoints = config["CheckpointConfig"]["S3Uri"]
        _sync_down(self.s3, checkpoints, job / "checkpoints")  # a new job starts from the synced checkpoints
        (job / "input" / "config").mkdir(parents=True)
        (job / "input" / "config" / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
        )
        algorithm = config["AlgorithmSpecification"]
        entrypoint = [
            sys.executable if word == "python" else word for word in algorithm["ContainerEntrypoint"]
        ]
        arguments = [
            str(job / a.removeprefix("/opt/ml/")) if a.startswith("/opt/ml/") else a
            for a in algorithm["ContainerArguments"]
        ]
        env = {
            **os.environ,
            **config["Environment"],
            "MLOPS_SAGEMAKER_ROOT": str(job),
            "TRAINING_JOB_NAME": config["TrainingJobName"],
            # The image's code: the provider installed, the DAG folder's packages on the path
            # (docker/Dockerfile sets the same PYTHONPATH).
            "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "dags"),
        }
        subprocess.run([*entrypoint, *arguments], check=True, env=env, capture_output=True, timeout=300)
        bucket, _, prefix = checkpoints.removeprefix("s3://").partition("/")
        for path in (job / "checkpoints").rglob("*"):
            if path.is_file():
                self.s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(job / 'checkpoints')}")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            for path in (job / "model").iterdir():
                tar.add(path, arcname=path.name)
        bucket, _, key = config["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://").partition("/")
        self.s3.put_object(
            Bucket=bucket,
            Key=f"{key}/{config['TrainingJobName']}/output/model.tar.gz",
            Body=archive.getvalue(),
        )
        self.jobs.append(config)


@pytest.fixture
def platform(s3, tmp_path: Path, monkeypatch) -> Platform:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    double = Platform(s3, tmp_path / "instances")
    create = SageMakerHook.create_training_job

    def create_and_run(self, config, *args, **kwargs):
        response = create(self, config, wait_for_completion=False)  # moto records the job (Completed)
        double.run(config)
        return response

    monkeypatch.setattr(SageMakerHook, "create_training_job", create_and_run)
    return double


def context(try_number: int = 1) -> dict:
    return {
        "dag": SimpleNamespace(dag_id="flights_training"),
        "run_id": "manual__2013-03-01",
        "ti": SimpleNamespace(map_index=-1, try_number=try_number),
    }


def operator(training_set: str, **overrides):
    from airflow_mlops.operators.sagemaker import SageMakerLightningTrainOperator

    arguments = {
        "task_id": "train_sagemaker",
        "training_set": training_set,
        "s3_prefix": "s3://ml-jobs/jobs",
        "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/airflow-mlops:latest",
        "role_arn": ROLE,
        "instance_type": "ml.g5.12xlarge",
        "devices": 1,
        "accelerator": "cpu",
        "precision": "32-true",
        "hyperparameters": {"hidden": 16},
        "model": "flights.model:FlightDelayModel",
        "data": "flights.model:FlightDataModule",
        "batch_size": 512,
        "max_epochs": 2,
        "check_interval": 1,
        **overrides,
    }
    return SageMakerLightningTrainOperator(**arguments)


def test_a_spec_runs_as_a_sagemaker_job_and_a_retry_resumes_from_its_checkpoints(
    training_set: str, platform: Platform, moto_server: str
) -> None:
    first = operator(training_set).execute(context())  # type: ignore[arg-type]

    job = first["sagemaker"]["job_name"]
    described = boto3.client(
        "sagemaker", endpoint_url=moto_server, region_name="us-east-1"
    ).describe_training_job(TrainingJobName=job)
    assert described["AlgorithmSpecification"]["ContainerArguments"] == [
        "/opt/ml/input/data/spec/spec.json",
        "--sagemaker",
    ]
    assert described["ResourceConfig"] == {
        "InstanceType": "ml.g5.12xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 50,
    }
    assert {c["ChannelName"] for c in described["InputDataConfig"]} == {"spec", "training"}
    assert first["model_uri"] == f"s3://ml-jobs/jobs/output/{job}/output/model.tar.gz"
    assert first["world_size"] == 1 and first["metrics"]["test_auc"] > 0.6 and first["resumed_from"] is None
    staged = json.loads(
        platform.s3.get_object(Bucket="ml-jobs", Key=f"jobs/{job}/training/manifest.json")["Body"].read()
    )
    assert {s["uri"] for s in staged["splits"].values()} == {
        "train.parquet",
        "validation.parquet",
        "test.parquet",
    }

    # The retry is a new job with the same CheckpointConfig: it resumes after the epochs already done.
    second = operator(training_set, max_epochs=3).execute(context(try_number=2))  # type: ignore[arg-type]
    assert second["sagemaker"]["job_name"] != job and second["epochs"] == 3
    assert second["resumed_from"] and second["resumed_from"].endswith("last.ckpt")
    assert platform.jobs[0]["CheckpointConfig"]["S3Uri"] == platform.jobs[1]["CheckpointConfig"]["S3Uri"]


def test_bad_input_stages_and_starts_nothing(training_set: str, platform: Platform) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    prefix = {"s3_prefix": "s3://ml-jobs/refused"}
    with pytest.raises(AirflowFailException, match=r"hyperparameters \['width'\] are not arguments"):
        operator(training_set, hyperparameters={"width": 3}, **prefix).execute(context())  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match=r"'sqlite:////tmp/m.db' is local to this machine"):
        operator(training_set, mlflow_conn_id=mlflow_conn("sqlite:////tmp/m.db"), **prefix).execute(context())  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match=r"training_set: '/nowhere/manifest.json' does not exist"):
        operator("/nowhere/manifest.json", **prefix).execute(context())  # type: ignore[arg-type]
    with pytest.raises(AirflowFailException, match=r"s3_prefix must be an s3:// URI, got '/tmp/jobs'"):
        operator(training_set, s3_prefix="/tmp/jobs").execute(context())  # type: ignore[arg-type]
    assert platform.jobs == []
    assert "Contents" not in platform.s3.list_objects_v2(Bucket="ml-jobs", Prefix="refused/")


def test_deferrable_waiting_hands_the_job_to_the_triggerer(training_set: str, s3, monkeypatch) -> None:
    import asyncio

    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
    from airflow.sdk.exceptions import TaskDeferred

    describe = SageMakerHook.describe_training_job
    monkeypatch.setattr(
        SageMakerHook,
        "describe_training_job",  # the job has just started
        lambda self, name: {**describe(self, name), "TrainingJobStatus": "InProgress"},
    )
    task = operator(training_set, deferrable=True, print_log=False)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(context())  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrigger) and deferred.value.method_name == "execute_complete"
    monkeypatch.setattr(SageMakerHook, "describe_training_job", describe)

    async def first_event():  # the triggerer's side: the provider's waiter polls moto until Completed
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(first_event())
    assert payload["status"] == "success"
    # No model.tar.gz: the double did not run this job, so completing names what is missing.
    with pytest.raises(Exception, match=r"NoSuchKey|Not Found|404|does not exist"):
        task.execute_complete(context(), payload)  # type: ignore[arg-type]


def test_the_driver_reads_the_hosts_of_a_multi_instance_job(tmp_path: Path) -> None:
    from airflow_mlops.training.launch import sagemaker_layout
    from airflow_mlops.training.spec import SpecError, TrainingSpec

    (tmp_path / "input" / "config").mkdir(parents=True)
    config = tmp_path / "input" / "config" / "resourceconfig.json"
    config.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-3", "algo-1", "algo-2"]}))
    spec = TrainingSpec(
        model="m:M",
        data="d:D",
        training_set="x",
        output_dir="y",
        checkpoint_dir="z",
        trainer={"devices": 8, "num_nodes": 3},
    )
    args = argparse.Namespace(nproc_per_node=1, nnodes=1, node_rank=0, rdzv_endpoint="", rdzv_id="")
    placed = sagemaker_layout(spec, args, tmp_path)
    assert (args.nnodes, args.node_rank, args.nproc_per_node, args.rdzv_endpoint) == (3, 1, 8, "algo-1:29400")
    assert placed.training_set == str(tmp_path / "input/data/training/manifest.json")
    assert placed.output_dir == str(tmp_path / "model") and placed.checkpoint_dir == str(
        tmp_path / "checkpoints"
    )
    config.write_text(json.dumps({"current_host": "algo-9", "hosts": ["algo-1"]}))
    with pytest.raises(SpecError, match="does not name this host"):
        sagemaker_layout(spec, args, tmp_path)
