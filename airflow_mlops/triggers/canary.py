"""Wait in the triggerer until a canary has served enough requests to be judged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class CanaryAnalysisTrigger(BaseTrigger):
    """Poll the model server's statistics for ``endpoint`` until the verdict is in or ``deadline``
    (epoch seconds) passes; the event is the verdict (``done``, ``healthy``, ``reasons``) plus the
    statistics. The admin token is read from the connection in the triggerer, never serialised."""

    def __init__(
        self,
        *,
        conn_id: str,
        endpoint: str,
        criteria: dict[str, Any],
        deadline: float,
        poll_interval: float = 10.0,
    ) -> None:
        super().__init__()
        self.conn_id, self.endpoint, self.criteria = conn_id, endpoint, criteria
        self.deadline, self.poll_interval = deadline, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_mlops.triggers.canary.CanaryAnalysisTrigger",
            {
                "conn_id": self.conn_id,
                "endpoint": self.endpoint,
                "criteria": self.criteria,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.hooks.model_server import ModelServerHook
        from airflow_mlops.serving.canary import CanaryCriteria, judge

        hook, criteria = ModelServerHook(self.conn_id), CanaryCriteria(**self.criteria)
        while True:
            stats = await hook.astats(self.endpoint)
            verdict = judge(stats, criteria)
            if verdict.done or time.time() >= self.deadline:
                yield TriggerEvent({**verdict.to_dict(), "stats": stats})
                return
            await asyncio.sleep(self.poll_interval)
