"""Online experiment analysis: what an A/B test or a bandit's window says, with its uncertainty.

For each variant of an endpoint, an estimate of the metric with an interval; for each challenger,
the difference from the control with its interval, the probability that the challenger is better,
and the number of samples per variant a chosen minimum effect needs before a verdict is trusted.
No Airflow import.

Two methods, the same report:

- ``bayesian`` (a mean of 0/1 outcomes: rewards that are clicks or conversions, per-prediction
  correctness): each variant's rate has the Beta(1 + successes, 1 + failures) posterior; intervals
  are its quantiles and the probability of being better is estimated from ``draws`` joint samples.
- ``bootstrap`` (any other metric: a mean reward in [0, 1], AUC, RMSE, ...): each variant's
  predictions are resampled ``draws`` times and the metric recomputed; intervals are percentiles
  and the probability of being better is the fraction of paired resamples where the challenger is.

``auto`` takes ``bayesian`` where it applies. A verdict needs both: the probability of being better
(or worse) at least ``confidence``, and, when ``min_effect`` is given, at least the required
samples in each of the two variants (a test stopped at the first lucky peek declares winners that
are not: the sample size is fixed in advance by the effect worth detecting).

The required samples per variant are the normal approximation's
``(z(1 - alpha/2) + z(power))^2 * (sd_control^2 + sd_challenger^2) / min_effect^2``, with each
variant's per-prediction standard deviation taken from its estimate's standard error
(``se * sqrt(n)``): for a rate it is the textbook two-proportion formula.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from airflow_mlops.exceptions import ExperimentError

METHODS = ("auto", "bayesian", "bootstrap")
#: The metric of feedback: the mean reward per prediction.
REWARD = "reward"
VERDICTS = ("challenger", "control", "inconclusive")

Metric = Callable[[np.ndarray, "np.ndarray | None"], float]


@dataclass(frozen=True)
class Sample:
    """One variant's outcomes: ``values`` (per prediction: a reward, or the label) and, for a task
    metric, the ``predictions`` the labels are compared with (rows aligned with ``values``)."""

    values: np.ndarray
    predictions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def take(self, rows: np.ndarray) -> Sample:
        return Sample(self.values[rows], None if self.predictions is None else self.predictions[rows])


@dataclass(frozen=True)
class Estimate:
    """A variant's metric: the point estimate, its interval at the analysis' confidence, the
    standard error and the number of predictions it rests on."""

    samples: int
    value: float
    lower: float
    upper: float
    std_error: float


@dataclass(frozen=True)
class Comparison:
    """A challenger against the control: ``difference`` is challenger minus control in the
    metric's units (for a lower-is-better metric a negative difference is an improvement)."""

    challenger: str
    control: str
    difference: float
    lower: float
    upper: float
    probability_better: float
    required_samples: int | None
    enough_samples: bool | None
    verdict: str
    reason: str


