"""Analyse an online experiment (an A/B test, a bandit, a canary) from the model server's request log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow_mlops.alerts import AlertingMixin
from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.operators.monitor import _RequestLogMonitor
from airflow_mlops.xcom import ExperimentResult

if TYPE_CHECKING:
    from airflow.sdk import Context


class ExperimentAnalysisOperator(AlertingMixin, _RequestLogMonitor):
    """Per-variant results of an endpoint's experiment over a window, with their uncertainty.

    The outcome of each prediction the callers got (shadow copies are not part of an experiment)
    is either the **feedback** posted to ``/v1/feedback`` (``reward``, joined by prediction id; the
    default) or a **label** from ``labels`` (a Parquet file or folder, joined as
    ``PerformanceMonitorOperator`` joins it). Predictions without an outcome yet are counted, not
    used. For each variant: the metric with an interval; for each challenger against ``control``:
    the difference with its interval, the probability that the challenger is better, and with
    ``min_effect`` the predictions per variant that effect needs (see
    :mod:`airflow_mlops.evaluation.experiment`: Beta posteriors for 0/1 rewards, the bootstrap
    otherwise). A winner is declared only at ``confidence`` and, with ``min_effect``, once both
    variants have the required samples.

    :param endpoint: the model server endpoint; ``request_log``: its request log (a folder or
        ``s3://...`` with ``storage_conn_id``); ``start``/``end``: the window (templated, ISO
        times with a zone; default the run's data interval).
    :param control: the variant the others are compared with (e.g. ``"a"`` of an A/B test, the
        canary's ``"primary"``, the bandit arm serving the champion).
    :param variants: the experiment's variants (with ``control``); predictions of any other variant
        in the window (the deployment the experiment replaced, still answering while the new one
        loaded) are left out and counted in the report's ``other_variants``. Empty: every variant.
    :param report_dir: where ``experiment.json`` and ``experiment.html`` go (templated; the
        Deployments page shows the newest under ``<lake>/experiments/<endpoint>/``).
    :param labels: judge on labels instead of feedback (templated); ``label_key``,
        ``label_column``, ``task`` and ``threshold`` as for ``PerformanceMonitorOperator``.
    :param metric: ``"reward"`` (the mean feedback reward) with feedback; any metric of ``task``
        with labels (default the task's primary metric: AUC, macro F1, RMSE).
    :param method: ``auto`` (Bayesian for 0/1 rewards, else bootstrap), ``bayesian`` or ``bootstrap``.
    :param confidence: the probability of being better a verdict needs, and the intervals' level.
    :param min_effect: the smallest difference worth detecting, in the metric's units (e.g. 0.01
        for a click rate); sets the required samples. ``power``: the chance to detect it.
    :param draws: posterior draws or bootstrap resamples; ``seed``: for a repeatable analysis.
    :param gate: experiment rules (``{"rules": [{"experiment": "probability_better", "min":
        0.95}, ...]}``, see :mod:`airflow_mlops.evaluation.gate`) on the best challenger: when one
        fails, the task is skipped after the report is written, so a promotion downstream does not
        run, and an alert (kind ``gate_failed``) goes to ``notifiers`` (default: ``[mlops]``'s).

    Logs to the MLflow experiment ``<endpoint>-experiments``: ``<metric>_<variant>``,
    ``samples_<variant>``, ``p_better_<challenger>`` and ``difference_<challenger>``, with both
    files. Skipped when the window holds no prediction, none has an outcome yet, or only one
    variant has outcomes (no experiment ran: a scheduled analysis of an endpoint between tests).

    XCom: ``{"report_uri", "report_html_uri", "metric", "method", "control", "variants",
    "comparisons", "winner", "decision", "outcomes", "without_outcome", "gate", "window",
    "mlflow_run_id"}``.
    """

    template_fields: Sequence[str] = ("request_log", "report_dir", "start", "end", "labels")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        endpoint: str,
        request_log: str,
        report_dir: str,
        control: str,
        variants: Sequence[str] = (),
        labels: str = "",
        label_key: str = "prediction_id",
        label_column: str = "label",
        task: str = "binary",
        threshold: float = 0.5,
        metric: str = "",
        method: str = "auto",
        confidence: float = 0.95,
        min_effect: float | None = None,
        power: float = 0.8,
        draws: int = 4000,
        seed: int = 0,
        gate: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from airflow_mlops.evaluation.experiment import REWARD, check_settings, task_metric
        from airflow_mlops.evaluation.gate import check_gate
        from airflow_mlops.models.tasks import check_task, primary_metric

        kwargs.setdefault("mlflow_experiment", f"{endpoint}-experiments")
        super().__init__(endpoint=endpoint, request_log=request_log, report_dir=report_dir, **kwargs)
        if not control:
            raise MLOpsConfigError(
                f"{self.task_id}: control must name the variant the others are compared with"
            )
        if variants and control not in variants:
            raise MLOpsConfigError(
                f"{self.task_id}: control {control!r} is not one of variants {list(variants)} "
                "(rule: the control is a variant of the experiment)"
            )
        self.variants = list(variants)
        self.task = check_task(task, f"{self.task_id}: task")
        self.metric = metric or (primary_metric(task) if labels else REWARD)
        if labels and self.metric != REWARD:
            task_metric(self.task, self.metric)  # refuses a metric of another task, now
        elif labels or self.metric != REWARD:
            raise MLOpsConfigError(
                f"{self.task_id}: metric {self.metric!r} with {'labels' if labels else 'feedback'}: the metric "
                f"of feedback is {REWARD!r}, and labels are judged on a metric of the task (rule: "
                f"metric='reward' without labels, a {task} metric with labels)"
            )
        check_settings(
            method=method,
            confidence=confidence,
            power=power,
            min_effect=min_effect,
            draws=draws,
            what=self.task_id,
        )
        if gate is not None:
            check_gate(gate, experiment=True)
        self.control, self.labels, self.label_key, self.label_column = (
            control,
            labels,
            label_key,
            label_column,
        )
        self.threshold, self.method, self.confidence = threshold, method, confidence
        self.min_effect, self.power, self.draws, self.seed = min_effect, power, draws, seed
        self.gate = dict(gate) if gate is not None else None

    def execute(self, context: Context) -> ExperimentResult:
        from airflow.sdk.exceptions import AirflowSkipException

        from airflow_mlops.evaluation.experiment import analyze, gate_view, mean_reward, task_metric
        from airflow_mlops.evaluation.gate import as_records, evaluate_gate
        from airflow_mlops.evaluation.report import finite
        from airflow_mlops.models.tasks import lower_is_better
        from airflow_mlops.monitoring.report import render_experiment_html
        from airflow_mlops.storage import uri_of

        served, span = self.served(context, answered_only=True)
        other_variants: dict[str, int] = {}
        if self.variants:
            ours = served["variant"].isin(self.variants)
            other_variants = {str(k): int(v) for k, v in served.loc[~ours, "variant"].value_counts().items()}
            served = served[ours].reset_index(drop=True)
            if other_variants:
                self.log.info(
                    "left out: predictions of variants outside %s: %s", self.variants, other_variants
                )
            if len(served) == 0:
                raise AirflowSkipException(
                    f"no prediction of variants {self.variants} of {self.endpoint!r} in the window "
                    f"(only {other_variants}): nothing to analyse"
                )
        outcomes, source = self._outcomes(served, span)
        if len(outcomes) == 0:
            raise AirflowSkipException(
                f"none of the {len(served)} predictions of {self.endpoint!r} in the window has "
                f"an outcome in {source} yet: nothing to analyse"
            )
        samples = self._samples(outcomes)
        if len(samples) < 2:
            raise AirflowSkipException(
                f"only variant(s) {sorted(samples)} of {self.endpoint!r} have outcomes in the window: "
                "no experiment to analyse (an endpoint serving one variant)"
            )
        labelled = bool(self.labels)
        analysis = analyze(
            samples,
            control=self.control,
            metric=self.metric,
            compute=task_metric(self.task, self.metric, self.threshold) if labelled else mean_reward,
            lower_is_better=lower_is_better(self.metric),
            method=self.method,
            confidence=self.confidence,
            min_effect=self.min_effect,
            power=self.power,
            draws=self.draws,
            seed=self.seed,
        )
        versions = {
            str(v): sorted(map(str, rows["version"].unique())) for v, rows in outcomes.groupby("variant")
        }
        gate: dict[str, Any] | None = None
        if self.gate is not None:
            passed, results = evaluate_gate(self.gate, {"experiment": gate_view(analysis)}, None)
            gate = {"passed": passed, "rules": as_records(results), "definition": self.gate}
        report = {
            "endpoint": self.endpoint,
            "window": span,
            "outcome": "labels" if labelled else "feedback",
            "source": source,
            "task": self.task if labelled else None,
            **analysis,
            "versions": versions,
            "outcomes": len(outcomes),
            "without_outcome": len(served) - len(outcomes),
            "other_variants": other_variants,
            "gate": gate,
        }
        written = self.write(
            context, report, render_experiment_html(report, f"Experiment on {self.endpoint}"), "experiment"
        )
        report_uri, html_uri = map(uri_of, written)
        metrics: dict[str, float] = {"outcomes": float(len(outcomes))}
        for variant, estimate in analysis["variants"].items():
            metrics[f"{self.metric}_{variant}"] = estimate["value"]
            metrics[f"samples_{variant}"] = float(estimate["samples"])
        for challenger, comparison in analysis["comparisons"].items():
            metrics[f"p_better_{challenger}"] = comparison["probability_better"]
            metrics[f"difference_{challenger}"] = comparison["difference"]
        run_id = self.log_to_mlflow(
            f"experiment {span['start']}..{span['end']}",
            metrics,
            {"control": self.control, "metric": self.metric, "method": analysis["method"], **span},
            written,
        )
        self.log.info("%s: %s", self.endpoint, analysis["decision"])
        if gate is not None and not gate["passed"]:
            from airflow_mlops.alerts import report_links

            failed = [r for r in gate["rules"] if not r["passed"]]
            self.alert(
                context,
                "gate_failed",
                f"experiment gate failed on {self.endpoint}: {analysis['decision']}",
                [f"{r['rule']}: {r['detail']}" for r in failed],
                report_links(experiment=report_uri),
            )
            raise AirflowSkipException(
                f"experiment gate failed {len(failed)} of {len(gate['rules'])} rules: "
                + "; ".join(f"{r['rule']} ({r['detail']})" for r in failed)
            )
        keep = ("metric", "method", "control", "variants", "comparisons", "winner", "decision")
        return cast(
            ExperimentResult,
            dict(
                finite(
                    {
                        "report_uri": report_uri,
                        "report_html_uri": html_uri,
                        **{k: analysis[k] for k in keep},
                        "outcomes": len(outcomes),
                        "without_outcome": len(served) - len(outcomes),
                        "gate": gate,
                        "window": span,
                        "mlflow_run_id": run_id,
                    }
                )
            ),
        )

    def _outcomes(self, served: Any, span: Mapping[str, str]) -> tuple[Any, str]:
        """The served predictions that have an outcome, with it in ``outcome`` (feedback) or
        ``label_column`` (labels); and where the outcomes came from."""
        from airflow_mlops.monitoring.monitors import MonitoringError

        if self.labels:
            joined = self.labelled(served, self.labels, self.label_key, self.label_column, self.task)
            return joined, self.labels
        import pandas as pd

        feedback = self.read_requests(pd.Timestamp(span["start"]), None, kind="feedback")
        feedback = feedback[feedback["endpoint"] == self.endpoint] if len(feedback) else feedback
        twice = feedback["prediction_id"][feedback["prediction_id"].duplicated()].unique().tolist()
        if twice:
            raise MonitoringError(
                f"{self.task_id} ({self.endpoint!r}): predictions {twice[:5]} have more than one feedback "
                f"({len(twice)} in all; rule: one reward per prediction)"
            )
        rewards = feedback[["prediction_id", "reward"]].rename(columns={"reward": "outcome"})
        return served.merge(rewards, on="prediction_id", how="inner"), f"the feedback of {self.request_log}"

    def _samples(self, outcomes: Any) -> dict[str, Any]:
        """One ``Sample`` per variant: rewards, or labels with the served predictions."""
        from airflow_mlops.evaluation.experiment import Sample
        from airflow_mlops.monitoring.monitors import class_probabilities

        samples = {}
        for variant, rows in outcomes.groupby("variant"):
            if not self.labels:
                samples[str(variant)] = Sample(rows["outcome"].to_numpy(dtype="float64"))
            elif self.task == "multiclass":
                samples[str(variant)] = Sample(*class_probabilities(rows, self.label_column))
            else:
                samples[str(variant)] = Sample(
                    rows[self.label_column].to_numpy(dtype="float64"),
                    rows["probability"].to_numpy(dtype="float64"),
                )
        return samples


def predictions_per_variant(
    request_log: str,
    endpoint: str,
    since: str,
    until: str | None = None,
    storage_conn_id: str | None = None,
) -> dict[str, int]:
    """Predictions the callers got from each variant of ``endpoint`` in ``[since, until)`` (ISO
    times with a zone; ``until`` default now), by the request log at ``request_log`` (a folder, or
    ``s3://...`` through ``storage_conn_id``); shadow copies are not counted.

    What a sensor waits on before an experiment's one analysis: the sample size is fixed in
    advance (by the smallest effect worth detecting), not by peeking until a winner shows."""
    from datetime import UTC, datetime

    import pandas as pd

    from airflow_mlops.monitoring.monitors import window
    from airflow_mlops.operators.monitor import read_request_log

    start = pd.Timestamp(since)
    end = pd.Timestamp(until) if until else pd.Timestamp(datetime.now(UTC))
    logged = window(
        read_request_log(request_log, storage_conn_id, start, end), endpoint=endpoint, start=start, end=end
    )
    answered = logged[logged["role"] != "shadow"] if len(logged) else logged
    return {str(k): int(v) for k, v in answered.groupby("variant").size().items()} if len(answered) else {}
