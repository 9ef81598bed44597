"""Monitor a served model from the model server's request log: drift and skew, performance, alerts."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator

from airflow_mlops.alerts import AlertingMixin, report_links
from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.links import MonitoringReportLink, report_url
from airflow_mlops.xcom import DriftResult, PerformanceResult

if TYPE_CHECKING:
    from airflow.sdk import Context


class _RequestLogMonitor(MlflowOperatorMixin, BaseOperator):
    """What both monitors share: the window of the request log, the report files, the MLflow run."""

    ui_color = "#fce8e6"
    operator_extra_links = (MonitoringReportLink(),)

    def __init__(
        self,
        *,
        endpoint: str,
        request_log: str,
        report_dir: str,
        start: str = "",
        end: str = "",
        mlflow_conn_id: str | None = MlflowHook.default_conn_name,
        mlflow_experiment: str = "",
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.storage_conn_id = storage_conn_id
        self.endpoint, self.request_log, self.report_dir = endpoint, request_log, report_dir
        self.start, self.end = start, end
        self.mlflow_conn_id = mlflow_conn_id
        self.mlflow_experiment = mlflow_experiment or f"{endpoint}-monitoring"

    def served(self, context: Context, *, answered_only: bool = False) -> tuple[Any, dict[str, str]]:
        """The endpoint's predictions in the window, as rows with their features; skips when none.
        ``answered_only``: leave out shadow copies (scored and logged, never sent to a caller)."""
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.monitoring.monitors import serving_rows, window

        start = self.start or context.get("data_interval_start")
        end = self.end or context.get("data_interval_end")
        if not start or not end:
            raise MLOpsConfigError(
                f"{self.task_id}: no window: give start and end (templated) or run on a schedule "
                f"(data interval); got start={start!r}, end={end!r}"
            )
        import pandas as pd

        since, until = pd.Timestamp(start), pd.Timestamp(end)
        logged = window(
            self.read_requests(since, until),
            endpoint=self.endpoint,
            start=start,
            end=end,
        )
        if answered_only and len(logged):
            logged = logged[logged["role"] != "shadow"].reset_index(drop=True)
        span = {"start": str(start), "end": str(end)}
        if len(logged) == 0:
            raise AirflowSkipException(
                f"no predictions of endpoint {self.endpoint!r} in [{start}, {end}) in the "
                f"request log {self.request_log}: nothing to monitor"
            )
        self.log.info("%d predictions of %s in [%s, %s)", len(logged), self.endpoint, start, end)
        return serving_rows(logged), span

    @property
    def conn_id(self) -> str | None:
        """The object store's connection: ``storage_conn_id``, else ``[mlops] lake_conn_id``."""
        from airflow_mlops import settings

        return self.storage_conn_id or settings.lake_conn_id()

    def path(self, uri: str) -> Any:
        """``uri`` as a ``pathlib.Path`` (local) or an ``ObjectStoragePath`` with :attr:`conn_id`."""
        from airflow_mlops.storage import object_path

        return object_path(uri, self.conn_id)

    def read_requests(self, since: Any, until: Any, kind: str = "predictions") -> Any:
        """The request log's predictions (or ``kind="feedback"``) between ``since`` and ``until``
        (by daily partition; ``None``: open-ended), from a local folder or through
        ``ObjectStoragePath`` with ``storage_conn_id`` (``s3://...``)."""
        return read_request_log(self.request_log, self.conn_id, since, until, kind)

    def labelled(self, served: Any, labels_uri: str, label_key: str, label_column: str, task: str) -> Any:
        """The served predictions joined with their labels from ``labels_uri`` (keyed by
        ``label_key``: ``prediction_id`` or a logged feature; ``monitoring.monitors.join_labels``)."""
        from airflow_mlops.monitoring.monitors import MonitoringError, join_labels, labels_by_prediction

        labels = read_labels(self.path(labels_uri))
        try:
            labels = labels_by_prediction(
                served, labels, label_key=label_key, label_column=label_column, source=labels_uri
            )
        except MonitoringError as err:
            raise MonitoringError(f"{self.task_id} ({self.endpoint!r}): {err}") from err
        return join_labels(served, labels, label_column=label_column, task=task)

    def write(self, context: Context, report: Mapping[str, Any], page: str, name: str) -> tuple[Any, Any]:
        """The report as JSON and HTML in ``report_dir`` (local or in an object store), each written
        whole or not at all; the HTML is the task's "Monitoring report" link. Returns both paths."""
        from airflow_mlops.artifacts import write_atomically
        from airflow_mlops.evaluation.report import dumps
        from airflow_mlops.storage import uri_of

        folder = self.path(self.report_dir)
        if isinstance(folder, Path):
            folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / f"{name}.json", dumps(report).encode())
        write_atomically(folder / f"{name}.html", page.encode())
        MonitoringReportLink.persist(context, report_url(uri_of(folder / f"{name}.html")))
        return folder / f"{name}.json", folder / f"{name}.html"

    def log_to_mlflow(
        self, run_name: str, metrics: Mapping[str, float], params: Mapping[str, Any], files: Sequence[Any]
    ) -> str:
        """One MLflow run per report in the endpoint's monitoring experiment; "" without a connection."""
        if not self.mlflow_conn_id:
            return ""
        return self.mlflow_hook.log_run(
            self.mlflow_experiment,
            run_name,
            tags={"endpoint": self.endpoint, "monitor": self.task_id},
            params=params,
            metrics=metrics,
            files=files,
        )


