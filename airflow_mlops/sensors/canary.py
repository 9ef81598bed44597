"""Judge a canary on live traffic: promote on health, roll back otherwise."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_mlops.lineage import LineageMixin, endpoint_lineage

if TYPE_CHECKING:
    from airflow.sdk import Context


class CanaryAnalysisSensor(LineageMixin, BaseSensorOperator):
    """Wait until a canary's candidate has served enough requests, then compare it with the primary.

    The verdict uses the server's statistics since the canary was deployed: the candidate's error
    rate and p99 latency against the primary's (``criteria``, see
    ``airflow_mlops.serving.canary.CanaryCriteria``). An endpoint that runs no canary (a first
    deployment) passes at once.

    - Healthy: the task succeeds; the tasks after it (promotion, full rollout) run.
    - Unhealthy, or too little traffic within ``timeout``: the endpoint is rolled back to its
      previous deployment, the model version is recorded as ``rejected`` in the registry with the
      reasons (when ``model_name``, ``version`` and ``tracking_uri`` are given), and the task is
      skipped, so promotion and rollout are skipped while the DAG run does not fail.

    :param endpoint: the endpoint (templated).
    :param criteria: ``min_requests``, ``max_error_rate_increase``, ``max_latency_ratio``, ``latency_slack_ms``.
    :param model_name, version, tracking_uri: the candidate in the registry (templated), to record a rejection.
    :param model_server_conn_id: connection of the server.
    :param timeout: seconds of traffic to wait for at most.
    :param deferrable: wait in the triggerer (default) instead of holding a worker slot.

    XCom: ``{"healthy": true, "reasons": [...], "stats": {...}}``.
    OpenLineage: after a rollback, the versions served again as inputs and the endpoint as output.
    """

    template_fields: Sequence[str] = ("endpoint", "model_name", "version", "tracking_uri")
    ui_color = "#fff8e1"

    def __init__(
        self,
        *,
        endpoint: str,
        criteria: Mapping[str, Any] | None = None,
        model_name: str = "",
        version: str = "",
        tracking_uri: str = "",
        model_server_conn_id: str = "mlops_model_server",
        deferrable: bool = True,
        poke_interval: float = 10.0,
        timeout: float = 1800,
        **kwargs: Any,
    ) -> None:
        from airflow_mlops.serving.canary import CanaryCriteria

        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.criteria = CanaryCriteria(**(criteria or {})).to_dict()  # a bad criterion fails at parse time
        self.endpoint, self.model_name, self.version, self.tracking_uri = (
            endpoint,
            model_name,
            version,
            tracking_uri,
        )
        self.model_server_conn_id, self.deferrable = model_server_conn_id, deferrable

    def execute(self, context: Context) -> Any:
        from airflow_mlops.hooks.model_server import ModelServerHook
        from airflow_mlops.serving.canary import CanaryCriteria, judge

        hook, criteria = ModelServerHook(self.model_server_conn_id), CanaryCriteria(**self.criteria)
        deadline = time.time() + self.timeout
        stats = hook.stats(self.endpoint)
        verdict = judge(stats, criteria)
        if not verdict.done and self.deferrable:
            from airflow_mlops.triggers.canary import CanaryAnalysisTrigger

            self.defer(
                trigger=CanaryAnalysisTrigger(
                    conn_id=self.model_server_conn_id,
                    endpoint=self.endpoint,
                    criteria=self.criteria,
                    deadline=deadline,
                    poll_interval=self.poke_interval,
                ),
                method_name="execute_complete",
            )
        while not verdict.done and time.time() < deadline:
            time.sleep(self.poke_interval)
            stats = hook.stats(self.endpoint)
            verdict = judge(stats, criteria)
        return self._finish(context, {**verdict.to_dict(), "stats": stats})

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return self._finish(context, event)

    def _finish(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.hooks.model_server import ModelServerHook

        for reason in event["reasons"]:
            self.log.info("canary %s: %s", self.endpoint, reason)
        if event["done"] and event["healthy"]:
            return {"healthy": True, "reasons": event["reasons"], "stats": event["stats"]}
        why = (
            "; ".join(event["reasons"])
            if event["done"]
            else f"too little traffic in {self.timeout:.0f} s: {'; '.join(event['reasons'])}"
        )
        dag_run = context.get("dag_run")
        who = f"{type(self).__name__} ({getattr(dag_run, 'dag_id', '?')}/{getattr(dag_run, 'run_id', '?')})"
        hook = ModelServerHook(self.model_server_conn_id)
        rolled_back = hook.rollback(self.endpoint, who, f"canary failed: {why}")
        self.record_lineage(lambda: endpoint_lineage(hook, self.endpoint, rolled_back))
        if self.model_name and self.version and self.tracking_uri:
            from mlflow import MlflowClient

            from airflow_mlops.registry.governance import record

            record(
                MlflowClient(self.tracking_uri),
                self.model_name,
                str(self.version),
                "rejected",
                who,
                f"canary failed: {why}",
            )
        raise AirflowSkipException(f"canary on {self.endpoint} failed, rolled back: {why}")
