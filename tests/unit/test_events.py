"""What started a run: conf first, then the newest triggering event, else a clear error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import Asset

from airflow_mlops.events import conf_or_latest_event

ASSET = Asset(name="flight_features")


def context(conf: dict | None, extras: list[dict]) -> dict:
    return {
        "dag_run": SimpleNamespace(conf=conf),
        "triggering_asset_events": {ASSET: [SimpleNamespace(extra=e) for e in extras]},
    }


def test_conf_wins_then_the_newest_event_with_the_key() -> None:
    assert (
        conf_or_latest_event(context({"manifest_uri": "c"}, [{"manifest_uri": "e"}]), ASSET, "manifest_uri")
        == "c"
    )
    assert (
        conf_or_latest_event(
            context(None, [{"manifest_uri": "old"}, {"manifest_uri": "new"}, {}]), ASSET, "manifest_uri"
        )
        == "new"
    )


def test_neither_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match=r"no 'manifest_uri': trigger the run with conf .* Asset 'flight_features'"
    ):
        conf_or_latest_event(context({}, []), ASSET, "manifest_uri")
