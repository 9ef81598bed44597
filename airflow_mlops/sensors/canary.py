"""Judge a canary on live traffic: promote on health, roll back otherwise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, conf

from airflow_mlops.alerts import AlertingMixin, rollback_links
from airflow_mlops.audit import actor
from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.hooks.model_server import ModelServerHook
from airflow_mlops.lineage import LineageMixin, endpoint_lineage
from airflow_mlops.triggers import check_event
from airflow_mlops.xcom import CanaryVerdict

if TYPE_CHECKING:
    from airflow.sdk import Context

# A deferral outlives the trigger's own deadline by this much before Airflow times it out: the
# trigger's verdict at the deadline (a rollback) must arrive first.
DEFERRAL_MARGIN_S = 120.0


class CanaryAnalysisSensor(AlertingMixin, MlflowOperatorMixin, LineageMixin, BaseSensorOperator):
    """Wait until a canary's candidate has served enough requests, then compare it with the primary.

    The verdict uses the server's statistics since the canary was deployed: the candidate's error
    rate and p99 latency against the primary's (``criteria``, see
    ``airflow_mlops.serving.canary.CanaryCriteria``). An endpoint that runs no canary (a first
    deployment) passes at once.

    - Healthy: the task succeeds; the tasks after it (promotion, full rollout) run.
    - Unhealthy, or too little traffic within ``timeout``: the endpoint is rolled back to its
      previous deployment, the model version is recorded as ``rejected`` in the registry with the
      reasons (when ``model_name`` and ``version`` are given), and the task is skipped, so
      promotion and rollout are skipped while the DAG run does not fail.

    Poke and reschedule modes judge on each poke (``poke``); ``deferrable=True`` hands the wait to
    ``CanaryAnalysisTrigger``, which sends the verdict, or the last statistics at the deadline.

    :param endpoint: the endpoint (templated).
    :param criteria: ``min_requests``, ``max_error_rate_increase``, ``max_latency_ratio``, ``latency_slack_ms``.
    :param model_name, version: the candidate in the registry (templated), to record a rejection.
    :param mlflow_conn_id: the ``mlflow`` connection of that registry (None: record nothing).
    :param model_server_conn_id: connection of the server.
    :param timeout: seconds of traffic to wait for at most.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).

    XCom: ``CanaryVerdict`` (``{"healthy": true, "reasons": [...], "stats": {...}}``).
    OpenLineage: after a rollback, the versions served again as inputs and the endpoint as output.
    """

    template_fields: Sequence[str] = ("endpoint", "model_name", "version")
    ui_color = "#fff8e1"

    def __init__(
        self,
        *,
        endpoint: str,
        criteria: Mapping[str, Any] | None = None,
        model_name: str = "",
        version: str = "",
        mlflow_conn_id: str | None = MlflowHook.default_conn_name,
        model_server_conn_id: str = ModelServerHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 10.0,
        timeout: float = 1800,
        **kwargs: Any,
    ) -> None:
        from airflow_mlops.serving.canary import CanaryCriteria

        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.criteria = CanaryCriteria(**(criteria or {})).to_dict()  # a bad criterion fails at parse time
        self.endpoint, self.model_name, self.version = endpoint, model_name, version
        self.mlflow_conn_id, self.model_server_conn_id = mlflow_conn_id, model_server_conn_id
        self.deferrable = deferrable

    def _verdict(self) -> dict[str, Any]:
        from airflow_mlops.serving.canary import CanaryCriteria, judge

        stats = ModelServerHook(self.model_server_conn_id).stats(self.endpoint)
        return {**judge(stats, CanaryCriteria(**self.criteria)).to_dict(), "stats": stats}

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            from airflow.sdk.exceptions import AirflowSensorTimeout

            try:
                return super().execute(context)
            except AirflowSensorTimeout:  # too little traffic in time: judged as a failed canary
                return self._finish(context, self._verdict())
        verdict = self._verdict()
        if verdict["done"]:
            return self._finish(context, verdict)
        import time

        from airflow_mlops.triggers.canary import CanaryAnalysisTrigger

        self.defer(
            trigger=CanaryAnalysisTrigger(
                model_server_conn_id=self.model_server_conn_id,
                endpoint=self.endpoint,
                criteria=self.criteria,
                deadline=time.time() + self.timeout,
                poll_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + DEFERRAL_MARGIN_S),
        )

    def poke(self, context: Context) -> Any:
        from airflow.sdk import PokeReturnValue

        verdict = self._verdict()
        if not verdict["done"]:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, verdict))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> CanaryVerdict:
        return self._finish(context, check_event(event, f"canary analysis of {self.endpoint}"))

    def _finish(self, context: Context, verdict: Mapping[str, Any]) -> CanaryVerdict:
        from airflow.sdk.exceptions import AirflowSkipException

        for reason in verdict["reasons"]:
            self.log.info("canary %s: %s", self.endpoint, reason)
        if verdict["done"] and verdict["healthy"]:
            return {"healthy": True, "reasons": verdict["reasons"], "stats": verdict["stats"]}
        why = (
            "; ".join(verdict["reasons"])
            if verdict["done"]
            else f"too little traffic in {self.timeout:.0f} s: {'; '.join(verdict['reasons'])}"
        )
        who = actor(context, type(self).__name__)
        hook = ModelServerHook(self.model_server_conn_id)
        rolled_back = hook.rollback(self.endpoint, who, f"canary failed: {why}")
        self.record_lineage(lambda: endpoint_lineage(hook, self.endpoint, rolled_back))
        if self.model_name and self.version and self.mlflow_conn_id:
            from airflow_mlops.registry.governance import record

            record(
                self.mlflow_hook.get_conn(),
                self.model_name,
                str(self.version),
                "rejected",
                who,
                f"canary failed: {why}",
            )
        self.alert(
            context,
            "rolled_back",
            f"canary on {self.endpoint} rolled back"
            + (f": {self.model_name} v{self.version} rejected" if self.model_name and self.version else ""),
            [why],
            rollback_links(self.endpoint, self.model_name, self.version),
        )
        raise AirflowSkipException(f"canary on {self.endpoint} failed, rolled back: {why}")
