"""Declarative evaluation gates: absolute thresholds, margin over the champion, slice regressions.

A gate is a mapping (YAML in the reference DAG)::

    no_champion: absolute_only        # the first model: judge the absolute rules only (or pass / fail)
    rules:
      - {metric: auc, min: 0.65}
      - {metric: log_loss, max: 0.55}
      - {metric: auc, min_margin_over_champion: 0.0}
      - {slice_metric: auc, slices: [carrier, origin], max_drop: 0.05, min_rows: 200}
      - {fairness: tpr_gap, slices: [carrier], max: 0.15}

An online experiment's gate (``ExperimentAnalysisOperator(gate=...)``) has experiment rules only,
each bounding a figure of the challenger it judges (the winner, else the one most likely better;
see :mod:`airflow_mlops.evaluation.experiment`)::

    rules:
      - {experiment: probability_better, min: 0.95}
      - {experiment: difference_lower, min: 0.0}     # the interval's lower end
      - {experiment: sample_fraction, min: 1.0}      # the samples min_effect needs, reached

``metric`` and ``slice_metric`` are any metric of the model's task (binary: auc, log_loss,
accuracy, ...; multiclass: accuracy, macro_f1, log_loss; regression: rmse, mae, r2; see
:mod:`airflow_mlops.models.tasks`). A ``fairness`` rule bounds the largest gap between the slices
of each column (binary: ``tpr_gap``, ``fpr_gap``; multiclass: ``accuracy_gap``; regression:
``mae_gap``). ``min_rows`` is the minimum slice size: smaller slices (in either model's
evaluation) are not judged, they are too noisy. No Airflow import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from airflow_mlops.exceptions import GateError
from airflow_mlops.models.tasks import FAIRNESS_GAPS, LOWER_IS_BETTER
from airflow_mlops.models.tasks import METRICS as TASK_METRICS

#: Every metric a rule may name; a gate checked for a task accepts that task's only.
METRICS = {m for names in TASK_METRICS.values() for m in names}
GAPS = {g for names in FAIRNESS_GAPS.values() for g in names}
NO_CHAMPION = ("absolute_only", "pass", "fail")
_ABSOLUTE = {"metric", "min", "max"}
_MARGIN = {"metric", "min_margin_over_champion"}
_SLICE = {"slice_metric", "slices", "max_drop", "min_rows"}
_FAIRNESS = {"fairness", "slices", "max"}
_EXPERIMENT = {"experiment", "min", "max"}
#: What an experiment rule may bound (``evaluation.experiment.gate_view`` of an analysis).
EXPERIMENT_FIELDS = (
    "probability_better",
    "difference",
    "difference_lower",
    "difference_upper",
    "samples",
    "sample_fraction",
)


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    observed: float | None
    bound: float | None
    detail: str


def check_gate(gate: Mapping[str, Any], task: str | None = None, *, experiment: bool = False) -> None:
    """Refuse a gate whose rules are not understood (for ``task``: metrics of another task too),
    before any model is evaluated. ``experiment``: the gate of an online experiment, whose rules
    are all experiment rules (an offline evaluation's gate has none)."""
    if not isinstance(gate, Mapping):
        raise GateError(f"gate must be a mapping with 'rules', got {type(gate).__name__}: {gate!r}")
    if gate.get("no_champion", "absolute_only") not in NO_CHAMPION:
        raise GateError(
            f"gate: no_champion must be one of {list(NO_CHAMPION)}, got {gate.get('no_champion')!r}"
        )
    rules = gate.get("rules")
    if not isinstance(rules, list) or not rules:
        raise GateError(f"gate: 'rules' must be a non-empty list, got {rules!r}")
    metrics = set(TASK_METRICS[task]) if task in TASK_METRICS else METRICS
    gaps = set(FAIRNESS_GAPS[task]) if task in FAIRNESS_GAPS else GAPS
    for i, rule in enumerate(rules):
        if (isinstance(rule, Mapping) and "experiment" in rule) or experiment:
            _check_experiment_rule(i, rule, experiment)
        else:
            _check_rule(i, rule, metrics, gaps, task)


def _check_experiment_rule(i: int, rule: Any, experiment: bool) -> None:
    if not experiment:
        raise GateError(
            f"gate rule {i} {rule!r}: an experiment rule judges an online experiment, not an offline "
            "evaluation (rule: give it to ExperimentAnalysisOperator(gate=...))"
        )
    keys = set(rule) if isinstance(rule, Mapping) else set()
    if "experiment" not in keys or not keys <= _EXPERIMENT or not keys & {"min", "max"}:
        raise GateError(
            f"gate rule {i} {rule!r}: an online experiment's gate takes {{experiment, min|max}} rules only"
        )
    if rule["experiment"] not in EXPERIMENT_FIELDS:
        raise GateError(
            f"gate rule {i} {rule!r}: experiment must be one of {list(EXPERIMENT_FIELDS)}, got {rule['experiment']!r}"
        )
    for key in keys & {"min", "max"}:
        if not isinstance(rule[key], int | float) or isinstance(rule[key], bool):
            raise GateError(f"gate rule {i}: {key} must be a number, got {rule[key]!r}")


def _check_rule(i: int, rule: Any, metrics: set[str], gaps: set[str], task: str | None) -> None:
    keys = set(rule) if isinstance(rule, Mapping) else set()
    for_task = f" for a {task} model" if task else ""
    if "fairness" in keys:
        if rule["fairness"] not in gaps:
            raise GateError(
                f"gate rule {i} {rule!r}: fairness must be one of {sorted(gaps)}{for_task}, got {rule['fairness']!r}"
            )
        if keys != _FAIRNESS or not isinstance(rule.get("slices"), list):
            raise GateError(f"gate rule {i} {rule!r}: a fairness rule is {{fairness, slices (a list), max}}")
    else:
        metric = rule.get("metric", rule.get("slice_metric")) if isinstance(rule, Mapping) else None
        if metric not in metrics:
            raise GateError(
                f"gate rule {i} {rule!r}: metric must be one of {sorted(metrics)}{for_task}, got {metric!r}"
            )
        shapes = [_ABSOLUTE, _MARGIN, _SLICE]
        if not any(keys <= shape and keys - {"metric", "slice_metric"} for shape in shapes):
            raise GateError(
                f"gate rule {i} {rule!r}: not one of {{metric, min|max}}, {{metric, "
                "min_margin_over_champion}, {slice_metric, slices, max_drop, min_rows}, {fairness, slices, max}"
            )
    for key in keys - {"metric", "slice_metric", "slices", "fairness"}:
        if not isinstance(rule[key], int | float) or isinstance(rule[key], bool):
            raise GateError(f"gate rule {i}: {key} must be a number, got {rule[key]!r}")
    if "slice_metric" in keys and ("max_drop" not in keys or not isinstance(rule.get("slices"), list)):
        raise GateError(f"gate rule {i} {rule!r}: a slice rule needs 'slices' (a list) and 'max_drop'")


def evaluate_gate(
    gate: Mapping[str, Any], challenger: Mapping[str, Any], champion: Mapping[str, Any] | None
) -> tuple[bool, list[RuleResult]]:
    """Judge a challenger's evaluation (``{"overall": metrics, "slices": {...}}``) against the rules.

    An online experiment's gate judges ``{"experiment": gate_view(analysis)}`` (see
    :func:`airflow_mlops.evaluation.experiment.gate_view`) with no champion.

    Returns the decision and one result per judged rule (each slice of a slice rule is its own result).
    """
    experiment = "experiment" in challenger
    check_gate(gate, experiment=experiment)
    results: list[RuleResult] = []
    policy = gate.get("no_champion", "absolute_only")
    if experiment:
        return _experiment(gate["rules"], challenger["experiment"])
    if champion is None and policy != "absolute_only":
        results.append(
            RuleResult(
                "no_champion",
                policy == "pass",
                None,
                None,
                f"no champion yet: the gate's no_champion policy is {policy!r}",
            )
        )
    for rule in gate["rules"]:
        if "fairness" in rule:
            results.extend(_fairness(rule, challenger.get("fairness", {})))
        elif "min" in rule or "max" in rule:
            results.extend(_absolute(rule, challenger["overall"]))
        elif champion is None:
            continue  # relative rules need a champion
        elif "min_margin_over_champion" in rule:
            results.append(_margin(rule, challenger["overall"], champion["overall"]))
        else:
            results.extend(_slices(rule, challenger.get("slices", {}), champion.get("slices", {})))
    return all(r.passed for r in results), results


def _absolute(rule: Mapping[str, Any], overall: Mapping[str, float]) -> list[RuleResult]:
    metric, value = rule["metric"], overall[rule["metric"]]
    out = []
    for bound_key, ok in (("min", lambda v, b: v >= b), ("max", lambda v, b: v <= b)):
        if bound_key in rule:
            passed = not math.isnan(value) and ok(value, rule[bound_key])
            sign = ">=" if bound_key == "min" else "<="
            out.append(
                RuleResult(
                    f"{metric} {sign} {rule[bound_key]}",
                    passed,
                    value,
                    rule[bound_key],
                    f"{metric} = {value:.4f}, must be {sign} {rule[bound_key]}",
                )
            )
    return out


def _margin(
    rule: Mapping[str, Any], challenger: Mapping[str, float], champion: Mapping[str, float]
) -> RuleResult:
    metric, margin = rule["metric"], rule["min_margin_over_champion"]
    gain = challenger[metric] - champion[metric]
    if metric in LOWER_IS_BETTER:
        gain = -gain
    passed = not math.isnan(gain) and gain >= margin
    return RuleResult(
        f"{metric} margin over champion >= {margin}",
        passed,
        gain,
        margin,
        f"{metric}: challenger {challenger[metric]:.4f}, champion {champion[metric]:.4f}, "
        f"improvement {gain:+.4f}, must be >= {margin}",
    )


def _slices(
    rule: Mapping[str, Any], challenger: Mapping[str, Any], champion: Mapping[str, Any]
) -> list[RuleResult]:
    metric, bound, min_rows = rule["slice_metric"], rule["max_drop"], rule.get("min_rows", 1)
    out = []
    for column in rule["slices"]:
        if column not in challenger or column not in champion:
            out.append(
                RuleResult(
                    f"{metric} per {column}",
                    False,
                    None,
                    bound,
                    f"slice column {column!r} is missing from the evaluation",
                )
            )
            continue
        for value, mine in sorted(challenger[column].items()):
            theirs = champion[column].get(value)
            if theirs is None or min(mine["rows"], theirs["rows"]) < min_rows:
                continue
            drop = theirs[metric] - mine[metric]
            if metric in LOWER_IS_BETTER:
                drop = -drop
            if math.isnan(drop):
                continue
            out.append(
                RuleResult(
                    f"{metric} on {column}={value} drops <= {bound}",
                    drop <= bound,
                    drop,
                    bound,
                    f"{column}={value} ({int(mine['rows'])} rows): challenger {mine[metric]:.4f}, "
                    f"champion {theirs[metric]:.4f}, drop {drop:+.4f}, must be <= {bound}",
                )
            )
    return out


def _fairness(rule: Mapping[str, Any], fairness: Mapping[str, Any]) -> list[RuleResult]:
    gap, bound = rule["fairness"], rule["max"]
    out = []
    for column in rule["slices"]:
        value = fairness.get(column, {}).get(gap)
        name = f"{gap} across {column} <= {bound}"
        if value is None or math.isnan(value):
            reason = (
                "is missing from the evaluation"
                if column not in fairness
                else "is undefined (fewer than 2 slices)"
            )
            out.append(RuleResult(name, False, None, bound, f"{gap} of slice column {column!r} {reason}"))
            continue
        judged = fairness[column]
        between = " / ".join(judged.get(gap.replace("_gap", "_slices"), []))
        out.append(
            RuleResult(
                name,
                value <= bound,
                value,
                bound,
                f"{gap} across {column} = {value:.4f} ({between}), must be <= {bound}",
            )
        )
    return out


def _experiment(rules: list[Mapping[str, Any]], view: Mapping[str, Any]) -> tuple[bool, list[RuleResult]]:
    out = []
    for rule in rules:
        field, value = rule["experiment"], view.get(rule["experiment"])
        for bound_key, sign in (("min", ">="), ("max", "<=")):
            if bound_key not in rule:
                continue
            bound = rule[bound_key]
            if value is None or math.isnan(value):
                passed, detail = (
                    False,
                    f"{field} is unknown for {view.get('challenger')!r} ({view.get('why_unknown', 'not computed')})",
                )
            else:
                passed = value >= bound if bound_key == "min" else value <= bound
                detail = f"{field} of {view.get('challenger')!r} vs {view.get('control')!r} = {value:.4f}, must be {sign} {bound}"
            out.append(RuleResult(f"{field} {sign} {bound}", passed, value, bound, detail))
    return all(r.passed for r in out), out


def as_records(results: list[RuleResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
