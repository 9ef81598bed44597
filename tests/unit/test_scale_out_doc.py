"""docs/scale-out.md's examples hold: the Helm values set only options the suite has and take the
connections from Secrets, the model-server StatefulSet's command is one `airflow-mlops serve`
accepts and the connection lists its pods, and the training example renders a Job."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_helm_values_set_suite_options_and_take_every_connection_from_a_secret() -> None:
    from airflow_mlops import get_provider_info

    (values_text, *_) = blocks("yaml")
    values = yaml.safe_load(values_text)
    assert values["images"]["airflow"]["repository"].endswith("/airflow-mlops")
    assert values["executor"] in ("KubernetesExecutor", "CeleryExecutor")
    options = set(get_provider_info()["config"]["mlops"]["options"])
    for entry in values["env"]:
        name = entry["name"]
        if name.startswith("AIRFLOW__MLOPS__"):
            assert name.removeprefix("AIRFLOW__MLOPS__").lower() in options, name
    assert values["env"][1] == {"name": "AIRFLOW__MLOPS__LAKE_URI", "value": "s3://ml-lake/lake"}
    secret_envs = {s["envName"]: s["secretKey"] for s in values["secret"]}
    assert all(name == f"AIRFLOW_CONN_{key.upper()}" for name, key in secret_envs.items())
    assert not any(e["name"].startswith("AIRFLOW_CONN_") for e in values["env"])  # none in plain text
    # The kubectl line makes each secret key the chart reads, with a JSON connection of the right type.
    created = dict(re.findall(r"--from-literal=(\w+)='(\{.*?\})'", values_text))
    assert set(created) == set(secret_envs.values())
    types = {key: json.loads(conn)["conn_type"] for key, conn in created.items()}
    assert types == {
        "aws_default": "aws",
        "mlflow_default": "mlflow",
        "mlops_model_server": "mlopsmodelserver",
        "feast_default": "feast",
    }
    feast = json.loads(created["feast_default"])["extra"]
    assert feast["config_file"] == "feature_store.scaleout.yaml"
    assert (DOC.parents[1] / "feature_repo" / feast["config_file"]).is_file()
    for secret in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[secret]


def test_the_model_server_statefulset_runs_a_valid_serve_command_and_the_connection_lists_its_pods() -> None:
    from airflow_mlops.cli import build_parser

    (_, manifests_text) = blocks("yaml")
    statefulset, pods, traffic = yaml.safe_load_all(manifests_text)
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["airflow-mlops", "serve"]
    args = build_parser().parse_args(command[1:])  # every option is one `serve` has
    assert args.request_log_dir.startswith("s3://") and args.redis_url.startswith("redis://")
    assert container["env"] == [
        {
            "name": "MLOPS_SERVER_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "model-server", "key": "token"}},
        }
    ]
    assert (
        pods["spec"]["clusterIP"] == "None" and statefulset["spec"]["serviceName"] == pods["metadata"]["name"]
    )
    assert traffic["spec"]["selector"] == pods["spec"]["selector"] == {"app": "model-server"}
    (values_text, *_) = blocks("yaml")
    connection = json.loads(
        dict(re.findall(r"--from-literal=(\w+)='(\{.*?\})'", values_text))["mlops_model_server"]
    )
    namespace, port = statefulset["metadata"]["namespace"], args.port
    assert connection["extra"]["replicas"] == [
        f"model-server-{i}.{pods['metadata']['name']}.{namespace}:{port}"
        for i in range(statefulset["spec"]["replicas"])
    ]
    assert connection["host"] == f"{traffic['metadata']['name']}.{namespace}" and connection["port"] == port
    assert shlex.join(command)  # printable as a command line


def test_the_kubernetes_training_example_renders_an_indexed_job_of_gpu_pods() -> None:
    (example,) = blocks("python")
    scope: dict[str, Any] = {}
    exec(compile(example, str(DOC), "exec"), scope)  # the example as written
    train = scope["train"]
    spec = train.build_spec({"dag": SimpleNamespace(dag_id="flights_training"), "run_id": "scheduled__1"})
    job = train.manifests(spec, {})["job"]
    assert job.spec.completions == job.spec.parallelism == 2
    (container,) = job.spec.template.spec.containers
    assert container.resources.limits == {"nvidia.com/gpu": "8"}
    assert container.resources.requests["cpu"] == "32"
    assert json.loads(train.manifests(spec, {})["config_map"].data["spec.json"])["trainer"]["precision"] == (
        "bf16-mixed"
    )


@pytest.mark.parametrize("figure", ["377 s", "122 req/s", "0 failed requests", "p99 251"])
def test_the_capacity_figures_are_those_recorded_in_benchmarks(figure: str) -> None:
    """The capacity table quotes docs/benchmarks.md (or the stack test's own print, recorded there)."""
    recorded = (DOC.parent / "benchmarks.md").read_text()
    assert figure in DOC.read_text() and figure in recorded