def check_settings(
    *, method: str, confidence: float, power: float, min_effect: float | None, draws: int, what: str
) -> None:
    """Refuse settings no analysis can honour, naming ``what`` (the task or caller), the rule and the value."""
    if method not in METHODS:
        raise ExperimentError(f"{what}: method must be one of {list(METHODS)}, got {method!r}")
    for name, value in (("confidence", confidence), ("power", power)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.5 <= value < 1:
            raise ExperimentError(f"{what}: {name} must lie in [0.5, 1), got {value!r}")
    if min_effect is not None and (
        isinstance(min_effect, bool)
        or not isinstance(min_effect, int | float)
        or not math.isfinite(min_effect)
        or min_effect <= 0
    ):
        raise ExperimentError(
            f"{what}: min_effect must be a positive number (the smallest difference worth detecting, "
            f"in the metric's units), got {min_effect!r}"
        )
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 200:
        raise ExperimentError(f"{what}: draws must be a whole number of at least 200, got {draws!r}")


def mean_reward(values: np.ndarray, predictions: np.ndarray | None = None) -> float:
    """The metric of feedback: the mean of the outcomes."""
    return float(np.mean(values))


def task_metric(task: str, metric: str, threshold: float = 0.5) -> Metric:
    """One metric of a task (``auc``, ``rmse``, ...) as a function of labels and predictions."""
    from airflow_mlops.evaluation.metrics import task_metrics
    from airflow_mlops.models.tasks import metric_names

    if metric not in metric_names(task):
        raise ExperimentError(
            f"metric must be one of {list(metric_names(task))} for a {task} model, got {metric!r}"
        )

    def computed(values: np.ndarray, predictions: np.ndarray | None) -> float:
        return float(task_metrics(task, values, predictions, threshold=threshold)[metric])

    return computed


def analyze(
    samples: Mapping[str, Sample],
    *,
    control: str,
    metric: str = REWARD,
    compute: Metric = mean_reward,
    lower_is_better: bool = False,
    method: str = "auto",
    confidence: float = 0.95,
    min_effect: float | None = None,
    power: float = 0.8,
    draws: int = 4000,
    seed: int = 0,
) -> dict[str, Any]:
    """The analysis of an experiment's variants (``samples``: variant -> its outcomes).

    ``compute`` turns one variant's outcomes into the metric (the mean reward by default, or a
    :func:`task_metric`). Returns ``{"metric", "method", "confidence", "control", "min_effect",
    "power", "variants": {variant: Estimate}, "comparisons": {challenger: Comparison}, "winner",
    "decision"}`` as plain data (JSON-ready). ``winner`` is the challenger with a ``challenger``
    verdict and the highest probability of being better, the control when every challenger's
    verdict is ``control``, else ``None``.
    """
    check_settings(
        method=method,
        confidence=confidence,
        power=power,
        min_effect=min_effect,
        draws=draws,
        what="experiment",
    )
    if control not in samples:
        raise ExperimentError(
            f"experiment: control {control!r} has no outcomes in the window (variants with outcomes: "
            f"{sorted(samples)}; rule: the control is one of the endpoint's variants)"
        )
    if len(samples) < 2:
        raise ExperimentError(
            f"experiment: only {sorted(samples)} have outcomes in the window (rule: the control and at "
            "least one challenger)"
        )
    small = {v: len(s) for v, s in samples.items() if len(s) < 2}
    if small:
        raise ExperimentError(
            f"experiment: variants {small} have fewer than 2 outcomes (rule: at least 2 per variant)"
        )
    binary = metric == REWARD and all(np.isin(s.values, (0.0, 1.0)).all() for s in samples.values())
    if method == "bayesian" and not binary:
        raise ExperimentError(
            f"experiment: method 'bayesian' is for a mean of 0/1 outcomes; the {metric!r} of these "
            "variants is not (rule: use 'bootstrap' or 'auto')"
        )
    used = "bayesian" if method == "auto" and binary else ("bootstrap" if method == "auto" else method)
    rng = np.random.default_rng(seed)
    draw = _beta_draws if used == "bayesian" else _bootstrap_draws
    drawn = {v: draw(s, compute, draws, rng, metric) for v, s in samples.items()}
    tail = (1 - confidence) / 2
    variants = {
        v: Estimate(
            samples=len(samples[v]),
            value=float(compute(samples[v].values, samples[v].predictions)),
            lower=float(np.quantile(d, tail)),
            upper=float(np.quantile(d, 1 - tail)),
            std_error=float(np.std(d, ddof=1)),
        )
        for v, d in drawn.items()
    }
    comparisons = {
        v: _compare(
            v,
            control,
            variants,
            drawn,
            lower_is_better=lower_is_better,
            confidence=confidence,
            min_effect=min_effect,
            power=power,
        )
        for v in samples
        if v != control
    }
    winner, decision = _decide(comparisons, control)
    return {
        "metric": metric,
        "lower_is_better": lower_is_better,
        "method": used,
        "confidence": confidence,
        "control": control,
        "min_effect": min_effect,
        "power": power,
        "draws": draws,
        "variants": {v: asdict(e) for v, e in variants.items()},
        "comparisons": {v: asdict(c) for v, c in comparisons.items()},
        "winner": winner,
        "decision": decision,
    }


def required_samples(
    se_control: float,
    n_control: int,
    se_challenger: float,
    n_challenger: int,
    *,
    min_effect: float,
    confidence: float,
    power: float,
) -> int:
    """Predictions per variant needed to detect ``min_effect`` at the two-sided level ``1 -
    confidence`` with ``power``, from the two estimates' standard errors at their sample sizes."""
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2) + NormalDist().inv_cdf(power)
    variance = se_control**2 * n_control + se_challenger**2 * n_challenger
    return max(2, math.ceil(z * z * variance / (min_effect * min_effect)))


def best_comparison(analysis: Mapping[str, Any]) -> dict[str, Any] | None:
    """The challenger a gate judges: the winner when a challenger won, else the one most likely better."""
    comparisons = analysis.get("comparisons") or {}
    if not comparisons:
        return None
    if analysis.get("winner") in comparisons:
        return dict(comparisons[analysis["winner"]])
    return dict(max(comparisons.values(), key=lambda c: c["probability_better"]))


