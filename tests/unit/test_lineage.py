"""OpenLineage pieces: dataset names, facets as the provider serialises them, and the walk back."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_mlops.data.suites import load_suite
from airflow_mlops.data.validation import validate_partition
from airflow_mlops.lineage import (
    LineageMixin,
    data_quality_facets,
    model_facet,
    registry_namespace,
    schema_facet,
    storage_name,
    table_names,
    walk_back,
)
from tests.partitions import CORRUPTIONS, month_frame

ROOT = Path(__file__).resolve().parents[2]


def serialised(lineage) -> dict:
    """What the provider writes: the OpenLineage client's own serialisation."""
    from openlineage.client.serde import Serde

    return {
        side: [json.loads(Serde.to_json(d)) for d in getattr(lineage, side)] for side in ("inputs", "outputs")
    }


def test_names_follow_the_openlineage_naming_spec_and_hide_credentials() -> None:
    assert storage_name("file:///lake/raw/flights/2013-01.parquet") == (
        "file",
        "/lake/raw/flights/2013-01.parquet",
    )
    assert storage_name("s3://bucket/lake/raw/2013-01.parquet") == ("s3://bucket", "lake/raw/2013-01.parquet")
    assert (
        registry_namespace("postgresql://mlflow:s3cret@db:5432/mlflow?sslmode=require")
        == "mlflow:postgresql://db:5432/mlflow"
    )
    postgres = SimpleNamespace(
        conn_type="postgres", host="db", port=5432, schema="flights", password="s3cret"
    )
    assert table_names(
        postgres, "SELECT f.* FROM flights f JOIN planes p USING (tailnum) WHERE month = :m"
    ) == [("postgres://db:5432", "flights.public.flights"), ("postgres://db:5432", "flights.public.planes")]
    sqlite = SimpleNamespace(conn_type="sqlite", host="/data/source/flights.db", port=None, schema=None)
    assert table_names(sqlite, "SELECT * FROM weather WHERE month = :month") == [
        ("sqlite:///data/source/flights.db", "weather")
    ]


def test_a_validation_report_becomes_data_quality_facets() -> None:
    suite = load_suite(ROOT / "dags" / "suites" / "flights_raw.yaml")
    data = CORRUPTIONS["unknown_category"][0](month_frame("flights", 1))
    report = validate_partition(
        data, "file:///lake/raw/flights/2013-01.parquet", suite, parameters={"year": 2013, "months": [1]}
    ).report

    class Validate(LineageMixin):
        pass

    task = Validate()
    assert task.get_openlineage_facets_on_complete(None) is None  # nothing recorded: the provider's defaults
    task.record_lineage(
        lambda: (
            [(*storage_name(report.partition_uri), data_quality_facets(json.loads(report.to_json())))],
            [("file", "/lake/quarantine/x/2013-01.parquet", {"schema": schema_facet({"carrier": "string"})})],
        )
    )
    (source,), (quarantined,) = serialised(task.get_openlineage_facets_on_failure(None)).values()
    assert (source["namespace"], source["name"]) == ("file", "/lake/raw/flights/2013-01.parquet")
    metrics = source["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == 27004 and metrics["columnMetrics"]["carrier"]["distinctCount"] == 17
    assert (
        metrics["columnMetrics"]["dep_delay"]["nullCount"] == report.profile["columns"]["dep_delay"]["nulls"]
    )
    assertions = source["facets"]["dataQualityAssertions"]["assertions"]
    assert len(assertions) == len(suite.expectations)
    (failed,) = [a for a in assertions if not a["success"]]
    assert failed["assertion"] == "expect_column_values_to_be_in_set" and failed["column"] == "carrier"
    assert failed["actual"] == "28 unexpected"
    assert [(f["name"], f["type"]) for f in quarantined["facets"]["schema"]["fields"]] == [
        ("carrier", "string")
    ]


def test_the_model_facet_carries_the_registry_facts() -> None:
    facet = model_facet(
        "flight_delay",
        "3",
        state="candidate",
        metrics={"auc": 0.71},
        mlflow_run_id="abc",
        training_set="file:///lake/training_sets/v1/x/manifest.json",
        model_uri="file:///lake/models/m",
    )
    from openlineage.client.serde import Serde

    record = json.loads(Serde.to_json(facet))
    assert record["version"] == "3" and record["metrics"] == {"auc": 0.71} and record["mlflowRunId"] == "abc"
    assert record["_schemaURL"].endswith("docs/lineage.md#model-version-facet")


def event(time: str, job: str, inputs: list[str], outputs: list[str], kind: str = "COMPLETE") -> dict:
    def datasets(names: list[str]) -> list[dict]:
        return [{"namespace": "file", "name": n} for n in names]

    return {
        "eventType": kind,
        "eventTime": time,
        "job": {"namespace": "test", "name": job},
        "inputs": datasets(inputs),
        "outputs": datasets(outputs),
    }


def test_the_walk_takes_the_latest_producer_before_each_consumer() -> None:
    events = [
        event("2026-01-01T00:00:00Z", "validate_feb", ["raw/feb"], ["validated/feb"]),
        event("2026-01-01T00:01:00Z", "dataset_v1", ["validated/feb"], ["dataset/v1"]),
        event("2026-01-01T00:02:00Z", "train_1", ["dataset/v1"], ["model/1"]),
        event("2026-01-01T00:03:00Z", "deploy_1", ["model/1"], ["endpoint"]),
        # Later: a new dataset and model, but the deployment of model 2 failed (no COMPLETE event).
        event("2026-01-01T00:04:00Z", "dataset_v2", ["validated/feb", "validated/mar"], ["dataset/v2"]),
        event("2026-01-01T00:05:00Z", "train_2", ["dataset/v2"], ["model/2"]),
        event("2026-01-01T00:06:00Z", "deploy_2", ["model/2"], ["endpoint"], kind="FAIL"),
        # validated/feb rewritten after model 1 was trained: not what model 1 saw.
        event("2026-01-01T00:07:00Z", "validate_feb_again", ["raw/feb2"], ["validated/feb"]),
    ]
    steps = walk_back(events, "file", "endpoint")
    assert [(s["dataset"][1], s["job"]) for s in steps] == [
        ("endpoint", "deploy_1"),
        ("model/1", "train_1"),
        ("dataset/v1", "dataset_v1"),
        ("validated/feb", "validate_feb"),
        ("raw/feb", None),
    ]
    assert [s["depth"] for s in steps] == [0, 1, 2, 3, 4]
    assert walk_back(events, "file", "nothing") == [
        {"dataset": ("file", "nothing"), "job": None, "inputs": [], "depth": 0, "event": None}
    ]


def test_a_lineage_failure_is_the_providers_to_log_not_the_tasks() -> None:
    class Broken(LineageMixin):
        pass

    task = Broken()
    task.record_lineage(lambda: (_ for _ in ()).throw(FileNotFoundError("model folder gone")))
    with pytest.raises(FileNotFoundError):  # raised when the provider asks, never inside execute
        task.get_openlineage_facets_on_complete(None)


def test_the_lineage_command_prints_the_walk_and_refuses_bad_input(tmp_path, capsys) -> None:
    from airflow_mlops.cli import main

    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            json.dumps(e)
            for e in [
                event(
                    "2026-01-01T00:00:00Z",
                    "flights_ingest.extract_flights",
                    [],
                    ["/lake/raw/flights/2013-02.parquet"],
                ),
                event(
                    "2026-01-01T00:01:00Z",
                    "flights_training.rollout",
                    ["/lake/raw/flights/2013-02.parquet"],
                    ["/lake/models/m"],
                ),
            ]
        )
        + "\n"
    )
    main(["lineage", "--events", str(events), "--namespace", "file", "--name", "/lake/models/m"])
    assert capsys.readouterr().out.splitlines() == [
        "/lake/models/m  <- flights_training.rollout",
        "  /lake/raw/flights/2013-02.parquet  <- flights_ingest.extract_flights",
    ]
    with pytest.raises(SystemExit, match="give --endpoint"):
        main(["lineage", "--events", str(events), "--namespace", "file"])
    with pytest.raises(SystemExit, match=f"no events at {tmp_path / 'none.jsonl'}"):
        main(["lineage", "--events", str(tmp_path / "none.jsonl"), "--endpoint", "flight_delay"])


