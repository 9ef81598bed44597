"""Wait, in the triggerer, for a person's decision on a model version (an MLflow tag)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def read_decision(tracking_uri: str, name: str, version: str) -> str | None:
    """``approved`` or ``rejected`` once decided (the version's ``state`` tag), else None."""
    from mlflow import MlflowClient

    current = MlflowClient(tracking_uri).get_model_version(name, version).tags.get("state", "candidate")
    return current if current in ("approved", "rejected") else None


class ModelApprovalTrigger(BaseTrigger):
    """Poll the registry until the version is approved or rejected; one event, then it ends.

    :param tracking_uri: the MLflow tracking URI.
    :param name, version: the model version.
    :param poke_interval: seconds between reads.

    Event payload: ``{"decision": "approved"|"rejected", "name", "version"}``. The timeout is the
    deferral's (``ModelApprovalSensor(timeout=...)``).
    """

    def __init__(self, *, tracking_uri: str, name: str, version: str, poke_interval: float = 10.0) -> None:
        super().__init__()
        if poke_interval <= 0:
            raise ValueError(f"ModelApprovalTrigger poke_interval must be > 0 seconds, got {poke_interval!r}")
        self.tracking_uri, self.name, self.version, self.poke_interval = (
            tracking_uri,
            name,
            version,
            poke_interval,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "tracking_uri": self.tracking_uri,
                "name": self.name,
                "version": self.version,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            decision = await asyncio.to_thread(read_decision, self.tracking_uri, self.name, self.version)
            if decision is not None:
                yield TriggerEvent({"decision": decision, "name": self.name, "version": self.version})
                return
            await asyncio.sleep(self.poke_interval)
