"""The Kubernetes backend of the training operator, without a cluster: the rendered objects (an
Indexed Job of one pod per node, the headless Service of the rendezvous, the spec's ConfigMap, the
credentials' Secret) and the task's dealings with the API (create, wait, read the result from S3,
delete), against a recording stand-in for the cluster's API."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

pytestmark = pytest.mark.usefixtures("aws_conn")
BUCKET = "k8s-lake"


@pytest.fixture
def lake(moto_server: str) -> str:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="training_sets/v1/manifest.json", Body=b'{"splits": {}}')
    return f"s3://{BUCKET}"


def operator(lake: str, **overrides: Any) -> Any:
    from airflow_mlops.operators.kubernetes import KubernetesLightningTrainOperator

    arguments: dict[str, Any] = {
        "task_id": "train",
        "image": "registry.example.com/airflow-mlops:0.1.0-cuda",
        "namespace": "ml",
        "training_set": f"{lake}/training_sets/v1/manifest.json",
        "output_dir": f"{lake}/models/run-1",
        "checkpoint_root": f"{lake}/checkpoints",
        "model": "airflow_mlops.training.tabular:TabularMLP",
        "features": {"label": "y", "task": "binary", "numeric": ["x"]},
        "num_nodes": 3,
        "devices": 8,
        "accelerator": "gpu",
        "precision": "bf16-mixed",
        "master_port": 29400,
        "container_resources": {"requests": {"cpu": "16", "memory": "64Gi"}},
        "mlflow_conn_id": None,
        "storage_conn_id": "aws_default",
        "poll_interval": 0,
        **overrides,
    }
    return KubernetesLightningTrainOperator(**arguments)


def context() -> Any:
    return {"dag": SimpleNamespace(dag_id="flights_training"), "run_id": "manual__2026-11-30T00:00:00+00:00"}


def test_one_pod_per_node_with_gpus_a_rendezvous_through_a_headless_service_and_no_secret_in_a_pod(
    lake: str,
) -> None:
    from kubernetes.client import ApiClient

    op = operator(lake)
    spec = op.build_spec(context())
    secrets = {"FSSPEC_S3": '{"key": "AKIA-SECRET", "secret": "very-secret"}'}
    objects = op.manifests(spec, secrets)
    rendered = {kind: ApiClient().sanitize_for_serialization(obj) for kind, obj in objects.items()}
    name = rendered["job"]["metadata"]["name"]
    assert name.startswith("train-train-") and len(name) <= 52 and name == name.lower()
    assert {r["metadata"]["name"] for r in rendered.values()} == {name}
    assert {r["metadata"]["namespace"] for r in rendered.values()} == {"ml"}

    job = rendered["job"]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] == 3
    assert job["backoffLimit"] == 0  # Airflow's retry resumes from the checkpoint in S3
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["subdomain"] == name
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/airflow-mlops:0.1.0-cuda"
    command = container["command"]
    options = dict(zip(command[4::2], command[5::2], strict=True))
    assert command[:4] == ["python", "-m", "airflow_mlops.training", "/etc/airflow-mlops/spec.json"]
    assert options == {
        "--nproc-per-node": "8",
        "--nnodes": "3",
        "--node-rank": "$(JOB_COMPLETION_INDEX)",
        "--rdzv-endpoint": f"{name}-0.{name}:29400",  # pod 0's name in the headless Service's DNS
        "--rdzv-id": name,
    }
    assert container["resources"] == {
        "requests": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "8"},
        "limits": {"nvidia.com/gpu": "8"},
    }
    assert container["envFrom"] == [{"secretRef": {"name": name}}]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}
    assert volumes[mounts["/etc/airflow-mlops"]]["configMap"] == {"name": name}

    service = rendered["service"]["spec"]
    assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
    assert service["selector"] == job["template"]["metadata"]["labels"]
    assert service["ports"] == [{"name": "rendezvous", "port": 29400}]

    shipped = json.loads(rendered["config_map"]["data"]["spec.json"])
    assert shipped["trainer"] | {"devices": 8, "num_nodes": 3, "accelerator": "gpu"} == shipped["trainer"]
    assert shipped["checkpoint_dir"].startswith(f"{lake}/checkpoints/flights_training/manual__")
    # The credentials are in the Secret alone: not in the Job, the Service or the spec.
    assert rendered["secret"]["stringData"] == secrets
    for kind in ("job", "service", "config_map"):
        text = json.dumps(rendered[kind])
        assert "very-secret" not in text and "AKIA-SECRET" not in text, kind


def test_a_cpu_job_asks_for_no_gpu() -> None:
    op = operator("s3://b", accelerator="cpu", devices=2, num_nodes=1, container_resources=None)
    spec = op.build_spec(context())
    container = op.manifests(spec, {})["job"].spec.template.spec.containers[0]
    assert container.resources is None and "--nnodes" in container.command


class Cluster:
    """Records what the operator asks of the Kubernetes API; the Job ends as ``outcome`` says."""

    def __init__(self, outcome: str, on_wait: Any = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.outcome, self.on_wait = outcome, on_wait
        recorder = self

        class Api:
            def __getattr__(self, method: str) -> Any:
                def call(*args: Any, **kwargs: Any) -> Any:
                    body = args[1] if len(args) > 1 and not isinstance(args[1], str) else None
                    recorder.calls.append((method, body.metadata.name if body is not None else args[0]))
                    return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name="pod-0"))])

                return call

        self.core_v1_client = self.batch_v1_client = Api()

    def __call__(self, conn_id: str) -> Cluster:
        return self

    def wait_until_job_complete(self, name: str, namespace: str, job_poll_interval: float) -> Any:
        from kubernetes.client import models as k8s

        self.calls.append(("wait", name))
        if self.on_wait:
            self.on_wait()
        condition = k8s.V1JobCondition(type=self.outcome, status="True", reason="BackoffLimitExceeded")
        return k8s.V1Job(status=k8s.V1JobStatus(conditions=[condition]))

    is_job_failed = staticmethod(KubernetesHook.is_job_failed)  # the provider's reading of the status

    def get_pod_logs(self, name: str, namespace: str) -> Any:
        self.calls.append(("logs", name))
        return SimpleNamespace(stream=lambda: iter([b"epoch 1\nepoch 2\n"]))


def test_the_task_creates_the_objects_waits_reads_the_result_from_s3_and_deletes_them(
    lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow.providers.cncf.kubernetes.hooks.kubernetes as provider
    from airflow.sdk import ObjectStoragePath

    op = operator(lake)
    spec = op.build_spec(context())
    result = {"metrics": {"test_auc": 0.7}, "samples_per_s": 1.0, "mlflow_run_id": None}

    def trained() -> None:  # what rank 0 writes when the pods finish
        ObjectStoragePath(f"{spec.output_dir}/result.json", conn_id="aws_default").write_text(
            json.dumps(result)
        )

    cluster = Cluster("Complete", on_wait=trained)
    monkeypatch.setattr(provider, "KubernetesHook", cluster)
    assert op.train(spec) == result
    name = op.object_name(spec)
    assert cluster.calls == [
        ("create_namespaced_secret", name),
        ("create_namespaced_config_map", name),
        ("create_namespaced_service", name),
        ("create_namespaced_job", name),
        ("wait", name),
        ("list_namespaced_pod", "ml"),
        ("logs", "pod-0"),
        ("delete_namespaced_job", name),
        ("delete_namespaced_service", name),
        ("delete_namespaced_config_map", name),
        ("delete_namespaced_secret", name),
    ]


def test_a_failed_job_fails_the_task_and_leaves_nothing_behind(
    lake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow.providers.cncf.kubernetes.hooks.kubernetes as provider

    from airflow_mlops.exceptions import TrainingError

    op = operator(lake)
    spec = op.build_spec(context())
    cluster = Cluster("Failed")
    monkeypatch.setattr(provider, "KubernetesHook", cluster)
    with pytest.raises(
        TrainingError, match=r"Kubernetes Job ml/train-train-\w+ failed: BackoffLimitExceeded"
    ):
        op.train(spec)
    assert [method for method, _ in cluster.calls[-4:]] == [
        "delete_namespaced_job",
        "delete_namespaced_service",
        "delete_namespaced_config_map",
        "delete_namespaced_secret",
    ]


@pytest.mark.parametrize("argument", ["training_set", "output_dir", "checkpoint_root"])
def test_local_paths_are_refused_before_anything_is_created(
    lake: str, argument: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow.providers.cncf.kubernetes.hooks.kubernetes as provider
    from airflow.sdk.exceptions import AirflowFailException

    op = operator(lake, **{argument: str(tmp_path / argument)})
    cluster = Cluster("Complete")
    monkeypatch.setattr(provider, "KubernetesHook", cluster)
    with pytest.raises(
        AirflowFailException, match=rf"{argument} '.*': the Kubernetes backend needs an s3:// URI"
    ):
        op.train(op.build_spec(context()))
    assert cluster.calls == []
