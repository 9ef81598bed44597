"""LandingFileTrigger: claims each stable file once, never deletes, fires an event per file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from airflow_mlops.triggers.landing import LandingFileTrigger, claim_ready_files


def test_a_file_is_claimed_once_it_is_stable_and_only_once(tmp_path: Path) -> None:
    seen: dict = {}
    (tmp_path / "flights_2013_03.parquet").write_bytes(b"data")
    (tmp_path / ".flights_2013_04.parquet.tmp").write_bytes(b"half")
    assert claim_ready_files(tmp_path, "*.parquet", seen) == []  # first sight: wait for it to be stable
    (event,) = claim_ready_files(tmp_path, "*.parquet", seen)
    assert event["name"] == "flights_2013_03.parquet" and event["bytes"] == 4
    assert event["uri"] == (tmp_path / "_claimed" / "flights_2013_03.parquet").as_uri()
    assert (tmp_path / "_claimed" / "flights_2013_03.parquet").read_bytes() == b"data"
    assert claim_ready_files(tmp_path, "*.parquet", seen) == []
    assert (tmp_path / ".flights_2013_04.parquet.tmp").exists()  # hidden files are producers' temp files


def test_a_file_still_growing_is_not_claimed(tmp_path: Path) -> None:
    seen: dict = {}
    growing = tmp_path / "m.parquet"
    growing.write_bytes(b"a")
    claim_ready_files(tmp_path, "*.parquet", seen)
    growing.write_bytes(b"ab")
    assert claim_ready_files(tmp_path, "*.parquet", seen) == []
    assert len(claim_ready_files(tmp_path, "*.parquet", seen)) == 1


def test_the_same_name_landing_twice_keeps_both_files(tmp_path: Path) -> None:
    seen: dict = {}
    for content in (b"first", b"second"):
        (tmp_path / "m.parquet").write_bytes(content)
        claim_ready_files(tmp_path, "*.parquet", seen)
        claim_ready_files(tmp_path, "*.parquet", seen)
    contents = sorted(p.read_bytes() for p in (tmp_path / "_claimed").iterdir())
    assert contents == [b"first", b"second"]


def test_trigger_runs_as_an_async_event_stream_and_serializes(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"x")
    trigger = LandingFileTrigger(directory=str(tmp_path), pattern="*.parquet", poke_interval=0.01)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_mlops.triggers.landing.LandingFileTrigger"
    assert LandingFileTrigger(**kwargs).serialize() == (classpath, kwargs)

    async def first_event():
        stream = trigger.run()
        return await asyncio.wait_for(stream.__anext__(), timeout=10)

    event = asyncio.run(first_event())
    assert event.payload["name"] == "a.parquet"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"directory": "relative/dir"}, "absolute path"),
        ({"directory": "/abs", "poke_interval": 0}, "poke_interval must be > 0"),
    ],
)
def test_bad_arguments_are_rejected_at_parse_time(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LandingFileTrigger(**kwargs)
