"""Register, approve, promote and roll back models in the MLflow registry, as Airflow tasks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseSensorOperator

from airflow_mlops.lineage import (
    MODEL_FACET,
    LineageMixin,
    model_facet,
    model_version_name,
    registry_namespace,
    storage_name,
)
from airflow_mlops.links import MLflowRunLink, ModelVersionLink, mlflow_run_url, model_version_url

if TYPE_CHECKING:
    from airflow.sdk import Context


def _who(context: Context, fallback: str) -> str:
    dag_run = context.get("dag_run")
    return f"{fallback} ({getattr(dag_run, 'dag_id', '?')}/{getattr(dag_run, 'run_id', '?')})"


class RegisterModelOperator(LineageMixin, BaseOperator):
    """Register a trained, evaluated model as a new MLflow model version with its model card.

    The version's source is a pyfunc model logged "from code" in the training run (nothing
    pickled) with a signature and an input example taken from the held-out split and pinned pip
    requirements; its tags carry the lineage (training set URI and hash, code version, DAG and run
    ids, evaluation report) and ``state=candidate``; the model card (intended use, data, metrics
    overall and per slice, fairness gaps, the gate's rules, limitations) is written as Markdown and
    HTML to ``card_dir`` and logged in the run. The ``challenger`` alias points at the version.

    :param name: the registered model name.
    :param training_result: the training task's XCom (``mlflow_run_id``, ``model_uri``; templated).
    :param report_uri: the evaluation report ``evaluation.json`` (templated).
    :param card_dir: where the model card goes (templated).
    :param tracking_uri: MLflow tracking URI (templated).
    :param intended_use, limitations: the model card's prose.

    XCom: ``{"name", "version", "model_uri", "source", "model_card", "model_card_html", "tags"}``.
    OpenLineage: the trained model's folder and the evaluation report as inputs; the model version
    (namespace ``mlflow:<registry>``, name ``<model>/<version>``) as output, with a model facet
    (state, held-out metrics, MLflow run, training set).
    """

    template_fields: Sequence[str] = ("training_result", "report_uri", "card_dir", "tracking_uri")
    ui_color = "#e6f4ea"
    operator_extra_links = (ModelVersionLink(), MLflowRunLink())

    def __init__(
        self,
        *,
        name: str,
        training_result: Any,
        report_uri: str,
        card_dir: str,
        tracking_uri: str,
        intended_use: str = "",
        limitations: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.training_result, self.report_uri = name, training_result, report_uri
        self.card_dir, self.tracking_uri = card_dir, tracking_uri
        self.intended_use, self.limitations = intended_use, limitations

    def execute(self, context: Context) -> dict[str, Any]:
        import pandas as pd

        import airflow_mlops
        from airflow_mlops.evaluation.report import finite, loads
        from airflow_mlops.registry.versions import register_version
        from airflow_mlops.training.spec import manifest_path

        result = self.training_result
        if isinstance(result, str):
            result = json.loads(result)
        if not result or not result.get("mlflow_run_id"):
            raise ValueError(f"training_result must name an MLflow run (mlflow_run_id), got {result!r}")
        evaluation = loads(Path(self.report_uri.removeprefix("file://")).read_text())
        manifest_uri = evaluation["training_set"]
        manifest = json.loads(manifest_path(manifest_uri).read_text())
        split = manifest["splits"][evaluation.get("split", "test")]
        example = pd.read_parquet(manifest_path(split["uri"], manifest_uri)).head(5)
        dag_run = context.get("dag_run")
        lineage = {
            "training_set": manifest_uri,
            "training_set_sha256": split.get("sha256", ""),
            "training_set_content_sha256": split.get("content_sha256", ""),
            "code_version": airflow_mlops.__version__,
            "dag_id": str(getattr(dag_run, "dag_id", "")),
            "dag_run_id": str(getattr(dag_run, "run_id", "")),
            "evaluation_report": self.report_uri,
            "mlflow_run_id": result["mlflow_run_id"],
        }
        registered = register_version(
            self.tracking_uri,
            self.name,
            result["mlflow_run_id"],
            Path(result["model_uri"].removeprefix("file://")),
            example,
            evaluation,
            lineage,
            Path(self.card_dir.removeprefix("file://")),
            self.intended_use or "Rank scheduled flights by the risk of arriving more than 15 minutes late.",
            self.limitations or "Trained on New York City departures of 2013 only; not a causal model.",
        )
        self.log.info(
            "Registered %s version %s (challenger); model card %s",
            self.name,
            registered["version"],
            registered["model_card"],
        )
        ModelVersionLink.persist(context, model_version_url(self.name, registered["version"]))
        MLflowRunLink.persist(context, mlflow_run_url(result["mlflow_run_id"]))
        self.record_lineage(lambda: self._lineage(result, registered["version"], evaluation, manifest_uri))
        return dict(finite(registered))

    def _lineage(
        self, result: dict[str, Any], version: str, evaluation: dict[str, Any], training_set: str
    ) -> tuple[list[Any], list[Any]]:
        from airflow_mlops.evaluation.report import finite

        facet = model_facet(
            self.name,
            version,
            state="candidate",
            metrics=finite(evaluation.get("overall", {})),
            mlflow_run_id=result["mlflow_run_id"],
            training_set=training_set,
            model_uri=result["model_uri"],
        )
        model = (
            registry_namespace(self.tracking_uri),
            model_version_name(self.name, version),
            {MODEL_FACET: facet},
        )
        return [storage_name(result["model_uri"]), storage_name(self.report_uri)], [model]


class ModelApprovalSensor(BaseSensorOperator):
    """Wait for a person to approve or reject a model version; deferrable, with its own trigger.

    A decision is the version's ``state`` tag, set by ``airflow-mlops approve|reject`` (or the UI
    plugin's API, or by hand in MLflow). Approved: the task succeeds. Rejected: the task is skipped
    with the reviewer's reason, so promotion is skipped. No decision within ``timeout``: the task
    fails (Airflow's sensor timeout). ``auto_approve=True`` approves at once (the demo's policy),
    recorded as such.

    :param name: the registered model; ``version``: the version (templated).
    :param tracking_uri: MLflow tracking URI (templated).
    :param deferrable: wait in the triggerer (default) instead of holding a worker slot.

    XCom: ``{"decision", "name", "version", "by", "why"}``.
    """

    template_fields: Sequence[str] = ("version", "tracking_uri")
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        name: str,
        version: str,
        tracking_uri: str,
        auto_approve: bool = False,
        deferrable: bool = True,
        poke_interval: float = 10.0,
        timeout: float = 24 * 3600,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.name, self.version, self.tracking_uri = name, version, tracking_uri
        self.auto_approve, self.deferrable = auto_approve, deferrable

    def execute(self, context: Context) -> Any:
        if self.auto_approve:
            from mlflow import MlflowClient

            from airflow_mlops.registry.governance import decide

            decide(
                MlflowClient(self.tracking_uri),
                self.name,
                str(self.version),
                True,
                _who(context, "auto-approve policy"),
                "auto_approve=True in the DAG (demo policy)",
            )
        if not self.deferrable or self.auto_approve:
            return super().execute(context)
        from airflow_mlops.triggers.approval import ModelApprovalTrigger

        self.defer(
            trigger=ModelApprovalTrigger(
                tracking_uri=self.tracking_uri,
                name=self.name,
                version=str(self.version),
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> Any:
        from airflow.sdk import PokeReturnValue

        from airflow_mlops.triggers.approval import read_decision

        decision = read_decision(self.tracking_uri, self.name, str(self.version))
        if decision is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._outcome(decision))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return self._outcome(event["decision"])

    def _outcome(self, decision: str) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException
        from mlflow import MlflowClient

        tags = MlflowClient(self.tracking_uri).get_model_version(self.name, str(self.version)).tags
        outcome = {
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


class PromoteModelOperator(BaseOperator):
    """Make an approved version the ``champion``; the previous champion is archived and remembered.

    Run it in a one-slot pool so promotions never overlap (they stay consistent if they do: see
    ``airflow_mlops.registry.governance.promote``).

    :param name, version (templated), tracking_uri (templated), reason: what the record says.

    XCom: ``{"champion", "previous", "changed"}``.
    """

    template_fields: Sequence[str] = ("version", "tracking_uri", "reason")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        name: str,
        version: str,
        tracking_uri: str,
        reason: str = "passed the gate and was approved",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.version, self.tracking_uri, self.reason = name, version, tracking_uri, reason

    def execute(self, context: Context) -> dict[str, Any]:
        from mlflow import MlflowClient

        from airflow_mlops.registry.governance import promote

        outcome = promote(
            MlflowClient(self.tracking_uri),
            self.name,
            str(self.version),
            _who(context, "PromoteModelOperator"),
            self.reason,
        )
        self.log.info("%s champion: v%s (previous: %s)", self.name, outcome["champion"], outcome["previous"])
        return outcome


class RollbackModelOperator(BaseOperator):
    """Restore the champion's predecessor; run again, it goes one further back.

    :param name, tracking_uri (templated), reason: why (required in the record).

    XCom: ``{"champion", "rolled_back"}``.
    """

    template_fields: Sequence[str] = ("tracking_uri", "reason")

    def __init__(self, *, name: str, tracking_uri: str, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.tracking_uri, self.reason = name, tracking_uri, reason

    def execute(self, context: Context) -> dict[str, Any]:
        from mlflow import MlflowClient

        from airflow_mlops.registry.governance import rollback

        outcome = rollback(
            MlflowClient(self.tracking_uri), self.name, _who(context, "RollbackModelOperator"), self.reason
        )
        self.log.info(
            "%s rolled back: champion v%s, v%s archived",
            self.name,
            outcome["champion"],
            outcome["rolled_back"],
        )
        return outcome
