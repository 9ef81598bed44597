"""An Airflow connection handed to processes without Airflow as fsspec's configuration."""

from __future__ import annotations

import json
import os

import pytest

from airflow_mlops.exceptions import ArtifactNotFoundError, MLOpsConfigError
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


def test_local_paths_stay_pathlib_and_object_store_uris_keep_their_connection(
    lake_conn: str, tmp_path
) -> None:
    from pathlib import Path

    from airflow_mlops.storage import object_path, split_path, uri_of

    assert object_path(f"file://{tmp_path}/r", lake_conn) == Path(tmp_path / "r")
    remote = object_path("s3://lake/reports/r", lake_conn)
    assert uri_of(remote / "evaluation.json") == "s3://lake/reports/r/evaluation.json"
    assert remote.conn_id == lake_conn
    assert uri_of(Path(tmp_path / "r")) == (tmp_path / "r").as_uri()
    # A relocated training set names its splits relative to the manifest.
    assert (
        split_path("test.parquet", f"{tmp_path}/set/manifest.json", None) == tmp_path / "set" / "test.parquet"
    )
    assert uri_of(split_path("s3://lake/set/test.parquet", "s3://lake/set/manifest.json", lake_conn)) == (
        "s3://lake/set/test.parquet"
    )


def test_a_folder_round_trips_through_an_object_store_and_an_empty_prefix_is_an_error(tmp_path) -> None:
    from pathlib import Path

    from upath import UPath

    from airflow_mlops.artifacts import download_folder, upload_folder
    from airflow_mlops.storage import local_folder

    source = tmp_path / "package"
    (source / "code" / "net").mkdir(parents=True)
    (source / "model.pt").write_bytes(b"\0" * (9 << 20))  # over one 8 MiB piece
    (source / "code" / "net" / "__init__.py").write_text("x = 1\n")
    store = UPath("memory://bucket/models/m")
    upload_folder(source, store)
    with local_folder(store) as fetched:
        assert isinstance(fetched, Path) and fetched != source
        assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()) == [
            "code/net/__init__.py",
            "model.pt",
        ]
        assert (fetched / "model.pt").read_bytes() == (source / "model.pt").read_bytes()
    assert not fetched.exists()  # the scratch folder goes with the block
    with pytest.raises(ArtifactNotFoundError, match="memory://bucket/models/none: no objects"):
        download_folder(UPath("memory://bucket/models/none"), tmp_path / "none")


def test_the_plugin_serves_reports_of_a_lake_in_s3_and_nothing_outside_it(
    aws_conn: str, moto_server: str
) -> None:
    """``/mlops/files`` and the Models page read reports of an ``s3://`` lake through the lake's
    connection; a key outside the lake's prefix (however ``..`` spells it), another bucket or a
    file that is not a report is refused before anything is read."""
    import boto3
    from fastapi import HTTPException

    from airflow_mlops.plugins.api import object_report, object_report_bytes

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="plugin-lake")
    s3.put_object(Bucket="plugin-lake", Key="mlops/monitoring/m/drift.html", Body=b"<h1>drift</h1>")
    s3.put_object(Bucket="plugin-lake", Key="secrets/token.json", Body=b"{}")
    lake = "s3://plugin-lake/mlops"
    served = object_report("s3://plugin-lake/mlops/monitoring/m/drift.html", lake, aws_conn)
    assert served.body == b"<h1>drift</h1>" and served.media_type == "text/html"
    for uri, status in (
        ("s3://plugin-lake/mlops/../secrets/token.json", 403),
        ("s3://plugin-lake/secrets/token.json", 403),
        ("s3://other/mlops/monitoring/m/drift.html", 403),
        ("s3://plugin-lake/mlops/monitoring/m/model.pt", 403),
        ("/etc/hostname", 403),
        ("s3://plugin-lake/mlops/monitoring/m/none.html", 404),
    ):
        with pytest.raises(HTTPException) as refused:
            object_report_bytes(uri, lake, aws_conn)
        assert refused.value.status_code == status, uri


