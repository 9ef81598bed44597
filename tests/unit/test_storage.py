"""An Airflow connection handed to processes without Airflow as fsspec's configuration."""

from __future__ import annotations

import json
import os

import pytest

from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.storage import environment, fsspec_environment


@pytest.fixture
def lake_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    conn = {
        "conn_type": "aws",
        "login": "AKIDLAKE",
        "password": "lake-secret",
        "extra": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_LAKE", json.dumps(conn))
    return "lake"


def test_an_aws_connection_becomes_fsspecs_s3_configuration(lake_conn: str) -> None:
    variables = fsspec_environment(lake_conn, {"output_dir": "s3://models/m", "checkpoint_root": "/tmp/c"})
    assert json.loads(variables["FSSPEC_S3"]) == {
        "key": "AKIDLAKE",
        "secret": "lake-secret",
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
    }


def test_local_paths_need_nothing_and_no_connection_leaves_the_default_chain(lake_conn: str) -> None:
    assert (
        fsspec_environment(lake_conn, {"output_dir": "/srv/models", "training_set": "file:///x/m.json"}) == {}
    )
    assert fsspec_environment(None, {"output_dir": "s3://models/m"}) == {}


def test_a_scheme_without_a_handed_on_credential_is_refused_naming_the_argument(lake_conn: str) -> None:
    with pytest.raises(MLOpsConfigError, match=r"training_set 'gs://b/m.json': .* must be s3://"):
        fsspec_environment(lake_conn, {"output_dir": "s3://models/m", "training_set": "gs://b/m.json"})


def test_the_environment_block_sets_the_configuration_and_restores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fsspec.config

    monkeypatch.delenv("FSSPEC_S3", raising=False)
    with environment({"FSSPEC_S3": json.dumps({"endpoint_url": "http://e"})}):
        assert os.environ["FSSPEC_S3"] and fsspec.config.conf["s3"] == {"endpoint_url": "http://e"}
    assert "FSSPEC_S3" not in os.environ and "s3" not in fsspec.config.conf
