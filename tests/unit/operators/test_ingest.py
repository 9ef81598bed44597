"""Landing files: which URIs a run loads, and what a valid month file is."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from airflow_mlops.exceptions import LandingFileError
from flights.operators import landing_uris_from_events
from flights.source import check_landing_frame, read_table


def s3_message(*keys: str, event: str = "ObjectCreated:Put") -> dict:
    records = [
        {"eventName": event, "s3": {"bucket": {"name": "landing"}, "object": {"key": k}}} for k in keys
    ]
    return {"MessageId": "m1", "Body": json.dumps({"Records": records})}


def test_uris_come_from_file_payloads_and_s3_notifications_in_order_without_duplicates() -> None:
    payloads = [
        {"uri": "file:///l/_claimed/a.parquet", "name": "a.parquet"},
        {
            "status": "success",
            "message_batch": [
                s3_message("months/b+c.parquet", "months%2Fd.parquet"),
                s3_message("x.parquet", event="ObjectRemoved:Delete"),
                {"MessageId": "t", "Body": json.dumps({"Event": "s3:TestEvent"})},
            ],
        },
        {"uri": "file:///l/_claimed/a.parquet"},
    ]
    assert landing_uris_from_events(payloads) == [
        "file:///l/_claimed/a.parquet",
        "s3://landing/months/b c.parquet",
        "s3://landing/months/d.parquet",
    ]


def test_a_non_json_sqs_message_is_a_clear_error() -> None:
    with pytest.raises(LandingFileError, match="SQS message m9: body is not JSON"):
        landing_uris_from_events([{"message_batch": [{"MessageId": "m9", "Body": "hello"}]}])


@pytest.fixture(scope="module")
def march() -> pd.DataFrame:
    flights = read_table("flights")
    return flights[flights["month"] == 3].head(500).copy()


def test_a_valid_month_file_gives_its_month(march: pd.DataFrame) -> None:
    assert check_landing_frame("f.parquet", march) == 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["arr_delay"]), r"missing columns \['arr_delay'\]"),
        (lambda f: f.iloc[0:0], "no rows"),
        (
            lambda f: f.assign(month=[3] * 499 + [4]),
            r"rows span \(year, month\) \[\(2013, 3\), \(2013, 4\)\]",
        ),
        (lambda f: f.assign(year=2014), r"\(2014, 3\).*one month of 2013"),
        (lambda f: f.assign(flight_id=1), "duplicated flight_id"),
    ],
)
def test_bad_month_files_are_rejected_with_the_rule(march: pd.DataFrame, mutate, message: str) -> None:
    with pytest.raises(LandingFileError, match=message):
        check_landing_frame("f.parquet", mutate(march))


def run_loader(source: str, conn_id: str):
    from types import SimpleNamespace

    from flights.operators import LoadLandingFileOperator

    op = LoadLandingFileOperator(task_id="load", source_conn_id=conn_id, source=source)
    return op.execute({"dag_run": SimpleNamespace(conf={}), "triggering_asset_events": {}})  # type: ignore[arg-type]


def test_a_retry_after_the_file_was_moved_loads_it_again_from_loaded(tmp_path, monkeypatch) -> None:
    import sqlite3

    from flights.source import write_landing_file

    db = tmp_path / "source.db"
    monkeypatch.setenv("AIRFLOW_CONN_RETRY_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    monkeypatch.setenv("AIRFLOW__MLOPS__LANDING_DIR", str(tmp_path / "landing"))
    claimed = tmp_path / "landing" / "_claimed"
    landed = write_landing_file(4, claimed)
    (first,) = run_loader(landed.as_uri(), "retry_source")
    archived = tmp_path / "landing" / "_loaded" / landed.name
    assert first["month"] == 4 and first["uri"].endswith(f"landing/_loaded/{landed.name}")
    assert not landed.exists() and archived.exists()
    (second,) = run_loader(landed.as_uri(), "retry_source")  # the same event, retried
    assert second["rows"] == first["rows"] and archived.exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM flights WHERE month = 4").fetchone()[0] == first["rows"]


def test_a_missing_landing_file_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_RETRY_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")})
    )
    monkeypatch.setenv("AIRFLOW__MLOPS__LANDING_DIR", str(tmp_path / "landing"))
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(
        AirflowFailException, match=r"landing file file:///.*/nope\.parquet: does not exist"
    ) as raised:
        run_loader((tmp_path / "landing" / "nope.parquet").as_uri(), "retry_source")
    assert isinstance(
        raised.value.__cause__, LandingFileError
    )  # failed without retry: the file will not appear
    # Outside the landing folder and the lake: refused before it is looked for, without retry.
    with pytest.raises(
        AirflowFailException, match=r"landing file '.*/etc/passwd': must lie inside \["
    ) as raised:
        run_loader("file:///etc/passwd", "retry_source")
    assert isinstance(raised.value.__cause__, LandingFileError)


def test_events_naming_no_file_skip_the_run_and_no_source_at_all_is_an_error() -> None:
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowSkipException

    from flights.operators import LoadLandingFileOperator

    op = LoadLandingFileOperator(task_id="load", source_conn_id="unused")
    test_event = SimpleNamespace(
        extra={
            "payload": {"message_batch": [{"MessageId": "t", "Body": json.dumps({"Event": "s3:TestEvent"})}]}
        }
    )
    with pytest.raises(AirflowSkipException, match="name no new file"):
        op.execute(
            {
                "dag_run": SimpleNamespace(conf={}),  # type: ignore[arg-type]
                "triggering_asset_events": {"flights_landing_s3": [test_event]},
            }
        )
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="no landing file to load"):
        op.execute({"dag_run": SimpleNamespace(conf={}), "triggering_asset_events": {}})  # type: ignore[arg-type]
