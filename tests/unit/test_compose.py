"""docker/compose.yaml declares the native scale-out stack (devtools/stack.py): the same services,
published ports, variables, replica commands and load-balancer settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.stack import PORTS, SERVICES, environment, nginx_conf, ports, s3_environment

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
#: Which of PORTS each service publishes.
PUBLISHED = {
    "postgres": "postgres",
    "redis": "redis",
    "s3": "s3",
    "mlflow": "mlflow",
    "api-server": "api",
    "triggerer": "triggerer_logs",
    "worker1": "worker1_logs",
    "worker2": "worker2_logs",
    "replica1": "replica1",
    "replica2": "replica2",
    "model-server": "model_server",
}
#: Only in the compose file: the migration and bucket set-up the native `up` runs as steps.
COMPOSE_ONLY_SERVICES = {"airflow-init"}
#: The secrets: the native stack makes them (devtools.stack._secrets), compose takes them from the shell.
SECRETS = {"token": "a-token", "jwt_secret": "a-jwt", "secret_key": "a-key", "fernet_key": "a-fernet"}
COMPOSE_SECRETS = {
    "MLOPS_SERVER_TOKEN": "token",
    "AIRFLOW_JWT_SECRET": "jwt_secret",
    "AIRFLOW_SECRET_KEY": "secret_key",
    "AIRFLOW_FERNET_KEY": "fernet_key",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_same_services_and_published_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == set(SERVICES) | COMPOSE_ONLY_SERVICES
    assert set(PUBLISHED) <= set(SERVICES) and set(PUBLISHED.values()) == set(PORTS)
    for service in SERVICES:
        key = PUBLISHED.get(service)
        assert services[service].get("ports") == ([f"{PORTS[key]}:{PORTS[key]}"] if key else None), service


def _normal(value: str, paths: dict[str, str]) -> Any:
    for native, contained in paths.items():
        value = value.replace(native, contained)
    value = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: SECRETS[COMPOSE_SECRETS[m.group(1)]], value)
    value = re.sub(r"[\w.-]+(?=:2\d{4}\b)", "HOST", value)  # 127.0.0.1:25432 and postgres:25432 alike
    value = re.sub(r'"host": "(127\.0\.0\.1|model-server|mlflow)"', '"host": "HOST"', value)
    return json.loads(value) if value.startswith("{") else value


def test_the_same_variables_with_the_same_values_but_hosts_and_paths(compose: dict[str, Any]) -> None:
    root, dags = Path("/srv/stack"), ROOT / "dags"
    native = environment(root, ports(), dags, SECRETS)
    contained = compose["x-environment"]
    assert set(contained) == set(native)
    paths = {
        str(root / "data"): "/data",
        str(root / "airflow"): "/opt/airflow-mlops/airflow",
        str(dags.parent): "/opt/airflow-mlops",
    }
    for key, value in native.items():
        assert _normal(value, paths) == _normal(str(contained[key]), {}), key
    for worker in ("worker1", "worker2"):
        assert compose["services"][worker]["environment"]["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == str(
            PORTS[f"{worker}_logs"]
        )


def machine_free_request_log() -> str:
    """The replicas' shared request log: in S3, as in the native stack (and the monitors' setting)."""
    return environment(Path("/srv/stack"), ports(), ROOT / "dags", SECRETS)["AIRFLOW__MLOPS__REQUEST_LOG_URI"]


def test_no_volume_is_shared_and_the_s3_processes_get_the_same_store(compose: dict[str, Any]) -> None:
    """No data volume between containers (only Postgres keeps its own); MLflow and the replicas reach
    the store with the native stack's S3 variables, MLflow's artifacts in the bucket."""
    assert set(compose.get("volumes") or {}) == {"postgres"}
    for name, service in compose["services"].items():
        volumes = [v.split(":")[0] for v in service.get("volumes", []) if not v.startswith("./")]
        assert volumes in ([], ["postgres"]) and (name == "postgres" or not volumes), (name, volumes)
    native = {k: _normal(v, {}) for k, v in s3_environment(ports()).items()}
    for name in ("mlflow", "replica1", "replica2"):
        contained = {k: _normal(str(v), {}) for k, v in compose["services"][name]["environment"].items()}
        assert {k: contained.get(k) for k in native} == native, name
    command = compose["services"]["mlflow"]["command"]
    assert command[command.index("--artifacts-destination") + 1] == "s3://mlops/mlflow-artifacts"


def test_the_replicas_and_their_load_balancer_are_configured_alike(compose: dict[str, Any]) -> None:
    for replica in ("replica1", "replica2"):
        command = compose["services"][replica]["command"]
        assert command[:2] == ["airflow-mlops", "serve"]
        options = dict(zip(command[2::2], command[3::2], strict=True))
        assert options == {
            "--host": "0.0.0.0",
            "--port": str(PORTS[replica]),
            "--state-dir": "/data/serving",  # the container's own scratch
            "--request-log-dir": machine_free_request_log(),
            "--tracking-uri": f"http://mlflow:{PORTS['mlflow']}",
            "--follow-aliases-every": "2",
            "--redis-url": f"redis://redis:{PORTS['redis']}/2",  # as the native stack's replicas
        }

    def settings(conf: str) -> tuple[set[str], list[str], set[str]]:
        lines = [line.strip() for line in conf.splitlines()]
        proxy = {
            line
            for line in lines
            if line.startswith(("proxy_", "client_", "keepalive", "worker_")) and "_temp_path" not in line
        }  # the native stack's own folders
        upstreams = [
            re.sub(r"^server [\w.-]+:", "server HOST:", line) for line in lines if line.startswith("server ")
        ]
        listens = {
            line.split()[-1].rstrip(";").rpartition(":")[2] for line in lines if line.startswith("listen ")
        }
        return proxy, upstreams, listens

    native = settings(nginx_conf(Path("/srv/stack"), ports()))
    assert settings((ROOT / "docker" / "nginx.conf").read_text()) == native
    assert native[2] == {str(PORTS["model_server"])}


def test_the_dockerfile_installs_the_locked_requirements_and_the_cpu_torch() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "-r requirements/lock.txt" in dockerfile and "download.pytorch.org/whl/cpu" in dockerfile
    for folder in ("airflow_mlops/", "dags/", "feature_repo/"):
        assert f"COPY {folder} {folder}" in dockerfile


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed on this machine")
    env = {**{name: SECRETS[key] for name, key in COMPOSE_SECRETS.items()}, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
