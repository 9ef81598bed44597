"""What started a run: conf first, then the newest triggering event, else a clear error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk import Asset

from airflow_mlops.events import conf_or_latest_event, run_input

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


class Newest:
    """``inlet_events[asset]``: the newest events first, as Airflow's accessor gives them."""

    def __init__(self, extras: list[dict]) -> None:
        self.extras = extras

    def ascending(self, ascending: bool) -> Newest:
        assert ascending is False
        return self

    def limit(self, count: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(extra=e) for e in self.extras[-1:][:count]]


def test_a_run_works_on_conf_then_its_trigger_then_the_newest_event() -> None:
    def run(conf: dict | None, triggering: list[dict], newest: list[dict]) -> dict:
        return {**context(conf, triggering), "inlet_events": {ASSET: Newest(newest)}}

    assert (
        run_input(
            run({"manifest_uri": "c"}, [{"manifest_uri": "t"}], [{"manifest_uri": "n"}]),
            ASSET,
            "manifest_uri",
        )
        == "c"
    )
    assert (
        run_input(run(None, [{"manifest_uri": "t"}], [{"manifest_uri": "n"}]), ASSET, "manifest_uri") == "t"
    )
    # Started by another Asset (model_drift), by hand or on a schedule: the newest event.
    assert (
        run_input(run(None, [], [{"manifest_uri": "old"}, {"manifest_uri": "n"}]), ASSET, "manifest_uri")
        == "n"
    )
    assert run_input(run(None, [], []), ASSET, "manifest_uri", default="d") == "d"
    with pytest.raises(
        ValueError, match=r"no 'manifest_uri': trigger the run with conf .* list it in the task's inlets"
    ):
        run_input(run({}, [], []), ASSET, "manifest_uri")
