"""Register, promote and roll back models in the MLflow registry, as Airflow tasks (approval: a sensor)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator

from airflow_mlops.audit import actor
from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.lineage import (
    MODEL_FACET,
    LineageMixin,
    model_facet,
    model_version_name,
    registry_namespace,
    storage_name,
)
from airflow_mlops.links import MLflowRunLink, ModelVersionLink, mlflow_run_url, model_version_url
from airflow_mlops.xcom import PromotionOutcome, RegisteredVersion, RollbackOutcome, TrainingResult

if TYPE_CHECKING:
    from airflow.sdk import Context


class RegisterModelOperator(MlflowOperatorMixin, LineageMixin, BaseOperator):
    """Register a trained, evaluated model as a new MLflow model version with its model card.

    For a model package trained by ``LightningTrainOperator`` (``model_uri`` a folder), the
    version's source is a pyfunc model logged "from code" in the training run (nothing pickled)
    with the package's signature, an input example taken from the held-out split and pinned pip
    requirements. For an MLflow model the user logged in that run (``model_uri`` is
    ``models:/m-<id>`` or ``runs:/<run>/<name>``: a scikit-learn pipeline, say), that model is
    registered as it is. The version's tags carry the lineage (training set URI and hash, code version, DAG and run
    ids, evaluation report) and ``state=candidate``; the model card (intended use, data, metrics
    overall and per slice, fairness gaps, the gate's rules, limitations) is written as Markdown and
    HTML to ``card_dir`` and logged in the run. The ``challenger`` alias points at the version.

    :param name: the registered model name.
    :param training_result: the training task's XCom (``mlflow_run_id``, ``model_uri``; templated),
        or a dict of the same keys from the user's own training task.
    :param report_uri: the evaluation report ``evaluation.json`` (templated).
    :param card_dir: where the model card goes (templated).
    :param mlflow_conn_id: the ``mlflow`` connection of the tracking server and registry.
    :param intended_use, limitations: the model card's prose.
    :param storage_conn_id: the connection of an object store (``s3://``) holding the model package,
        the report, the training set or the card folder; a package there is downloaded for the task.

    XCom: ``{"name", "version", "model_uri", "source", "model_card", "model_card_html", "tags",
    "package_sha256", "evaluation"}``; ``package_sha256`` (also the version's tag of that name) is
    the digest of the registered files a model server checks before it loads them.
    OpenLineage: the trained model's folder and the evaluation report as inputs; the model version
    (namespace ``mlflow:<registry>``, name ``<model>/<version>``) as output, with a model facet
    (state, held-out metrics, MLflow run, training set).
    """

    template_fields: Sequence[str] = ("training_result", "report_uri", "card_dir")
    ui_color = "#e6f4ea"
    operator_extra_links = (ModelVersionLink(), MLflowRunLink())

    def __init__(
        self,
        *,
        name: str,
        training_result: TrainingResult | str,
        report_uri: str,
        card_dir: str,
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        intended_use: str = "",
        limitations: str = "",
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.storage_conn_id = storage_conn_id
        self.name, self.training_result, self.report_uri = name, training_result, report_uri
        self.card_dir, self.mlflow_conn_id = card_dir, mlflow_conn_id
        self.intended_use, self.limitations = intended_use, limitations

    def execute(self, context: Context) -> RegisteredVersion:
        from contextlib import nullcontext

        import airflow_mlops
        from airflow_mlops.evaluation.report import finite, loads
        from airflow_mlops.registry.versions import register_version
        from airflow_mlops.storage import is_remote, local_folder, object_path, split_path
        from airflow_mlops.training.spec import read_parquet

        result = self.training_result
        if isinstance(result, str):
            result = json.loads(result)
        if not result or not result.get("mlflow_run_id"):
            raise MLOpsConfigError(f"training_result must name an MLflow run (mlflow_run_id), got {result!r}")
        evaluation = loads(object_path(self.report_uri, self.storage_conn_id).read_text())
        manifest_uri = evaluation["training_set"]
        manifest = json.loads(object_path(manifest_uri, self.storage_conn_id).read_text())
        split = manifest["splits"][evaluation.get("split", "test")]
        example = read_parquet(split_path(split["uri"], manifest_uri, self.storage_conn_id)).head(5)
        dag_run = context.get("dag_run")
        lineage = {
            "training_set": manifest_uri,
            "training_set_sha256": split.get("sha256", ""),
            "training_set_content_sha256": split.get("content_sha256", ""),
            "code_version": airflow_mlops.__version__,
            "dag_id": str(getattr(dag_run, "dag_id", "")),
            "dag_run_id": str(getattr(dag_run, "run_id", "")),
            # Who triggered the training run ("" for the scheduler): [mlops] approver_must_differ.
            "triggered_by_user": str(getattr(dag_run, "triggering_user_name", None) or ""),
            "evaluation_report": self.report_uri,
            "mlflow_run_id": result["mlflow_run_id"],
        }
        model_uri = str(result["model_uri"])
        # A package in the bucket is downloaded; a local folder or an MLflow URI (runs:/, models:/) is not.
        package = object_path(model_uri, self.storage_conn_id) if is_remote(model_uri) else None
        with local_folder(package) if package is not None else nullcontext(model_uri) as model:
            registered = register_version(
                self.mlflow_hook.get_conn(),
                self.mlflow_hook.tracking_uri,
                self.name,
                result["mlflow_run_id"],
                model,
                example,
                evaluation,
                lineage,
                object_path(self.card_dir, self.storage_conn_id),
                self.intended_use or "Not stated (the registering task gave no intended_use).",
                self.limitations or "Not stated (the registering task gave no limitations).",
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
        return cast(RegisteredVersion, finite(registered))

    def _lineage(
        self, result: Mapping[str, Any], version: str, evaluation: dict[str, Any], training_set: str
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
            registry_namespace(self.mlflow_hook.tracking_uri),
            model_version_name(self.name, version),
            {MODEL_FACET: facet},
        )
        return [storage_name(result["model_uri"]), storage_name(self.report_uri)], [model]


class PromoteModelOperator(MlflowOperatorMixin, BaseOperator):
    """Make an approved version the ``champion``; the previous champion is archived and remembered.

    Run it in a one-slot pool so promotions never overlap (they stay consistent if they do: see
    ``airflow_mlops.registry.governance.promote``).

    :param name, version (templated), reason (templated): what the record says.
    :param mlflow_conn_id: the ``mlflow`` connection of the registry.

    XCom: ``{"champion", "previous", "changed"}``.
    """

    template_fields: Sequence[str] = ("version", "reason")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        name: str,
        version: str,
        reason: str = "passed the gate and was approved",
        mlflow_conn_id: str = MlflowHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.version, self.reason, self.mlflow_conn_id = name, version, reason, mlflow_conn_id

    def execute(self, context: Context) -> PromotionOutcome:
        from airflow_mlops.registry.governance import promote

        outcome = promote(
            self.mlflow_hook.get_conn(),
            self.name,
            str(self.version),
            actor(context, type(self).__name__),
            self.reason,
        )
        self.log.info("%s champion: v%s (previous: %s)", self.name, outcome["champion"], outcome["previous"])
        return cast(PromotionOutcome, outcome)


class RollbackModelOperator(MlflowOperatorMixin, BaseOperator):
    """Restore the champion's predecessor; run again, it goes one further back.

    :param name, reason (templated): why (required in the record).
    :param mlflow_conn_id: the ``mlflow`` connection of the registry.

    XCom: ``{"champion", "rolled_back"}``.
    """

    template_fields: Sequence[str] = ("reason",)

    def __init__(
        self, *, name: str, reason: str, mlflow_conn_id: str = MlflowHook.default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.reason, self.mlflow_conn_id = name, reason, mlflow_conn_id

    def execute(self, context: Context) -> RollbackOutcome:
        from airflow_mlops.registry.governance import rollback

        outcome = rollback(
            self.mlflow_hook.get_conn(), self.name, actor(context, type(self).__name__), self.reason
        )
        self.log.info(
            "%s rolled back: champion v%s, v%s archived",
            self.name,
            outcome["champion"],
            outcome["rolled_back"],
        )
        return cast(RollbackOutcome, outcome)