def test_the_data_page_lists_the_reports_of_a_lake_in_s3(aws_conn: str, moto_server: str) -> None:
    """Validated and quarantined partitions and the monitors' runs of an ``s3://`` lake, each linked
    by its ``s3://`` URI (which ``/mlops/files`` then serves through the lake's connection)."""
    import boto3
    from airflow.sdk import ObjectStoragePath

    from airflow_mlops.plugins.pages import data_page, data_summary

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="page-lake")
    drift = {
        "window": {"start": "2013-06-01T00:00:00+00:00"},
        "score": 0.31,
        "drifted": ["temp"],
        "columns": [
            {"column": "temp", "metric": "psi", "value": 0.31, "threshold": 0.2, "drifted": True},
            {"column": "dewp", "metric": "psi", "value": 0.04, "threshold": 0.2, "drifted": False},
        ],
    }
    for key, body in {
        "mlops/validated/flights/2013-05.report.html": "<p>ok</p>",
        "mlops/validated/flights/2013-05.parquet": "x",
        "mlops/quarantine/flights/2013-06/20130701T000000/report.html": "<p>bad</p>",
        "mlops/monitoring/flight_delay/manual__2013-06-30/drift.json": json.dumps(drift),
        "mlops/monitoring/flight_delay/manual__2013-06-30/drift.html": "<p>drift</p>",
    }.items():
        s3.put_object(Bucket="page-lake", Key=key, Body=body.encode())
    summary = data_summary(ObjectStoragePath("s3://page-lake/mlops", conn_id=aws_conn))
    assert summary["monitoring"] == [
        {
            "endpoint": "flight_delay",
            "run": "manual__2013-06-30",
            "window_start": "2013-06-01T00:00:00+00:00",
            "drift_score": 0.31,
            "drifted": ["temp"],
            "features": {"temp": 0.31, "dewp": 0.04},
            "auc": None,
            "drift_report": "s3://page-lake/mlops/monitoring/flight_delay/manual__2013-06-30/drift.html",
            "performance_report": "",
        }
    ]
    assert summary["quarantined"] == [
        {
            "table": "flights",
            "partition": "2013-06",
            "report": "s3://page-lake/mlops/quarantine/flights/2013-06/20130701T000000/report.html",
        }
    ]
    page = data_page(summary)
    assert "/mlops/files?uri=s3://page-lake/mlops/validated/flights/2013-05.report.html" in page
    assert "2013-05.parquet" not in page
    assert (
        "/mlops/files?uri=s3://page-lake/mlops/quarantine/flights/2013-06/20130701T000000/report.html" in page
    )
    assert (
        "/mlops/files?uri=s3://page-lake/mlops/monitoring/flight_delay/manual__2013-06-30/drift.html" in page
    )
    assert "<td>2013-06</td>" in page and "temp" in page and "0.31" in page
    empty = data_page(data_summary(ObjectStoragePath("s3://page-lake/nothing", conn_id=aws_conn)))
    assert "Validated partitions" in empty and "s3://" not in empty


def test_the_deployments_page_finds_the_newest_experiment_of_a_lake_in_s3(
    aws_conn: str, moto_server: str
) -> None:
    """In an object store the newest report per endpoint is the last run folder by name (an object
    has no reliable modification time through every store), linked by its ``s3://`` URI."""
    import boto3
    from airflow.sdk import ObjectStoragePath

    from airflow_mlops.plugins.pages import latest_experiments

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="experiment-lake")
    for key, body in {
        "mlops/experiments/flight_delay/manual__2013-06-01/experiment.json": json.dumps({"decision": "old"}),
        "mlops/experiments/flight_delay/manual__2013-06-30/experiment.json": json.dumps({"decision": "new"}),
        "mlops/experiments/flight_delay/manual__2013-06-30/experiment.html": "<p>new</p>",
        "mlops/experiments/flight_delay/manual__2013-07-01/notes.txt": "no report in this run",
        "mlops/experiments/other/run/experiment.json": "{not json",
    }.items():
        s3.put_object(Bucket="experiment-lake", Key=key, Body=body.encode())
    found = latest_experiments(ObjectStoragePath("s3://experiment-lake/mlops", conn_id=aws_conn))
    assert set(found) == {"flight_delay", "other"}
    assert found["other"][0]["decision"].startswith(
        "the report s3://experiment-lake/mlops/experiments/other/run/experiment.json cannot be read: Expecting"
    )  # shown as unreadable, not a broken page
    report, uri = found["flight_delay"]
    assert report == {"decision": "new"}
    assert uri == "s3://experiment-lake/mlops/experiments/flight_delay/manual__2013-06-30/experiment.html"
    assert latest_experiments(ObjectStoragePath("s3://experiment-lake/nothing", conn_id=aws_conn)) == {}


