"""Wait, in the triggerer, for a person's decision on a model version (an MLflow tag)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.exceptions import MLOpsConfigError


def read_decision(mlflow_conn_id: str, name: str, version: str) -> str | None:
    """``approved`` or ``rejected`` once decided (the version's ``state`` tag), else None."""
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.registry.governance import decision

    return decision(MlflowHook(mlflow_conn_id).get_conn(), name, version)


class ModelApprovalTrigger(BaseTrigger):
    """Poll the registry until the version is approved or rejected; one event, then it ends.

    :param mlflow_conn_id: the ``mlflow`` connection (its credentials are read in the triggerer,
        never serialised).
    :param name, version: the model version.
    :param poke_interval: seconds between reads.

    Event payload: ``{"status": "success", "decision": "approved"|"rejected", "name", "version"}``,
    or ``{"status": "error", "message"}`` when the registry cannot be read. The timeout is the
    deferral's (``ModelApprovalSensor(timeout=...)``).
    """

    def __init__(self, *, mlflow_conn_id: str, name: str, version: str, poke_interval: float = 10.0) -> None:
        super().__init__()
        if poke_interval <= 0:
            raise MLOpsConfigError(
                f"ModelApprovalTrigger poke_interval must be > 0 seconds, got {poke_interval!r}"
            )
        self.mlflow_conn_id, self.name, self.version = mlflow_conn_id, name, version
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "mlflow_conn_id": self.mlflow_conn_id,
                "name": self.name,
                "version": self.version,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                decision = await asyncio.to_thread(
                    read_decision, self.mlflow_conn_id, self.name, self.version
                )
            except Exception as err:  # the task fails with the reason, instead of the triggerer logging it
                yield TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})
                return
            if decision is not None:
                yield TriggerEvent(
                    {"status": "success", "decision": decision, "name": self.name, "version": self.version}
                )
                return
            await asyncio.sleep(self.poke_interval)