def test_the_lineage_command_reads_the_transports_events_in_an_s3_lake(
    aws_conn: str, moto_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """OpenLineage's own file transport writes one object per event to the bucket (``append:
    false``); the command finds them beside an ``s3://`` lake and reads them through the lake's
    connection."""
    import boto3
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.transport.file import FileConfig, FileTransport

    from airflow_mlops.cli import default_events, main

    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket="lineage-lake")
    transport = FileTransport(
        FileConfig(
            log_file_path="s3://lineage-lake/lineage/events/event",
            append=False,
            storage_options={"endpoint_url": moto_server, "key": "testing", "secret": "testing"},
        )
    )
    for minute, (job, inputs, outputs) in enumerate(
        [
            ("flights_ingest.extract", [], ["data/raw/2013-02.parquet"]),
            ("flights_training.train", ["data/raw/2013-02.parquet"], ["data/models/m"]),
        ]
    ):
        transport.emit(
            RunEvent(
                eventType=RunState.COMPLETE,
                eventTime=f"2026-01-01T00:0{minute}:00Z",
                run=Run(runId=f"0190cf4c-1d4c-7c3b-8f2e-00000000000{minute}"),
                job=Job(namespace="airflow", name=job),
                producer="tests",
                inputs=[InputDataset(namespace="s3://lineage-lake", name=n) for n in inputs],
                outputs=[OutputDataset(namespace="s3://lineage-lake", name=n) for n in outputs],
            )
        )
    assert default_events("s3://lineage-lake/data") == "s3://lineage-lake/lineage/events"
    assert default_events("/srv/mlops/data").endswith("/srv/mlops/lineage/events.jsonl")
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", "s3://lineage-lake/data")
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_CONN_ID", aws_conn)
    main(["lineage", "--namespace", "s3://lineage-lake", "--name", "data/models/m"])
    assert [line for line in capsys.readouterr().out.splitlines() if " <- " in line] == [
        "s3://lineage-lake data/models/m  <- flights_training.train",
        "  s3://lineage-lake data/raw/2013-02.parquet  <- flights_ingest.extract",
    ]
    monkeypatch.setenv("AIRFLOW__MLOPS__LAKE_URI", "s3://lineage-lake/elsewhere/data")
    with pytest.raises(SystemExit, match=r"no events at s3://lineage-lake/elsewhere/lineage/events"):
        main(["lineage", "--namespace", "s3://lineage-lake", "--name", "data/models/m"])
