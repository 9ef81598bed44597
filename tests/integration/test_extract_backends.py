"""SqlExtractOperator against other backends: a real PostgreSQL server, and s3:// on moto's server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from flights.source import seed_source_db

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def run_monthly(month: int):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "flights_ingest.py")).get_dag("flights_monthly")
    return dag.test(logical_date=datetime(2013, month, 1, tzinfo=UTC))


def test_monthly_extract_from_postgres_matches_sqlite(
    airflow_db, postgres_url, source_conn, source_db, lake, monkeypatch
) -> None:
    engine = create_engine(postgres_url)
    seed_source_db(engine, months=[1])
    seed_source_db(engine, months=[1])  # idempotent: still one copy
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM flights WHERE month = 1")).scalar_one() == 27004
    engine.dispose()
    url = make_url(postgres_url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_FLIGHTS_SOURCE",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": url.host,
                "port": url.port,
                "login": url.username,
                "schema": url.database,
            }
        ),
    )

    run = run_monthly(1)
    assert str(run.state) == "success"
    from_postgres = pq.read_table(lake / "raw" / "flights" / "2013-01.parquet")

    monkeypatch.setenv(
        "AIRFLOW_CONN_FLIGHTS_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(source_db)})
    )
    (lake / "raw" / "flights" / "2013-01.parquet").rename(lake / "postgres.parquet")
    assert str(run_monthly(1).state) == "success"
    from_sqlite = pq.read_table(lake / "raw" / "flights" / "2013-01.parquet")
    assert from_postgres.schema == from_sqlite.schema  # the recorded _schema.json holds across backends
    pd.testing.assert_frame_equal(from_postgres.to_pandas(), from_sqlite.to_pandas())


def test_monthly_extract_to_an_s3_lake_on_moto(
    airflow_db, aws_conn, source_conn, moto_server, monkeypatch
) -> None:
    import hashlib
    import io

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", "s3://lake/mlops")
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_CONN_ID", aws_conn)
    assert str(run_monthly(2).state) == "success"

    keys = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="mlops/raw/flights/")["Contents"]
    )
    assert keys == [
        "mlops/raw/flights/2013-02.parquet",
        "mlops/raw/flights/2013-02.parquet.manifest.json",
        "mlops/raw/flights/_schema.json",
    ]  # no temporary object is left behind
    manifest = json.loads(s3.get_object(Bucket="lake", Key=keys[1])["Body"].read())
    body = s3.get_object(Bucket="lake", Key=keys[0])["Body"].read()
    assert manifest["uri"] == "s3://lake/mlops/raw/flights/2013-02.parquet"
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert pq.read_table(io.BytesIO(body)).num_rows == manifest["metadata"]["rows"] == 24951
