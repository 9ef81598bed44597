"""Evaluate a trained model on the held-out split, beside the champion, and gate it on declarative rules."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from airflow.sdk import BaseOperator

from airflow_mlops.alerts import AlertingMixin
from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.lineage import LineageMixin, storage_name
from airflow_mlops.links import EvaluationReportLink, MLflowRunLink, mlflow_run_url, report_url
from airflow_mlops.storage import local_path
from airflow_mlops.xcom import EvaluationResult, GateOutcome

if TYPE_CHECKING:
    from airflow.sdk import Context


class EvaluateModelOperator(MlflowOperatorMixin, LineageMixin, BaseOperator):
    """Batch-score the training set's held-out split with the model and with the champion.

    The metrics of the model's task (declared in its package, see :mod:`airflow_mlops.models.tasks`:
    binary ROC AUC, log loss, accuracy, precision and recall at ``threshold``, FPR, expected
    calibration error; multiclass accuracy, macro F1, log loss; regression RMSE, MAE, R²) overall
    and per slice, with row counts; fairness gaps (the largest difference between slices of each
    column: TPR and FPR, accuracy, or MAE); permutation importance; all for the challenger, the
    same metrics for the champion on the same rows. Writes ``evaluation.json`` and
    ``evaluation.html`` (per-slice plots; ROC and calibration for a binary model) to
    ``report_dir`` and, with an MLflow run, logs both there as artifacts and the overall metrics
    as ``eval_*``.

    :param model_uri: the model: a model package's folder (``model.pt`` + ``config.json``, as
        ``LightningTrainOperator`` writes it) or an MLflow model's URI (``models:/m-<id>``,
        ``runs:/<run>/<name>``: a scikit-learn pipeline you logged, with ``mlops_task`` in its
        metadata; see ``evaluation.scoring``) (templated).
    :param training_set: the training set manifest whose ``split`` is scored (templated).
    :param report_dir: where the reports go (templated).
    :param champion_uri: the champion's folder, or ``models:/<name>@champion`` in the MLflow
        registry (templated); empty or an alias that does not exist yet: no champion.
    :param label_column: the label's column in the split; None: the label the model was trained on
        (an MLflow model names it with ``mlops_label`` in its metadata, else give it here).
    :param slices: columns to slice by (none by default); ``min_slice_rows``: smaller slices are left out.
    :param threshold: the decision threshold for accuracy, precision, recall and FPR.
    :param importance_rows: rows sampled for permutation importance (0 skips it).
    :param mlflow_run_id: the training run to log into (templated; empty: log nothing).
    :param mlflow_conn_id: the ``mlflow`` connection of that run and of the champion's registry.
    :param storage_conn_id: the connection of an object store (``s3://``) holding the model folder,
        the training set or the report folder; a model folder there is downloaded for the task.

    XCom: ``{"report_uri", "report_html_uri", "overall", "champion_overall", "fairness", "rows"}``.
    Extra links: "Evaluation report" (the HTML page) and "MLflow run" (with ``[mlops] mlflow_ui_url``).
    OpenLineage: the model folder, the training set manifest (and the champion's model version) as inputs;
    ``evaluation.json`` and ``evaluation.html`` as outputs.
    """

    required_extra: ClassVar[str | None] = "training"

    template_fields: Sequence[str] = (
        "model_uri",
        "training_set",
        "report_dir",
        "champion_uri",
        "mlflow_run_id",
    )
    ui_color = "#e8f0fe"
    operator_extra_links = (EvaluationReportLink(), MLflowRunLink())

    def __init__(
        self,
        *,
        model_uri: str,
        training_set: str,
        report_dir: str,
        champion_uri: str = "",
        split: str = "test",
        label_column: str | None = None,
        slices: Sequence[str] = (),
        min_slice_rows: int = 30,
        threshold: float = 0.5,
        importance_rows: int = 5000,
        mlflow_run_id: str = "",
        mlflow_conn_id: str | None = MlflowHook.default_conn_name,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.storage_conn_id = storage_conn_id
        if isinstance(slices, str):
            raise MLOpsConfigError(f"slices must be a list of column names, got the string {slices!r}")
        if not 0 < threshold < 1:
            raise MLOpsConfigError(f"threshold must lie in (0, 1), got {threshold!r}")
        self.model_uri = model_uri
        self.training_set = training_set
        self.report_dir = report_dir
        self.champion_uri = champion_uri
        self.split = split
        self.label_column = label_column
        self.slices = list(slices)
        self.min_slice_rows = min_slice_rows
        self.threshold = threshold
        self.importance_rows = importance_rows
        self.mlflow_run_id = mlflow_run_id
        self.mlflow_conn_id = mlflow_conn_id

    def execute(self, context: Context) -> EvaluationResult:
        from airflow_mlops.artifacts import write_atomically
        from airflow_mlops.evaluation.report import dumps, evaluate, finite, importance, render_html
        from airflow_mlops.evaluation.scoring import features, load_scorer, read_rows
        from airflow_mlops.models.tasks import metric_names, primary_metric
        from airflow_mlops.storage import local_folder, object_path, split_path, uri_of

        manifest = json.loads(object_path(self.training_set, self.storage_conn_id).read_text())
        if self.split not in manifest["splits"]:
            raise MLOpsConfigError(
                f"training_set {self.training_set!r} has no split {self.split!r} "
                f"(splits: {sorted(manifest['splits'])})"
            )
        frame = read_rows(
            split_path(manifest["splits"][self.split]["uri"], self.training_set, self.storage_conn_id)
        )
        with local_folder(object_path(self._model_folder(), self.storage_conn_id)) as model_folder:
            scorer = load_scorer(model_folder)
        label = self.label_column or scorer.label
        if not label:
            raise MLOpsConfigError(
                f"model {self.model_uri!r} does not name its label column: give label_column "
                "(or log the MLflow model with metadata mlops_label)"
            )
        if label not in frame.columns:
            raise MLOpsConfigError(
                f"label_column {label!r} is not a column of split {self.split!r} of {self.training_set!r}"
            )
        judged: dict[str, Any] = {
            "slices": self.slices,
            "threshold": self.threshold,
            "min_slice_rows": self.min_slice_rows,
            "task": scorer.task,
            "classes": scorer.classes,
        }
        report = {
            "model_uri": self.model_uri,
            "training_set": self.training_set,
            "split": self.split,
            **evaluate(scorer(frame), frame, label, **judged),
        }
        if self.importance_rows:
            report["importance"] = importance(
                scorer,
                frame,
                label,
                features(scorer),
                max_rows=self.importance_rows,
                task=scorer.task,
                classes=judged["classes"],
            )
        champion = self._champion()
        report["champion"] = None
        if champion is not None:
            champion_scorer = load_scorer(champion)
            if champion_scorer.task != scorer.task:
                raise MLOpsConfigError(
                    f"champion {self.champion_uri!r} is a {champion_scorer.task} model, the challenger "
                    f"{self.model_uri!r} a {scorer.task} one: they cannot be compared"
                )
            report["champion"] = {
                "model_uri": self.champion_uri,
                **evaluate(champion_scorer(frame), frame, label, **judged),
            }
        folder = object_path(self.report_dir, self.storage_conn_id)
        write_atomically(folder / "evaluation.json", dumps(report))
        write_atomically(folder / "evaluation.html", render_html(report, f"Evaluation of {self.model_uri}"))
        overall = report["overall"]
        metric = primary_metric(scorer.task)
        self.log.info(
            "Challenger (%s) on %d %s rows: %s; champion: %s",
            scorer.task,
            overall["rows"],
            self.split,
            ", ".join(f"{k} {overall[k]:.4f}" for k in metric_names(scorer.task)[:3]),
            f"{metric} {report['champion']['overall'][metric]:.4f}" if report["champion"] else "none yet",
        )
        if self.mlflow_conn_id and self.mlflow_run_id:
            self._log_to_mlflow(folder, overall)
            MLflowRunLink.persist(context, mlflow_run_url(self.mlflow_run_id))
        EvaluationReportLink.persist(context, report_url(uri_of(folder / "evaluation.html")))
        self.record_lineage(
            lambda: (
                [
                    storage_name(self.model_uri),
                    storage_name(self.training_set),
                    *([self._champion_dataset(champion)] if champion else []),
                ],
                [storage_name(uri_of(folder / name)) for name in ("evaluation.json", "evaluation.html")],
            )
        )
        return cast(
            EvaluationResult,
            finite(
                {
                    "report_uri": uri_of(folder / "evaluation.json"),
                    "report_html_uri": uri_of(folder / "evaluation.html"),
                    "overall": overall,
                    "champion_overall": report["champion"]["overall"] if report["champion"] else None,
                    "fairness": report["fairness"],
                    "rows": int(overall["rows"]),
                }
            ),
        )

    def _champion_dataset(self, folder: str) -> tuple[str, str]:
        """The champion as lineage: its registered version (as the registration named it), else its folder."""
        from airflow_mlops.lineage import model_version_name, registry_namespace
        from airflow_mlops.registry.versions import registered_version

        registered = registered_version(self.champion_uri, self.mlflow_store_uri)
        if registered is None or self.mlflow_store_uri is None:
            return storage_name(folder)
        return registry_namespace(self.mlflow_store_uri), model_version_name(*registered)

    def _model_folder(self) -> str:
        """The challenger's folder: a local path as it is; an MLflow model URI (``runs:/``,
        ``models:/``) downloaded."""
        from airflow_mlops.registry.versions import in_registry, model_folder

        if not in_registry(self.model_uri):
            return self.model_uri

        return str(model_folder(self.model_uri, self.mlflow_store_uri))

    def _champion(self) -> str | None:
        """The champion's local folder, or None when there is none yet."""
        if not self.champion_uri:
            return None
        from mlflow.exceptions import MlflowException

        from airflow_mlops.registry.versions import model_folder

        try:
            return str(model_folder(self.champion_uri, self.mlflow_store_uri))
        except MlflowException as err:
            if "RESOURCE_DOES_NOT_EXIST" in str(err.error_code) or "not found" in str(err).lower():
                self.log.info("No champion at %s yet: %s", self.champion_uri, err.message)
                return None
            raise

    def _log_to_mlflow(self, folder: Any, overall: Mapping[str, float]) -> None:
        from airflow_mlops.storage import local_folder

        client = self.mlflow_hook.get_conn()
        with local_folder(folder) as files:  # MLflow logs local files
            for name in ("evaluation.json", "evaluation.html"):
                client.log_artifact(self.mlflow_run_id, str(files / name), "evaluation")
        for key, value in overall.items():
            if value == value:  # an undefined metric (NaN) is null in the report, absent in MLflow
                client.log_metric(self.mlflow_run_id, f"eval_{key}", float(value))


class EvaluationGateOperator(AlertingMixin, MlflowOperatorMixin, BaseOperator):
    """Judge an evaluation against declarative rules; on failure, stop the deployment branch.

    Rules (see ``airflow_mlops.evaluation.gate``): absolute thresholds, a margin over the champion,
    no slice regressing more than a bound (slices under a minimum size are not judged), and an
    explicit ``no_champion`` policy for the first model. Every rule is logged with its numbers and
    written into the evaluation report (``evaluation.json`` and the HTML page). Pass: the task
    succeeds. Fail: the MLflow run is tagged ``gate=rejected`` with the failed rules, and the task
    is skipped (``AirflowSkipException``), so the tasks after it (registration, deployment) are
    skipped while the DAG run itself does not fail. A failure is an alert too (kind
    ``gate_failed``, the failed rules and the report's link) through ``notifiers`` (default: the
    ``[mlops]`` alert configuration, see ``airflow_mlops.alerts``).

    :param report_uri: ``evaluation.json`` from ``EvaluateModelOperator`` (templated).
    :param gate: the rules as a mapping, or the path of a YAML/JSON file holding them (templated).
    :param mlflow_run_id: the candidate's run, tagged with the decision (templated; empty: none).
    :param mlflow_conn_id: the ``mlflow`` connection of that run.
    :param storage_conn_id: the connection of an object store (``s3://``) holding the report.

    XCom (on pass): ``{"passed": true, "rules": [{"rule", "passed", "observed", "bound", "detail"}, ...]}``.
    """

    template_fields: Sequence[str] = ("report_uri", "gate", "mlflow_run_id")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        report_uri: str,
        gate: Mapping[str, Any] | str,
        mlflow_run_id: str = "",
        mlflow_conn_id: str | None = MlflowHook.default_conn_name,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.storage_conn_id = storage_conn_id
        self.report_uri = report_uri
        self.gate = gate
        self.mlflow_run_id = mlflow_run_id
        self.mlflow_conn_id = mlflow_conn_id

    def load_gate(self) -> Mapping[str, Any]:
        from airflow_mlops.evaluation.gate import GateError, check_gate

        gate = self.gate
        if isinstance(gate, str):
            import yaml

            path = local_path(gate, "gate")
            if not path.is_file():
                raise GateError(f"gate: file {gate!r} does not exist")
            gate = yaml.safe_load(path.read_text())
            if not isinstance(gate, Mapping):
                raise GateError(
                    f"gate: {self.gate!r} must hold a mapping with 'rules', got {type(gate).__name__}"
                )
        check_gate(gate)
        return gate

    def execute(self, context: Context) -> GateOutcome:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.artifacts import write_atomically
        from airflow_mlops.evaluation.gate import as_records, check_gate, evaluate_gate
        from airflow_mlops.evaluation.report import dumps, finite, loads, render_html
        from airflow_mlops.storage import object_path

        gate = self.load_gate()
        path = object_path(self.report_uri, self.storage_conn_id)
        report = loads(path.read_text())
        check_gate(gate, report.get("task", "binary"))  # its metrics must be the model's task's
        passed, results = evaluate_gate(gate, report, report.get("champion"))
        for result in results:
            self.log.info("%s %s: %s", "PASS" if result.passed else "FAIL", result.rule, result.detail)
        report["gate"] = {"passed": passed, "rules": as_records(results), "definition": dict(gate)}
        write_atomically(path, dumps(report))
        write_atomically(
            path.with_suffix(".html"), render_html(report, f"Evaluation of {report.get('model_uri')}")
        )
        failed = [r for r in results if not r.passed]
        if self.mlflow_conn_id and self.mlflow_run_id:
            client = self.mlflow_hook.get_conn()
            client.set_tag(self.mlflow_run_id, "gate", "passed" if passed else "rejected")
            if failed:
                client.set_tag(self.mlflow_run_id, "gate_reasons", "; ".join(r.detail for r in failed)[:5000])
        if not passed:
            from airflow_mlops.alerts import report_links

            self.alert(
                context,
                "gate_failed",
                f"evaluation gate failed for {report.get('model_uri') or self.report_uri}: "
                f"{len(failed)} of {len(results)} rules",
                [f"{r.rule}: {r.detail}" for r in failed],
                report_links(evaluation=self.report_uri),
            )
            raise AirflowSkipException(
                f"evaluation gate failed {len(failed)} of {len(results)} rules: "
                + "; ".join(f"{r.rule} ({r.detail})" for r in failed)
            )
        self.log.info("Gate passed: %d rules", len(results))
        return cast(GateOutcome, finite({"passed": True, "rules": as_records(results)}))
