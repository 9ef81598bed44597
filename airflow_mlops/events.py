"""Reading what started a run: the run's conf or the newest triggering Asset event (used by DAG tasks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def conf_or_latest_event(context: Mapping[str, Any], asset: Any, key: str) -> Any:
    """``dag_run.conf[key]`` when the run was triggered with it, else ``extra[key]`` of the newest
    triggering event of ``asset``; a clear error names both when neither has it."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    if conf.get(key):
        return conf[key]
    events = (context.get("triggering_asset_events") or {}).get(asset, [])
    for event in reversed(events):
        if event.extra.get(key):
            return event.extra[key]
    raise ValueError(f"no {key!r}: trigger the run with conf {{{key!r}: ...}} or from an event of Asset "
                     f"{getattr(asset, 'name', asset)!r} whose extra has it")