def gate_view(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """The figures an experiment gate's rules bound (``evaluation.gate.EXPERIMENT_FIELDS``), of
    the challenger :func:`best_comparison` picks: ``sample_fraction`` is the smaller variant's
    samples over the required samples (unknown without ``min_effect``)."""
    best = best_comparison(analysis)
    if best is None:
        return {"why_unknown": "no challenger"}
    samples = min(
        analysis["variants"][best["control"]]["samples"], analysis["variants"][best["challenger"]]["samples"]
    )
    needed = best["required_samples"]
    return {
        "challenger": best["challenger"],
        "control": best["control"],
        "probability_better": best["probability_better"],
        "difference": best["difference"],
        "difference_lower": best["lower"],
        "difference_upper": best["upper"],
        "samples": samples,
        "sample_fraction": samples / needed if needed else None,
        "why_unknown": "sample_fraction needs min_effect" if not needed else "",
    }


def _beta_draws(
    sample: Sample, compute: Metric, draws: int, rng: np.random.Generator, metric: str
) -> np.ndarray:
    successes = float(np.sum(sample.values))
    return rng.beta(1 + successes, 1 + len(sample) - successes, size=draws)


def _bootstrap_draws(
    sample: Sample, compute: Metric, draws: int, rng: np.random.Generator, metric: str
) -> np.ndarray:
    n = len(sample)
    if compute is mean_reward:  # vectorised, in blocks of at most ~4M indices
        block = max(1, 4_000_000 // n)
        means = [
            sample.values[rng.integers(0, n, size=(min(block, draws - i), n))].mean(axis=1)
            for i in range(0, draws, block)
        ]
        return np.concatenate(means)
    values = np.array([_metric_of(sample.take(rng.integers(0, n, size=n)), compute) for _ in range(draws)])
    finite = values[np.isfinite(values)]
    if len(finite) < draws * 0.9:
        raise ExperimentError(
            f"experiment: {metric} is undefined in {draws - len(finite)} of {draws} resamples of a "
            f"variant with {n} outcomes (e.g. AUC of a resample holding one class; rule: enough "
            "outcomes of every kind per variant)"
        )
    return finite


def _metric_of(sample: Sample, compute: Metric) -> float:
    return compute(sample.values, sample.predictions)


def _compare(
    challenger: str,
    control: str,
    variants: Mapping[str, Estimate],
    drawn: Mapping[str, np.ndarray],
    *,
    lower_is_better: bool,
    confidence: float,
    min_effect: float | None,
    power: float,
) -> Comparison:
    n = min(len(drawn[challenger]), len(drawn[control]))
    differences = drawn[challenger][:n] - drawn[control][:n]
    better = -differences if lower_is_better else differences
    probability = float(np.mean(better > 0) + 0.5 * np.mean(better == 0))
    tail = (1 - confidence) / 2
    c, t = variants[control], variants[challenger]
    needed = (
        required_samples(
            c.std_error,
            c.samples,
            t.std_error,
            t.samples,
            min_effect=min_effect,
            confidence=confidence,
            power=power,
        )
        if min_effect is not None
        else None
    )
    enough = None if needed is None else min(c.samples, t.samples) >= needed
    if probability >= confidence:
        leader = "challenger"
    elif probability <= 1 - confidence:
        leader = "control"
    else:
        leader = ""
    if not leader:
        verdict = "inconclusive"
        reason = (
            f"P({challenger} better than {control}) = {probability:.3f}, within "
            f"({1 - confidence:.3f}, {confidence:.3f}): no variant is ahead with {confidence:.0%} confidence"
        )
    elif enough is False:
        verdict = "inconclusive"
        reason = (
            f"P({challenger} better than {control}) = {probability:.3f}, but {min(c.samples, t.samples)} "
            f"predictions per variant are fewer than the {needed} that an effect of {min_effect} needs"
        )
    else:
        verdict = leader
        reason = f"P({challenger} better than {control}) = {probability:.3f}: {leader} ahead"
    return Comparison(
        challenger=challenger,
        control=control,
        difference=t.value - c.value,
        lower=float(np.quantile(differences, tail)),
        upper=float(np.quantile(differences, 1 - tail)),
        probability_better=probability,
        required_samples=needed,
        enough_samples=enough,
        verdict=verdict,
        reason=reason,
    )


def _decide(comparisons: Mapping[str, Comparison], control: str) -> tuple[str | None, str]:
    won = [c for c in comparisons.values() if c.verdict == "challenger"]
    if won:
        best = max(won, key=lambda c: c.probability_better)
        return best.challenger, f"{best.challenger} beats {control}: {best.reason}"
    if all(c.verdict == "control" for c in comparisons.values()):
        return (
            control,
            f"{control} stays: every challenger is worse ({'; '.join(c.reason for c in comparisons.values())})",
        )
    return None, "no winner yet: " + "; ".join(c.reason for c in comparisons.values())