class DriftMonitorOperator(_RequestLogMonitor):
    """Training/serving skew and drift of the features an endpoint was served, from its request log.

    The window's predictions are unpacked into the features the model saw. The reference is the
    training set of the model version that served most of them (the registry's ``training_set``
    lineage tag of ``models:/<model_name>/<version>``), or ``reference``. Each feature is compared
    (PSI and Kolmogorov-Smirnov for numeric features, Jensen-Shannon for categorical ones, with
    categories the reference never saw and columns the requests lack reported as schema
    anomalies), and the served probabilities are compared with the model's on the reference rows
    (prediction drift). The threshold is breached when at least ``min_drifted`` features drift or
    the prediction PSI exceeds ``prediction_psi_threshold``.

    Writes ``drift.json`` and ``drift.html`` (plots) to ``report_dir``; logs ``drift_score``,
    ``drifted_features``, ``prediction_psi`` and one ``drift_<feature>`` per feature to a run of the
    MLflow experiment ``<endpoint>-monitoring``, with both files. Skipped (not failed) when the
    window holds no prediction. Emits no Asset itself: ``ModelDriftAlertOperator`` does, on a breach.

    :param endpoint: the model server endpoint; ``request_log``: its request log folder
        (``<serving_dir>/requests``) or object store URI (``s3://bucket/requests``, read with
        ``storage_conn_id``, default ``[mlops] lake_conn_id``); ``start``/``end``: the window
        (templated, ISO times with a zone; default the run's data interval).
    :param model_name: the registered model served there; ``mlflow_conn_id``: its registry, where
        the reports' runs go too (None: no registry, no runs).
    :param reference: a training set manifest, a Parquet file or a stored profile (``.json``)
        instead of the served version's training set (templated); ``reference_split``: which split.
    :param columns: the features to compare (default: the served model's input columns, from its
        signature: a model package's or any MLflow model's); ``ignore``: features left out (calendar columns that move by design).
    :param psi_threshold, js_threshold, thresholds: per-metric and per-feature thresholds.
    :param reference_sample: reference rows scored for prediction drift (0: no prediction drift).
    :param attribution_sample: rows of each side (reference and served) attributed for
        feature-attribution drift (0: none): the explanation layer's attributions
        (``serving.explain.attribution_frame``: integrated gradients for the reference network,
        KernelSHAP for any other model), compared per feature by the share of the mean absolute
        attribution and the PSI of its magnitude, both over their bounds (``monitoring.monitors.attribution_drift``);
        ``attribution_share_threshold`` and ``attribution_psi_threshold`` bound them. A feature
        whose attribution drifts breaches like a drifted feature: it is in ``reasons`` and in the
        ``model_drift`` event's ``features`` (as ``attribution:<feature>``).

    XCom: ``{"report_uri", "report_html_uri", "score", "drifted", "features", "breached",
    "reasons", "rows", "version", "prediction_psi", "attribution_drifted", "window", "mlflow_run_id"}``.
    """

    template_fields: Sequence[str] = (
        "request_log",
        "report_dir",
        "start",
        "end",
        "reference",
    )

    def __init__(
        self,
        *,
        endpoint: str,
        request_log: str,
        report_dir: str,
        model_name: str = "",
        reference: str = "",
        reference_split: str = "train",
        columns: Sequence[str] | None = None,
        ignore: Sequence[str] = (),
        psi_threshold: float = 0.2,
        js_threshold: float = 0.1,
        thresholds: Mapping[str, float] | None = None,
        min_drifted: int = 1,
        prediction_psi_threshold: float = 0.2,
        reference_sample: int = 20_000,
        attribution_sample: int = 0,
        attribution_share_threshold: float = 0.1,
        attribution_psi_threshold: float = 0.25,
        **kwargs: Any,
    ) -> None:
        super().__init__(endpoint=endpoint, request_log=request_log, report_dir=report_dir, **kwargs)
        if (
            isinstance(attribution_sample, bool)
            or not isinstance(attribution_sample, int)
            or attribution_sample < 0
        ):
            raise MLOpsConfigError(
                f"{self.task_id}: attribution_sample must be a whole number of rows, 0 for none; got {attribution_sample!r}"
            )
        if attribution_sample and not model_name:
            raise MLOpsConfigError(
                f"{self.task_id}: attribution_sample needs model_name (the served version's model attributes the rows)"
            )
        for name, bound in (
            ("attribution_share_threshold", attribution_share_threshold),
            ("attribution_psi_threshold", attribution_psi_threshold),
        ):
            if isinstance(bound, bool) or not isinstance(bound, int | float) or not 0 < bound < math.inf:
                raise MLOpsConfigError(f"{self.task_id}: {name} must be a positive number, got {bound!r}")
        self.attribution_sample = attribution_sample
        self.attribution_share_threshold, self.attribution_psi_threshold = (
            attribution_share_threshold,
            attribution_psi_threshold,
        )
        if not model_name and not reference:
            raise MLOpsConfigError(
                f"{self.task_id}: give model_name (the reference is the served version's training "
                "set) or reference (a training set manifest, Parquet file or profile)"
            )
        if min_drifted < 1:
            raise MLOpsConfigError(f"{self.task_id}: min_drifted must be at least 1, got {min_drifted!r}")
        self.model_name, self.reference, self.reference_split = model_name, reference, reference_split
        self.columns, self.ignore = list(columns) if columns else None, list(ignore)
        self.psi_threshold, self.js_threshold = psi_threshold, js_threshold
        self.thresholds = dict(thresholds or {})
        self.min_drifted, self.prediction_psi_threshold = min_drifted, prediction_psi_threshold
        self.reference_sample = reference_sample

    def execute(self, context: Context) -> DriftResult:
        import numpy as np

        from airflow_mlops.evaluation.report import finite
        from airflow_mlops.monitoring.monitors import drift_breaches, drift_report, prediction_drift
        from airflow_mlops.monitoring.report import render_drift_html
        from airflow_mlops.storage import uri_of

        served, span = self.served(context)
        version = str(served["version"].value_counts().idxmax()) if "version" in served else ""
        with tempfile.TemporaryDirectory() as scratch:
            model_dir = self._model_dir(version, Path(scratch))
            reference, reference_name = self._reference(version)
            columns = self.columns or self._model_features(model_dir)
            columns = [c for c in columns if c not in self.ignore]
            report = drift_report(
                reference,
                served,
                columns=columns,
                psi_threshold=self.psi_threshold,
                js_threshold=self.js_threshold,
                thresholds=self.thresholds,
                keep_profiles=True,
            )
            predictions: dict[str, Any] | None = None
            if model_dir is not None and self.reference_sample and not isinstance(reference, Mapping):
                from airflow_mlops.evaluation.scoring import load_scorer

                sample = reference.sample(min(len(reference), self.reference_sample), random_state=0)
                expected = load_scorer(model_dir)(sample)
                if expected.ndim == 2:  # multiclass: the request log keeps the top class's probability
                    expected = expected.max(axis=1)
                predictions = prediction_drift(expected, served["probability"].to_numpy())
                grid = np.linspace(0, 1, 51)
                predictions["quantiles"] = {
                    "reference": np.quantile(expected, grid).tolist(),
                    "served": np.quantile(served["probability"], grid).tolist(),
                }
            attributions = self._attribution_drift(model_dir, version, reference, served)
        reasons = drift_breaches(
            report,
            predictions,
            min_drifted=self.min_drifted,
            prediction_psi_threshold=self.prediction_psi_threshold,
        )
        if attributions is not None:
            from airflow_mlops.monitoring.monitors import attribution_breaches

            reasons += attribution_breaches(attributions)
        report.update(
            endpoint=self.endpoint,
            window=span,
            version=version,
            reference=reference_name,
            prediction_drift=predictions,
            attribution_drift=attributions,
            breached=bool(reasons),
            reasons=reasons,
            versions_served={str(k): int(v) for k, v in served["version"].value_counts().items()},
        )
        written = self.write(context, report, render_drift_html(report, f"Drift of {self.endpoint}"), "drift")
        report_uri, html_uri = map(uri_of, written)
        features = {c["column"]: round(c["value"], 4) for c in report["columns"] if c["drifted"]}
        for column in (attributions or {}).get("columns", []):
            if column["drifted"]:
                features[f"attribution:{column['column']}"] = round(column["share_change"], 4)
        metrics = {
            "drift_score": report["score"],
            "drifted_features": float(len(report["drifted"])),
            "served_rows": float(len(served)),
            **{f"drift_{c['column']}": c["value"] for c in report["columns"]},
        }
        if predictions:
            metrics["prediction_psi"] = predictions["psi"]
        if attributions is not None:
            metrics["attribution_score"] = attributions["score"]
            for column in attributions["columns"]:
                metrics[f"attribution_share_{column['column']}"] = column["served_share"]
        run_id = self.log_to_mlflow(
            f"drift {span['start']}..{span['end']}",
            metrics,
            {"reference": reference_name, "version": version, **span},
            written,
        )
        for reason in reasons or ["no drift"]:
            self.log.info("%s: %s", self.endpoint, reason)
        return cast(
            DriftResult,
            dict(
                finite(
                    {
                        "report_uri": report_uri,
                        "report_html_uri": html_uri,
                        "score": report["score"],
                        "drifted": report["drifted"],
                        "features": features,
                        "breached": bool(reasons),
                        "reasons": reasons,
                        "rows": len(served),
                        "version": version,
                        "prediction_psi": predictions["psi"] if predictions else None,
                        "attribution_drifted": attributions["drifted"] if attributions else [],
                        "window": span,
                        "mlflow_run_id": run_id,
                    }
                )
            ),
        )

    def _attribution_drift(
        self, model_dir: Path | None, version: str, reference: Any, served: Any
    ) -> dict[str, Any] | None:
        """Attribution drift of ``attribution_sample`` rows each side (None when not asked)."""
        if not self.attribution_sample:
            return None
        if model_dir is None or isinstance(reference, Mapping):
            raise MLOpsConfigError(
                f"{self.task_id}: attribution drift needs the served model (model_name with "
                f"mlflow_conn_id) and reference rows, not a stored profile; got model "
                f"{'found' if model_dir else 'none'} and a {'profile' if isinstance(reference, Mapping) else 'rows'} reference"
            )
        from airflow_mlops.evaluation.scoring import load_scorer
        from airflow_mlops.monitoring.monitors import attribution_drift
        from airflow_mlops.serving.explain import attribution_frame
        from airflow_mlops.serving.models import ServedModel

        model = ServedModel(self.model_name, version, model_dir, load_scorer(model_dir))
        sides = {
            side: rows.sample(min(len(rows), self.attribution_sample), random_state=0)
            for side, rows in (("reference", reference), ("served", served))
        }
        return attribution_drift(
            attribution_frame(model, sides["reference"]),
            attribution_frame(model, sides["served"]),
            psi_threshold=self.attribution_psi_threshold,
            share_threshold=self.attribution_share_threshold,
        )

    def _model_dir(self, version: str, scratch: Path) -> Path | None:
        if not (self.model_name and version and self.mlflow_conn_id):
            return None
        from airflow_mlops.registry.versions import model_folder

        return model_folder(f"models:/{self.model_name}/{version}", self.mlflow_store_uri, scratch)

    def _model_features(self, model_dir: Path | None) -> list[str]:
        if model_dir is None:
            raise MLOpsConfigError(
                f"{self.task_id}: give columns: without a registered model (model_name and "
                "mlflow_conn_id) the model's features are unknown"
            )
        from airflow_mlops.models.package import input_columns

        return input_columns(model_dir)

    def _reference(self, version: str) -> tuple[Any, str]:
        """The reference rows (or profile) and where they come from."""
        from airflow_mlops.evaluation.scoring import read_rows
        from airflow_mlops.storage import is_remote, split_path
        from airflow_mlops.training.spec import manifest_path

        uri = self.reference
        if not uri:
            tags = self.mlflow_hook.get_conn().get_model_version(self.model_name, version).tags
            uri = tags.get("training_set", "")
            if not uri:
                raise MLOpsConfigError(
                    f"{self.task_id}: {self.model_name} version {version} has no training_set tag "
                    "(rule: a registered version names its training set); give reference"
                )
        path = self.path(uri) if is_remote(uri) else manifest_path(uri)
        if path.suffix == ".parquet":
            return read_rows(path), uri
        document = json.loads(path.read_text())
        if "columns" in document and "rows" in document:  # a stored profile
            return document, uri
        splits = document.get("splits", {})
        if self.reference_split not in splits:
            raise MLOpsConfigError(
                f"{self.task_id}: reference {uri!r} has no split {self.reference_split!r} "
                f"(splits: {sorted(splits)})"
            )
        return read_rows(
            split_path(splits[self.reference_split]["uri"], uri, self.conn_id)
        ), f"{uri} ({self.reference_split})"


