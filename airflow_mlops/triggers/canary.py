"""Wait in the triggerer until a canary has served enough requests to be judged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class CanaryAnalysisTrigger(BaseTrigger):
    """Poll the model server's statistics for ``endpoint`` until the verdict is in or ``deadline``
    (epoch seconds) passes.

    :param model_server_conn_id: the model server's connection; its admin token is read in the
        triggerer, never serialised.
    :param endpoint: the endpoint under canary.
    :param criteria: ``CanaryCriteria`` as a dict.
    :param deadline: epoch seconds after which the last statistics are sent, judged or not.
    :param poll_interval: seconds between reads.
    :param carry: the deferring task's own state, returned in the event as it was given (a
        stepwise rollout's step and decisions so far). Carried by the trigger rather than in
        ``defer(kwargs=...)``: ``dag.test`` (Airflow 3.3) resumes an inline trigger with the event
        alone and drops those kwargs.

    Event payload: ``{"status": "success", "done", "healthy", "reasons", "stats", "carry"}``, or
    ``{"status": "error", "message", "carry"}`` when the server cannot be read.
    """

    def __init__(
        self,
        *,
        model_server_conn_id: str,
        endpoint: str,
        criteria: dict[str, Any],
        deadline: float,
        poll_interval: float = 10.0,
        carry: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.carry = carry
        self.model_server_conn_id, self.endpoint, self.criteria = model_server_conn_id, endpoint, criteria
        self.deadline, self.poll_interval = deadline, poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model_server_conn_id": self.model_server_conn_id,
                "endpoint": self.endpoint,
                "criteria": self.criteria,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "carry": self.carry,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops.hooks.model_server import ModelServerHook
        from airflow_mlops.serving.canary import CanaryCriteria, judge

        hook, criteria = ModelServerHook(self.model_server_conn_id), CanaryCriteria(**self.criteria)
        while True:
            try:
                stats = await hook.astats(self.endpoint)
            except Exception as err:  # the task fails with the reason, instead of the triggerer logging it
                yield TriggerEvent(
                    {"status": "error", "message": f"{type(err).__name__}: {err}", "carry": self.carry}
                )
                return
            verdict = judge(stats, criteria)
            if verdict.done or time.time() >= self.deadline:
                yield TriggerEvent(
                    {"status": "success", **verdict.to_dict(), "stats": stats, "carry": self.carry}
                )
                return
            await asyncio.sleep(self.poll_interval)
