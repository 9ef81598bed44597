"""MlflowHook on real connections (environment variables) and a real local MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_mlops.exceptions import MLOpsConfigError, MLOpsError
from airflow_mlops.hooks.mlflow import MlflowHook, mlflow_connection

pytestmark = pytest.mark.integration


def connect(monkeypatch: pytest.MonkeyPatch, fields: dict) -> MlflowHook:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_UNDER_TEST", json.dumps({"conn_type": "mlflow", **fields}))
    for variable in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    return MlflowHook("mlflow_under_test")


def test_a_local_store_with_its_artifacts_beside_it(tmp_path: Path, monkeypatch) -> None:
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    hook = connect(monkeypatch, {"extra": {"tracking_uri": uri}})
    assert hook.tracking_uri == uri and hook.credentials_env() == {}
    assert hook.artifact_location == str(tmp_path / "store" / "artifacts")
    assert hook.test_connection() == (True, f"MLflow at {uri} answered")

    report = tmp_path / "report.json"
    report.write_text("{}")
    run_id = hook.log_run(
        "monitoring",
        "drift 2013-03",
        tags={"endpoint": "e"},
        params={"long": "x" * 900},
        metrics={"psi": 0.25, "nan": float("nan"), "none": None},
        files=[report.as_uri()],
    )
    client = hook.get_conn()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["endpoint"] == "e"
    assert run.data.metrics == {"psi": 0.25}  # non-finite and missing values are left out, not lost as 0
    assert len(run.data.params["long"]) == 500
    assert [a.path for a in client.list_artifacts(run_id)] == ["report.json"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location.removeprefix("file://") == str(tmp_path / "store" / "artifacts")
    assert hook.get_or_create_experiment("monitoring") == run.info.experiment_id


def test_a_tracking_server_with_a_token_or_basic_auth_keeps_them_out_of_the_uri(monkeypatch) -> None:
    hook = connect(monkeypatch, {"host": "mlflow.internal", "port": 5000, "password": "s3cret-token"})
    assert hook.tracking_uri == "http://mlflow.internal:5000"
    assert hook.credentials_env() == {"MLFLOW_TRACKING_TOKEN": "s3cret-token"}
    import os

    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "s3cret-token"  # what MLflow reads per request
    hook = connect(
        monkeypatch, {"host": "mlflow.internal", "schema": "https", "login": "ana", "password": "pw"}
    )
    assert hook.tracking_uri == "https://mlflow.internal"
    assert hook.credentials_env() == {"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": "pw"}
    assert hook.artifact_location is None  # the server decides


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"host": "http://mlflow:5000"},
            r"host must be a host name, without a scheme .*'http://mlflow:5000'",
        ),
        ({"host": "mlflow", "schema": "ftp"}, r"scheme must be 'http' or 'https', got 'ftp'"),
        ({}, r"give a tracking server's host, or a local store's URI as extra 'tracking_uri'"),
        ({"extra": {"tracking_uri": "http://mlflow:5000"}}, r"extra 'tracking_uri' is for a local store"),
    ],
)
def test_bad_connections_name_the_field_and_the_value(monkeypatch, fields: dict, message: str) -> None:
    hook = connect(monkeypatch, fields)
    with pytest.raises(MLOpsConfigError, match=message) as raised:
        hook.tracking_uri  # noqa: B018
    assert isinstance(raised.value, MLOpsError) and isinstance(raised.value, ValueError)
    assert "mlflow_under_test" in str(raised.value)


def test_an_unreachable_server_fails_the_connection_test(monkeypatch) -> None:
    from tests.conftest import free_port  # a port nobody listens on

    hook = connect(monkeypatch, {"host": "127.0.0.1", "port": free_port()})
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    ok, message = hook.test_connection()
    assert not ok and message.startswith("MLflow at http://127.0.0.1:")


def test_connection_fields_from_a_uri_round_trip_through_the_hook(tmp_path: Path, monkeypatch) -> None:
    server = mlflow_connection("https://mlflow.example.com:8443")
    assert server == {"conn_type": "mlflow", "host": "mlflow.example.com", "schema": "https", "port": 8443}
    assert connect(monkeypatch, {k: v for k, v in server.items() if k != "conn_type"}).tracking_uri == (
        "https://mlflow.example.com:8443"
    )
    local = mlflow_connection(f"sqlite:///{tmp_path / 'm.db'}", artifact_location="/srv/artifacts")
    hook = connect(monkeypatch, {"extra": local["extra"]})
    assert hook.artifact_location == "/srv/artifacts"


def test_an_operator_without_a_connection_id_names_it(monkeypatch) -> None:
    from airflow_mlops.operators.registry import PromoteModelOperator

    operator = PromoteModelOperator(task_id="p", name="m", version="1", mlflow_conn_id="")
    with pytest.raises(
        MLOpsConfigError, match="PromoteModelOperator: mlflow_conn_id is required here, got ''"
    ):
        operator.mlflow_hook  # noqa: B018


def test_mlflows_own_api_works_on_the_connection_inside_activated_and_not_after(
    tmp_path: Path, monkeypatch
) -> None:
    """A user's own logging (mlflow.start_run, log_model) reaches the connection's store, in the
    experiment created with its artifact location; afterwards the process is as it was."""
    import os

    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "sqlite:////elsewhere/registry.db")
    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    hook = connect(monkeypatch, {"extra": {"tracking_uri": uri}})
    with hook.activated("mine") as experiment_id, mlflow.start_run(experiment_id=experiment_id) as run:
        assert mlflow.get_tracking_uri() == uri and mlflow.get_registry_uri() == uri
        mlflow.log_metric("rmse", 3.5)
    assert hook.get_conn().get_run(run.info.run_id).data.metrics == {"rmse": 3.5}
    experiment = hook.get_conn().get_experiment(experiment_id)
    assert experiment.name == "mine"
    assert experiment.artifact_location.removeprefix("file://") == str(tmp_path / "store" / "artifacts")
    assert mlflow.get_tracking_uri() == before and "MLFLOW_TRACKING_URI" not in os.environ
    assert os.environ["MLFLOW_REGISTRY_URI"] == "sqlite:////elsewhere/registry.db"
    monkeypatch.delenv("MLFLOW_REGISTRY_URI")  # the environment's URI did not become a global
    assert mlflow.get_registry_uri() != "sqlite:////elsewhere/registry.db"

    server = connect(monkeypatch, {"host": "mlflow.internal", "port": 5000, "password": "s3cret-token"})
    with server.activated():
        assert os.environ["MLFLOW_TRACKING_TOKEN"] == "s3cret-token"
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ
