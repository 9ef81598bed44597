"""Reading what started a run: the run's conf or the newest triggering Asset event (used by DAG tasks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_mlops.exceptions import MLOpsConfigError


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
    raise MLOpsConfigError(
        f"no {key!r}: trigger the run with conf {{{key!r}: ...}} or from an event of Asset "
        f"{getattr(asset, 'name', asset)!r} whose extra has it"
    )


_REQUIRED = object()


def latest_event_value(context: Mapping[str, Any], asset: Any, key: str, default: Any = _REQUIRED) -> Any:
    """``dag_run.conf[key]``, else ``extra[key]`` of the newest event of ``asset`` (declared in the
    task's ``inlets``, whatever started the run), else ``default``; without a default a clear error
    names both sources."""
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    if conf.get(key):
        return conf[key]
    newest = list(context["inlet_events"][asset].ascending(False).limit(1))
    if newest and newest[0].extra.get(key):
        return newest[0].extra[key]
    if default is not _REQUIRED:
        return default
    raise MLOpsConfigError(
        f"no {key!r}: trigger the run with conf {{{key!r}: ...}}, or let Asset "
        f"{getattr(asset, 'name', asset)!r} have an event whose extra has it"
    )


def run_input(context: Mapping[str, Any], asset: Any, key: str, default: Any = _REQUIRED) -> Any:
    """What a run works on, for scheduled, event-triggered and manual runs alike: ``dag_run.conf[key]``,
    else ``extra[key]`` of the newest event of ``asset`` that triggered the run, else that of the
    newest event of ``asset`` whatever started the run (the task must list ``asset`` in its
    ``inlets``; a run triggered by another Asset, by hand or on a schedule works on the newest),
    else ``default``; without a default a clear error names the three sources."""
    try:
        return conf_or_latest_event(context, asset, key)
    except MLOpsConfigError:
        pass
    try:
        return latest_event_value(context, asset, key, default)
    except MLOpsConfigError:
        raise MLOpsConfigError(
            f"no {key!r}: trigger the run with conf {{{key!r}: ...}}, or from an event of Asset "
            f"{getattr(asset, 'name', asset)!r} whose extra has it, or let that Asset have such an event "
            "(and list it in the task's inlets)"
        ) from None