def test_only_the_storage_module_turns_a_file_uri_into_a_local_path() -> None:
    """Issue 21's rule: no code path strips ``file://`` itself to build a local path (which would
    make ``s3://bucket/key`` into the local path ``s3:/bucket/key``). Everything goes through
    ``storage.local_path`` (refusing object store URIs by name) or a path object."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "airflow_mlops"
    offenders = []
    for module in sorted(root.rglob("*.py")):
        if module.name == "storage.py" and module.parent == root:
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("removeprefix", "replace", "lstrip", "split", "partition")
                and any(isinstance(a, ast.Constant) and a.value == "file://" for a in node.args)
            ):
                offenders.append(f"{module.relative_to(root.parent)}:{node.lineno}")
    assert offenders == []


def test_local_path_takes_paths_and_file_uris_and_refuses_object_stores() -> None:
    from pathlib import Path

    from airflow_mlops.storage import local_path

    assert local_path("file:///srv/lake/x.parquet") == Path("/srv/lake/x.parquet")
    spaced = Path("/srv/my lake/100%.parquet")
    assert local_path(spaced.as_uri()) == spaced  # the escapes uri_of writes are read back
    assert local_path("file://localhost/srv/x") == Path("/srv/x")
    assert local_path(Path("/srv/lake")) == Path("/srv/lake") and local_path("rel/x") == Path("rel/x")
    with pytest.raises(
        MLOpsConfigError, match=r"model folder 's3://lake/models/m': a local path or file:// URI"
    ):
        local_path("s3://lake/models/m", "model folder")


def test_the_quarantined_rows_of_a_lake_in_s3_are_read_through_its_connection(
    aws_conn: str, moto_server: str
) -> None:
    """The Data view's quarantined rows from an ``s3://`` lake: the count, the columns and the first
    rows; a key outside the lake's prefix is refused before anything is read."""
    import io

    import boto3
    import pandas as pd

    from airflow_mlops.plugins.api import quarantined_rows

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="quarantine-lake")
    body = io.BytesIO()
    pd.DataFrame({"origin": ["EWR", "JFK", "LGA"], "wind_speed": [1048.4, 12.0, float("nan")]}).to_parquet(
        body
    )
    key = "mlops/quarantine/weather/2013-02/abc/2013-02.invalid.parquet"
    s3.put_object(Bucket="quarantine-lake", Key=key, Body=body.getvalue())
    found = quarantined_rows(f"s3://quarantine-lake/{key}", "s3://quarantine-lake/mlops", aws_conn, limit=2)
    assert found["error"] is None and found["rows"] == 3 and found["columns"] == ["origin", "wind_speed"]
    assert found["sample"] == [{"origin": "EWR", "wind_speed": 1048.4}, {"origin": "JFK", "wind_speed": 12.0}]
    s3.put_object(Bucket="quarantine-lake", Key="private/rows.parquet", Body=body.getvalue())
    for uri in (
        "s3://quarantine-lake/mlops/../private/rows.parquet",
        "s3://quarantine-lake/private/rows.parquet",
    ):
        outside = quarantined_rows(uri, "s3://quarantine-lake/mlops", aws_conn)
        assert outside["rows"] is None and outside["sample"] == [] and "outside the lake" in outside["error"]
