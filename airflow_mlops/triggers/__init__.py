"""Triggers: deferrable waits and event triggers for AssetWatchers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_mlops.exceptions import TriggerEventError


def check_event(event: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """The event a deferred task resumes with, once its ``status`` is ``success``; otherwise
    ``TriggerEventError`` naming the wait and the trigger's message."""
    if event is None:
        raise TriggerEventError(f"{what}: the trigger ended without an event")
    if event.get("status") != "success":
        raise TriggerEventError(
            f"{what}: the trigger reported status {event.get('status')!r}: {event.get('message', dict(event))}"
        )
    return dict(event)
