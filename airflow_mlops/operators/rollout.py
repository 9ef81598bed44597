"""A stepwise rollout: a new version takes traffic in steps, judged between them, rolled back on failure."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import conf

from airflow_mlops.alerts import AlertingMixin, rollback_links
from airflow_mlops.audit import actor
from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.hooks.mlflow import MlflowHook
from airflow_mlops.operators.deploy import DeployModelOperator, current_primary
from airflow_mlops.xcom import RolloutResult

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The model version tag that keeps a rollout's decisions (JSON), beside the governance history.
ROLLOUT_TAG = "rollout"
DEFAULT_STEPS = (0.05, 0.25, 0.5, 1.0)


class StepwiseRolloutOperator(AlertingMixin, DeployModelOperator):
    """Roll ``version`` out to ``endpoint`` in steps, e.g. 5 % -> 25 % -> 50 % -> 100 %, as KServe's
    and SageMaker's progressive rollouts do, with an analysis between steps and automatic rollback.

    Each step below 100 % is a canary of the version beside the endpoint's current primary, with the
    step's share of the traffic. The server's statistics restart with each deployment, so each
    step is judged on its own traffic (``serving.canary.judge`` with ``criteria``): the candidate
    must serve ``min_requests``; its failures (server errors and the requests its signature refused,
    the 422s a changed input schema causes) may exceed the primary's by ``max_error_rate_increase``;
    its p99 latency may be ``max_latency_ratio`` times the primary's. A healthy step goes on to the
    next; the last (100 %) serves the version alone. A step that fails, or gets too little traffic
    within ``step_timeout``, puts the primary back alone, records the version ``rejected`` with the
    step and the reasons, and skips the task (and what follows it: promotion), as a failed canary.
    Every step's decision is kept on the version (tag ``rollout``, JSON) and in XCom.

    On a new endpoint there is nothing to compare with: the version is deployed alone (mode
    ``first``). ``require_infra_blessing`` is checked as ``DeployModelOperator`` checks it.

    :param endpoint, model_name, version: as ``DeployModelOperator`` (templated).
    :param steps: the candidate's shares in order, each in (0, 1], increasing, the last 1.0.
    :param criteria: ``serving.canary.CanaryCriteria`` as a dict, for every step.
    :param step_timeout: seconds a step may wait for enough traffic.
    :param poll_interval: seconds between reads of the statistics.
    :param deferrable: wait for each step in the triggerer (default ``[operators] default_deferrable``).
    :param mlflow_conn_id: the registry, where the decisions and a rejection are recorded.

    XCom: ``{"endpoint", "mode" ("stepwise" or "first"), "steps": [{"step", "weight", "healthy",
    "reasons", "candidate_requests", "replicas"}], "deployment"}``.
    """

    ui_color = "#ede7f6"

    def __init__(
        self,
        *,
        endpoint: str,
        model_name: str,
        version: str,
        steps: Sequence[float] = DEFAULT_STEPS,
        criteria: Mapping[str, Any] | None = None,
        step_timeout: float = 1800,
        poll_interval: float = 10.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        from airflow_mlops.serving.canary import CanaryCriteria

        super().__init__(
            endpoint=endpoint, model_name=model_name, version=version, mlflow_conn_id=mlflow_conn_id, **kwargs
        )
        self.steps = check_steps(steps, kwargs.get("task_id"))
        self.criteria = CanaryCriteria(**(criteria or {})).to_dict()  # a bad criterion fails at parse time
        if step_timeout <= 0 or poll_interval <= 0:
            raise MLOpsConfigError(
                f"{kwargs.get('task_id')}: step_timeout and poll_interval must be positive, "
                f"got {step_timeout!r} and {poll_interval!r}"
            )
        self.step_timeout, self.poll_interval, self.deferrable = step_timeout, poll_interval, deferrable

    # -- the steps ---------------------------------------------------------------------------

    def execute(self, context: Context) -> RolloutResult:
        from airflow_mlops.hooks.model_server import ModelServerHook

        if not str(self.version):
            raise MLOpsConfigError(
                f"version of {self.model_name!r} is empty (it is templated: did the upstream task push one?)"
            )
        hook = ModelServerHook(self.model_server_conn_id)
        current = hook.deployments().get(self.endpoint)
        model = self.model()
        if self.blessing_required():
            self.check_blessed({"candidate": model}, current)
        if current is None:
            record = hook.deploy(
                self.endpoint,
                {"main": model},
                {"kind": "single"},
                self.who(context),
                "stepwise rollout: first deployment",
                feature_service=self.feature_service,
                log_fields=self.log_fields,
            )
            return {"endpoint": self.endpoint, "mode": "first", "steps": [], "deployment": record}
        primary = current_primary(current)
        if primary == model:  # already served alone: a retried rollout changes nothing
            return {"endpoint": self.endpoint, "mode": "stepwise", "steps": [], "deployment": current}
        return self.step(context, 0, primary, [])

    def step(
        self, context: Context, index: int, primary: dict[str, str], decisions: list[dict[str, Any]]
    ) -> RolloutResult:
        """Deploy step ``index`` and judge it (or defer until it can be judged)."""
        from airflow_mlops.hooks.model_server import ModelServerHook
        from airflow_mlops.serving.canary import CanaryCriteria, judge

        hook, weight = ModelServerHook(self.model_server_conn_id), self.steps[index]
        where = f"step {index + 1} of {len(self.steps)} ({weight:.0%})"
        if weight >= 1.0:
            record = hook.deploy(
                self.endpoint,
                {"main": self.model()},
                {"kind": "single"},
                self.who(context),
                f"stepwise rollout: {where}, after {index} healthy steps",
                feature_service=self.feature_service,
                log_fields=self.log_fields,
            )
            self.log.info(
                "Rollout of %s v%s on %s: %s, complete", self.model_name, self.version, self.endpoint, where
            )
            self.keep(decisions)
            return {"endpoint": self.endpoint, "mode": "stepwise", "steps": decisions, "deployment": record}
        hook.deploy(
            self.endpoint,
            {"main": primary, "candidate": self.model()},
            {"kind": "canary", "primary": "main", "candidate": "candidate", "weight": weight},
            self.who(context),
            f"stepwise rollout: {where} to {self.model_name} v{self.version}",
            feature_service=self.feature_service,
            log_fields=self.log_fields,
        )
        self.log.info(
            "Rollout of %s v%s on %s: %s deployed", self.model_name, self.version, self.endpoint, where
        )
        deadline = time.time() + self.step_timeout
        if self.deferrable:
            from airflow_mlops.sensors.canary import DEFERRAL_MARGIN_S
            from airflow_mlops.triggers.canary import CanaryAnalysisTrigger

            self.defer(
                trigger=CanaryAnalysisTrigger(
                    model_server_conn_id=self.model_server_conn_id,
                    endpoint=self.endpoint,
                    criteria=self.criteria,
                    deadline=deadline,
                    poll_interval=self.poll_interval,
                    carry={"index": index, "primary": primary, "decisions": decisions},
                ),
                method_name="step_complete",
                timeout=timedelta(seconds=self.step_timeout + DEFERRAL_MARGIN_S),
            )
        criteria = CanaryCriteria(**self.criteria)
        while True:
            stats = hook.stats(self.endpoint)
            verdict = judge(stats, criteria)
            if verdict.done or time.time() >= deadline:
                return self.judged(context, index, primary, decisions, {**verdict.to_dict(), "stats": stats})
            time.sleep(self.poll_interval)

    def step_complete(self, context: Context, event: dict[str, Any]) -> RolloutResult:
        """Resume after a step's trigger: the step and the decisions so far come back in the event."""
        from airflow_mlops.triggers import check_event

        carry = (event or {}).get("carry") or {}
        index = int(carry.get("index", 0))
        verdict = check_event(event, f"rollout step {index + 1} on {self.endpoint}")
        return self.judged(context, index, carry["primary"], list(carry["decisions"]), verdict)

    def judged(
        self,
        context: Context,
        index: int,
        primary: dict[str, str],
        decisions: list[dict[str, Any]],
        verdict: Mapping[str, Any],
    ) -> RolloutResult:
        """Record step ``index``'s decision; go on, or roll back and skip."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.hooks.model_server import ModelServerHook

        weight = self.steps[index]
        candidate = verdict.get("stats", {}).get("variants", {}).get("candidate", {})
        healthy = bool(verdict["done"] and verdict["healthy"])
        reasons = list(verdict["reasons"])
        if not verdict["done"]:
            reasons.append(f"too little traffic in {self.step_timeout:.0f} s")
        decisions = [
            *decisions,
            {
                "step": index + 1,
                "weight": weight,
                "healthy": healthy,
                "reasons": reasons,
                "candidate_requests": int(candidate.get("requests") or 0),
                "replicas": int(verdict.get("stats", {}).get("replicas") or 1),
            },
        ]
        for reason in reasons:
            self.log.info("Rollout step %d (%.0f%%): %s", index + 1, weight * 100, reason)
        if healthy:
            return self.step(context, index + 1, primary, decisions)
        why = f"rolled back at step {index + 1} of {len(self.steps)} ({weight:.0%}): {'; '.join(reasons)}"
        who = self.who(context)
        ModelServerHook(self.model_server_conn_id).deploy(
            self.endpoint,
            {"main": primary},
            {"kind": "single"},
            who,
            f"stepwise rollout of v{self.version} {why}",
            feature_service=self.feature_service,
            log_fields=self.log_fields,
        )
        self.keep(decisions)
        if self.mlflow_conn_id:
            from airflow_mlops.registry.governance import record

            record(
                MlflowHook(self.mlflow_conn_id).get_conn(),
                self.model_name,
                str(self.version),
                "rejected",
                who,
                f"stepwise rollout {why}",
            )
        self.alert(
            context,
            "rolled_back",
            f"rollout of {self.model_name} v{self.version} on {self.endpoint} rolled back",
            [why],
            rollback_links(self.endpoint, self.model_name, self.version),
        )
        raise AirflowSkipException(f"rollout of {self.model_name} v{self.version} on {self.endpoint} {why}")

    # -- helpers -----------------------------------------------------------------------------

    def model(self) -> dict[str, str]:
        return {"name": self.model_name, "version": str(self.version)}

    def who(self, context: Context) -> str:
        return actor(context, type(self).__name__)

    def keep(self, decisions: list[dict[str, Any]]) -> None:
        """The decisions as the version's ``rollout`` tag (the last ones, within MLflow's tag limit)."""
        if not self.mlflow_conn_id:
            return
        kept = list(decisions)
        while len(json.dumps(kept)) > 4500 and len(kept) > 1:
            kept.pop(0)
        MlflowHook(self.mlflow_conn_id).get_conn().set_model_version_tag(
            self.model_name, str(self.version), ROLLOUT_TAG, json.dumps(kept)[:5000]
        )


def check_steps(steps: Any, task_id: Any = None) -> list[float]:
    """Shares in (0, 1], strictly increasing, ending at 1.0; a bad list names the rule and the value."""
    if isinstance(steps, str) or not isinstance(steps, Sequence) or not steps:
        raise MLOpsConfigError(f"{task_id}: steps must be a list of traffic shares, got {steps!r}")
    values = []
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step <= 1:
            raise MLOpsConfigError(
                f"{task_id}: every step must be a share within (0, 1], got {step!r} in {list(steps)}"
            )
        values.append(float(step))
    if any(b <= a for a, b in itertools.pairwise(values)) or values[-1] != 1.0:
        raise MLOpsConfigError(
            f"{task_id}: steps must increase and end at 1.0 (the version alone), got {list(steps)}"
        )
    return values