class PerformanceMonitorOperator(_RequestLogMonitor):
    """The served model's performance once the ground truth arrives, from its request log.

    Labels are a Parquet file (or folder) with ``label_key`` and ``label_column``. ``label_key``
    is ``prediction_id`` (labels sent back per prediction) or a feature the requests carried (the
    flight's ``flight_id``): each prediction gets the label of its key, then predictions and labels
    are joined by prediction id (``monitoring.monitors.join_labels``: a key labelled twice is an
    error; predictions without a label and labels without a prediction are counted). The threshold
    is breached when AUC falls under ``min_auc`` or calibration error exceeds
    ``max_calibration_error`` (binary), or when any metric of the task leaves its ``bounds``.

    :param task: the served model's task: ``binary`` (the labels are 0 or 1), ``multiclass`` (the
        labels are class names; accuracy, macro F1 and log loss from the class probabilities the
        request log keeps in ``output``) or ``regression`` (numbers; RMSE, MAE and R²).
    :param bounds: ``{metric: {"min": x} | {"max": x}}`` on the task's metrics, e.g.
        ``{"rmse": {"max": 40}}``; checked when the operator is created.

    Writes ``performance.json`` and ``.html`` to ``report_dir``; logs ``auc``, ``log_loss``,
    ``calibration_error``, ``labelled`` and ``auc_v<version>`` per served version to MLflow.
    Skipped when the window holds no prediction or no prediction has a label yet.

    XCom: ``{"report_uri", "report_html_uri", "overall", "versions", "labelled", "breached",
    "reasons", "window", "mlflow_run_id"}``.
    """

    template_fields: Sequence[str] = (
        "request_log",
        "report_dir",
        "start",
        "end",
        "labels",
    )

    def __init__(
        self,
        *,
        endpoint: str,
        request_log: str,
        report_dir: str,
        labels: str,
        label_key: str = "prediction_id",
        label_column: str = "label",
        min_auc: float | None = None,
        max_calibration_error: float | None = None,
        threshold: float = 0.5,
        task: str = "binary",
        bounds: Mapping[str, Mapping[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        from airflow_mlops.models.tasks import check_task
        from airflow_mlops.monitoring.monitors import check_bounds

        super().__init__(endpoint=endpoint, request_log=request_log, report_dir=report_dir, **kwargs)
        if not 0 < threshold < 1:
            raise MLOpsConfigError(f"{self.task_id}: threshold must lie in (0, 1), got {threshold!r}")
        self.task = check_task(task, f"{self.task_id}: task")
        if task != "binary" and (min_auc is not None or max_calibration_error is not None):
            raise MLOpsConfigError(
                f"{self.task_id}: min_auc and max_calibration_error are for binary models; give bounds for a {task} one"
            )
        self.bounds = dict(bounds or {})
        check_bounds(self.bounds, task)
        self.labels, self.label_key, self.label_column = labels, label_key, label_column
        self.min_auc, self.max_calibration_error, self.threshold = min_auc, max_calibration_error, threshold

    def execute(self, context: Context) -> PerformanceResult:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.evaluation.metrics import calibration_curve
        from airflow_mlops.evaluation.report import finite
        from airflow_mlops.models.tasks import metric_names, primary_metric
        from airflow_mlops.monitoring.monitors import performance_breaches, performance_report
        from airflow_mlops.monitoring.report import render_performance_html
        from airflow_mlops.storage import uri_of

        served, span = self.served(context)
        joined = self.labelled(served, self.labels, self.label_key, self.label_column, self.task)
        if len(joined) == 0:
            raise AirflowSkipException(
                f"none of the {len(served)} predictions of {self.endpoint!r} in the window "
                f"has a label in {self.labels} yet"
            )

        def judged(rows: Any) -> dict[str, Any]:
            return performance_report(
                rows, label_column=self.label_column, threshold=self.threshold, task=self.task
            )

        overall = judged(joined)
        versions = (
            {str(v): judged(rows) for v, rows in joined.groupby("version")} if "version" in joined else {}
        )
        reasons = performance_breaches(
            overall,
            min_auc=self.min_auc,
            max_calibration_error=self.max_calibration_error,
            bounds=self.bounds,
        )
        report = {
            "endpoint": self.endpoint,
            "window": span,
            "labels": self.labels,
            "overall": overall,
            "versions": versions,
            "labelled": overall["labelled"],
            "unlabeled_predictions": overall["unlabeled_predictions"],
            "unmatched_labels": overall["unmatched_labels"],
            "breached": bool(reasons),
            "reasons": reasons,
            "task": self.task,
        }
        if self.task == "binary":
            report["calibration"] = calibration_curve(
                joined[self.label_column].to_numpy(dtype="float64"),
                joined["probability"].to_numpy(dtype="float64"),
            )
        written = self.write(
            context, report, render_performance_html(report, f"Performance of {self.endpoint}"), "performance"
        )
        report_uri, html_uri = map(uri_of, written)
        primary = primary_metric(self.task)
        metrics = {k: overall[k] for k in (*metric_names(self.task), "labelled")}
        metrics.update({f"{primary}_v{v}": m[primary] for v, m in versions.items()})
        run_id = self.log_to_mlflow(
            f"performance {span['start']}..{span['end']}",
            metrics,
            {"labels": self.labels, **span},
            written,
        )
        self.log.info(
            "%s: %s %.4f on %d labelled predictions (%d without a label yet)%s",
            self.endpoint,
            primary,
            overall[primary],
            overall["labelled"],
            overall["unlabeled_predictions"],
            "; " + "; ".join(reasons) if reasons else "",
        )
        return cast(
            PerformanceResult,
            dict(
                finite(
                    {
                        "report_uri": report_uri,
                        "report_html_uri": html_uri,
                        "overall": overall,
                        "versions": versions,
                        "labelled": overall["labelled"],
                        "breached": bool(reasons),
                        "reasons": reasons,
                        "window": span,
                        "mlflow_run_id": run_id,
                    }
                )
            ),
        )


class ModelDriftAlertOperator(AlertingMixin, BaseOperator):
    """Emit the ``model_drift`` Asset event when a monitor breached its threshold; skip otherwise.

    Reads the XCom of the monitor tasks ``monitor_task_ids`` (a monitor that was skipped, for
    want of predictions or labels, counts as not breached). Airflow emits a task's outlet events
    whenever it succeeds, so this task is skipped when nothing was breached, and no event is
    emitted; give it ``outlets=[Asset("model_drift")]`` and ``trigger_rule="none_failed"``.

    Event ``extra``: ``{"endpoint", "window", "features": {feature: score}, "score",
    "prediction_psi", "auc", "reasons", "reports": [report URIs], "version"}``; a training DAG
    scheduled on the Asset sees it as its triggering event. XCom: the same dict.

    A breach is also an alert (``airflow_mlops.alerts``, kind ``drift``) with the reasons and
    links to the monitors' reports, through ``notifiers`` (default: ``[mlops] alert_email_to`` /
    ``alert_slack_conn_id``).
    """

    ui_color = "#f28b82"

    def __init__(self, *, endpoint: str, monitor_task_ids: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not monitor_task_ids:
            raise MLOpsConfigError(
                f"{self.task_id}: monitor_task_ids is empty (rule: name at least one monitor task)"
            )
        self.endpoint, self.monitor_task_ids = endpoint, list(monitor_task_ids)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        results = {t: context["ti"].xcom_pull(task_ids=t) for t in self.monitor_task_ids}
        breached = {t: r for t, r in results.items() if r and r.get("breached")}
        if not breached:
            ran = [t for t, r in results.items() if r]
            raise AirflowSkipException(
                f"{self.endpoint}: no monitor breached its threshold (ran: {ran or 'none'}); "
                "no model_drift event"
            )
        extra: dict[str, Any] = {"endpoint": self.endpoint, "reasons": [], "reports": [], "features": {}}
        for result in breached.values():
            extra["reasons"] += result.get("reasons", [])
            extra["reports"].append(result.get("report_uri"))
            extra["features"].update(result.get("features") or {})
            for key in ("window", "version", "score", "prediction_psi"):
                if result.get(key) is not None:
                    extra.setdefault(key, result[key])
            if result.get("overall"):
                extra["auc"] = result["overall"].get("auc")
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        self.log.warning("%s: %s", self.endpoint, "; ".join(extra["reasons"]))
        self.alert(
            context,
            "drift",
            f"{self.endpoint}: model drift",
            extra["reasons"],
            report_links(**{f"report_{i + 1}": uri for i, uri in enumerate(extra["reports"])}),
        )
        return extra


def read_request_log(uri: str, conn_id: str | None, since: Any, until: Any, kind: str = "predictions") -> Any:
    """The records of ``kind`` in the request log at ``uri`` (a folder, or an object store URI read
    through ``conn_id``) between ``since`` and ``until`` (``serving.requestlog.read_log``)."""
    from airflow_mlops.serving.requestlog import read_log
    from airflow_mlops.storage import object_path

    log = object_path(uri, conn_id)
    if isinstance(log, Path):
        return read_log(log, kind, since=since, until=until)
    return read_log(log.path, kind, since=since, until=until, fs=log.fs)


def read_labels(path: Any) -> Any:
    """The labels: one Parquet file, or a folder of them (read in name order), local or in an
    object store (each object streamed)."""
    import pandas as pd

    from airflow_mlops.storage import uri_of
    from airflow_mlops.training.spec import read_parquet

    if isinstance(path, Path) or not path.is_dir():  # pandas reads a local folder itself
        return read_parquet(path)
    files = sorted((p for p in path.rglob("*.parquet") if p.is_file()), key=str)
    if not files:
        raise MLOpsConfigError(f"labels {uri_of(path)!r} is a folder without Parquet files")
    return pd.concat([read_parquet(p) for p in files], ignore_index=True)


def write_dataset_labels(manifest_uri: str, columns: Sequence[str], folder: str, conn_id: str | None) -> str:
    """``columns`` (the key and the label) of every split of a dataset version, written once as
    ``<folder>/<version>.parquet`` (local or in an object store through ``conn_id``): the labels a
    ``PerformanceMonitorOperator`` joins the request log with. Returns the file's URI; a version
    already written is reused (a version never changes)."""
    import hashlib

    import pandas as pd

    from airflow_mlops.artifacts import write_atomically
    from airflow_mlops.storage import object_path, split_path, uri_of
    from airflow_mlops.training.spec import read_parquet

    manifest = json.loads(object_path(manifest_uri, conn_id).read_text())
    version = manifest.get("version") or hashlib.sha256(manifest_uri.encode()).hexdigest()[:16]
    out = object_path(folder, conn_id) / f"{version}.parquet"
    if not out.exists():
        frames = [
            read_parquet(split_path(split["uri"], manifest_uri, conn_id), columns=list(columns))
            for split in manifest["splits"].values()
        ]
        write_atomically(out, pd.concat(frames, ignore_index=True).to_parquet(index=False))
    return uri_of(out)
