"""The request log writes whole Parquet files off the caller's thread and loses nothing silently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow_mlops.serving.requestlog import RequestLog, read_log


def record(i: int) -> dict:
    return {
        "prediction_id": f"p{i}",
        "at": datetime.now(UTC),
        "endpoint": "e",
        "variant": "v",
        "model": "m",
        "version": "1",
        "role": "primary",
        "request_key": None,
        "features": "{}",
        "probability": i / 10,
        "latency_ms": 1.0,
    }


def test_records_are_flushed_by_count_and_on_close(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_rows=3, flush_seconds=3600)
    for i in range(7):
        log.append("predictions", record(i))
    log.append(
        "feedback",
        {"prediction_id": "p1", "at": datetime.now(UTC), "endpoint": "e", "variant": "v", "reward": 1.0},
    )
    log.close()
    predictions = read_log(tmp_path)
    assert sorted(predictions["prediction_id"]) == [f"p{i}" for i in range(7)] and log.written == 8
    assert read_log(tmp_path, "feedback")["reward"].tolist() == [1.0]
    assert not list(tmp_path.rglob(".*.tmp")), "no temporary file is left behind"


def test_a_time_range_reads_only_the_days_that_can_hold_it(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_rows=1, flush_seconds=3600)
    log.append("predictions", record(0))
    log.close()
    (today,) = (tmp_path / "predictions").iterdir()
    old = tmp_path / "predictions" / "date=2013-03-01"
    old.mkdir()
    (old / "part-0.parquet").write_bytes(next(today.iterdir()).read_bytes())
    now = datetime.now(UTC)
    assert read_log(tmp_path, since=now - timedelta(hours=1), until=now)["prediction_id"].tolist() == ["p0"]
    march = read_log(
        tmp_path, since=datetime(2013, 2, 28, 23, tzinfo=UTC), until=datetime(2013, 3, 1, 1, tzinfo=UTC)
    )
    assert len(march) == 1  # the partition of 2013-03-01 only
    assert len(read_log(tmp_path)) == 2


def test_an_empty_log_reads_as_an_empty_frame(tmp_path: Path) -> None:
    frame = read_log(tmp_path / "nothing")
    assert frame.empty and "prediction_id" in frame.columns


def test_a_full_queue_or_a_failed_write_is_counted_not_hidden(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_rows=10_000, flush_seconds=3600, max_queued=1)
    log.queue.put(("predictions", record(0)))  # occupy the only slot before the writer can drain it
    for i in range(1, 50):
        log.append("predictions", record(i))
    log.close()
    assert log.dropped + log.written == 50 and log.dropped > 0

    blocked = tmp_path / "blocked"
    log = RequestLog(blocked, flush_rows=1, flush_seconds=3600)
    (blocked / "predictions").write_text("a file where the folder should be")
    log.append("predictions", record(1))
    log.close()
    assert log.dropped == 1 and log.written == 0


def test_writers_sharing_one_folder_keep_every_record(tmp_path: Path) -> None:
    """Replicas share the request-log folder: each writer's files have names of their own, so no
    file replaces another's even when they flush in the same instant."""
    logs = [RequestLog(tmp_path, flush_rows=1, flush_seconds=3600) for _ in range(2)]
    for i in range(40):
        logs[i % 2].append("predictions", record(i))
    for log in logs:
        log.close()
    assert sorted(read_log(tmp_path)["prediction_id"]) == sorted(f"p{i}" for i in range(40))
    names = [f.name for f in (tmp_path / "predictions").rglob("part-*.parquet")]
    assert len(names) == len(set(names)) == 40


def test_replicas_write_one_log_to_object_storage_and_a_reader_sees_whole_files(
    moto_server: str, monkeypatch
) -> None:
    """The request log on S3 (moto's server): each flush is one object; two writers' records all
    come back, and nothing is written locally."""
    import boto3

    for name, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket="request-log")
    logs = [RequestLog("s3://request-log/serving", flush_rows=5, flush_seconds=3600) for _ in range(2)]
    for i in range(30):
        logs[i % 2].append("predictions", record(i))
    for log in logs:
        log.close()
        assert log.written == 15 and log.dropped == 0
    assert sorted(read_log("s3://request-log/serving")["prediction_id"]) == sorted(f"p{i}" for i in range(30))
    listed = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").list_objects_v2(
        Bucket="request-log"
    )["Contents"]
    keys = [o["Key"] for o in listed]
    assert len(keys) == 6 and all(
        k.startswith("serving/predictions/date=") and k.endswith(".parquet") for k in keys
    )
    assert not Path("request-log").exists() and not Path("s3:").exists()  # nothing fell back to a local path

    # A reader that keeps its filesystem (a monitor's ObjectStoragePath, the demo waiting for its
    # requests) sees parts written after its first read: s3fs's cached listing is not trusted.
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)  # not the writers' instance: as in another process
    assert len(read_log("request-log/serving", fs=fs)) == 30
    later = RequestLog("s3://request-log/serving", flush_rows=5, flush_seconds=3600)
    for i in range(30, 35):
        later.append("predictions", record(i))
    later.close()
    assert len(read_log("request-log/serving", fs=fs)) == 35
