"""Wait for a person's decision on a model version in the MLflow registry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, conf

from airflow_mlops.alerts import AlertingMixin
from airflow_mlops.audit import actor
from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.triggers import check_event
from airflow_mlops.xcom import ApprovalOutcome

if TYPE_CHECKING:
    from airflow.sdk import Context


class ModelApprovalSensor(AlertingMixin, MlflowOperatorMixin, BaseSensorOperator):
    """Wait for a person to approve or reject a model version.

    A decision is the version's ``state`` tag, set by ``airflow-mlops approve|reject`` (or the UI
    plugin's API, or by hand in MLflow). Approved: the task succeeds. Rejected: the task is skipped
    with the reviewer's reason, so promotion is skipped. No decision within ``timeout``: the task
    fails (Airflow's sensor timeout). ``auto_approve=True`` approves at once (the demo's policy),
    recorded as such.

    A version found undecided is an alert (kind ``approval_pending``, once per version: the
    version's ``approval_requested`` tag records when) with the link to it on the Models page,
    through ``notifiers`` (default: the ``[mlops]`` alert configuration, see ``airflow_mlops.alerts``).

    Poke and reschedule modes read the tag on each poke; ``deferrable=True`` hands the wait to
    ``ModelApprovalTrigger`` in the triggerer, so no worker slot is held.

    :param name: the registered model; ``version``: the version (templated).
    :param mlflow_conn_id: the ``mlflow`` connection of the registry.
    :param auto_approve: approve without a person (recorded as the auto-approve policy).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poke_interval, timeout: seconds between reads, and at most in all.

    XCom: ``ApprovalOutcome`` (``{"decision", "name", "version", "by", "why"}``).
    """

    template_fields: Sequence[str] = ("version",)
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        name: str,
        version: str,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        auto_approve: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 10.0,
        timeout: float = 24 * 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.name, self.version, self.mlflow_conn_id = name, version, mlflow_conn_id
        self.auto_approve, self.deferrable = auto_approve, deferrable

    def execute(self, context: Context) -> Any:
        if self.auto_approve:
            from airflow_mlops.registry.governance import decide

            decide(
                self.mlflow_hook.get_conn(),
                self.name,
                str(self.version),
                True,
                actor(context, "auto-approve policy"),
                "auto_approve=True in the DAG (demo policy)",
            )
            return self._outcome("approved")
        decision = self._decision()
        if decision is not None:
            return self._outcome(decision)
        self._request_approval(context)
        if not self.deferrable:
            return super().execute(context)
        from airflow_mlops.triggers.approval import ModelApprovalTrigger

        self.defer(
            trigger=ModelApprovalTrigger(
                mlflow_conn_id=self.mlflow_hook.mlflow_conn_id,
                name=self.name,
                version=str(self.version),
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> Any:
        from airflow.sdk import PokeReturnValue

        decision = self._decision()
        if decision is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._outcome(decision))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> ApprovalOutcome:
        return self._outcome(check_event(event, f"approval of {self.name} v{self.version}")["decision"])

    def _request_approval(self, context: Context) -> None:
        """Tell the reviewers, once per version (the ``approval_requested`` tag says it was)."""
        from datetime import UTC, datetime

        from airflow_mlops.links import model_version_url

        client = self.mlflow_hook.get_conn()
        version = client.get_model_version(self.name, str(self.version))
        if version.tags.get("approval_requested"):
            return
        client.set_model_version_tag(
            self.name, str(self.version), "approval_requested", datetime.now(UTC).isoformat()
        )
        reasons = [f"{key}: {version.tags[key]}" for key in ("gate", "training_set") if version.tags.get(key)]
        self.alert(
            context,
            "approval_pending",
            f"{self.name} v{self.version} waits for approval",
            reasons,
            {f"{self.name} v{self.version}": model_version_url(self.name, self.version)},
        )

    def _decision(self) -> str | None:
        from airflow_mlops.registry.governance import decision

        return decision(self.mlflow_hook.get_conn(), self.name, str(self.version))

    def _outcome(self, decision: str) -> ApprovalOutcome:
        from airflow.sdk.exceptions import AirflowSkipException

        tags = self.mlflow_hook.get_conn().get_model_version(self.name, str(self.version)).tags
        outcome: ApprovalOutcome = {
            "decision": decision,
            "name": self.name,
            "version": str(self.version),
            "by": tags.get("state_by"),
            "why": tags.get("state_reason"),
        }
        if decision == "rejected":
            raise AirflowSkipException(
                f"{self.name} v{self.version} was rejected by {outcome['by']}: {outcome['why']}"
            )
        self.log.info("%s v%s approved by %s: %s", self.name, self.version, outcome["by"], outcome["why"])
        return outcome
