"""Dataset profiles and distribution divergences between a reference and a new sample (no Airflow import).

A profile is small JSON: per column its kind, count, NULLs and, for numeric columns, moments and
the 101 percentiles; for categorical columns the value frequencies (the most common ``top_k``,
the rest pooled). Divergences are computed from two profiles, so a reference is stored once and
compared with any later partition, training set or serving log without its rows:

- numeric: population stability index (PSI) over the reference's deciles, and the
  Kolmogorov-Smirnov distance between the two percentile functions;
- categorical: Jensen-Shannon distance (base 2, in [0, 1]) between the frequencies, the
  chi-square test of the two frequency tables, and the categories the reference never saw. A
  categorical column drifts when the distance is over its threshold AND the test says the
  difference is not sampling noise (p < ``alpha``): with many categories and a few thousand rows,
  the distance of two samples of one distribution alone reaches 0.1 to 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from airflow_mlops.exceptions import UnknownColumnError

if TYPE_CHECKING:
    import pandas as pd

PROFILE_VERSION = 1
PERCENTILES = np.linspace(0.0, 1.0, 101)
OTHER = "__other__"
NULL = "__null__"
#: Avoids log(0) in PSI when a bin is empty on one side.
PSI_EPSILON = 1e-4
#: Rule-of-thumb bounds: PSI above 0.2 is a significant shift; JS distance above 0.1 likewise.
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_JS_THRESHOLD = 0.1
DEFAULT_ALPHA = 0.01


def profile_frame(frame: pd.DataFrame, *, top_k: int = 50) -> dict[str, Any]:
    """Profile every column of ``frame`` (see the module docstring for what is kept)."""
    import pandas as pd

    columns: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        values = frame[name]
        present = values.dropna()
        entry: dict[str, Any] = {"count": len(values), "nulls": int(len(values) - len(present))}
        if isinstance(values.dtype, pd.DatetimeTZDtype) or str(values.dtype).startswith("datetime64"):
            entry.update(
                kind="datetime",
                min=present.min().isoformat() if len(present) else None,
                max=present.max().isoformat() if len(present) else None,
            )
        elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            numbers = present.to_numpy(dtype="float64")
            entry.update(kind="numeric", **_numeric_summary(numbers))
        else:
            counts = present.astype(str).value_counts()
            top = counts.iloc[:top_k]
            frequencies = {category_label(str(k)): int(v) for k, v in top.items()}
            if len(counts) > top_k:
                frequencies[OTHER] = int(counts.iloc[top_k:].sum())
            entry.update(kind="categorical", distinct=len(counts), frequencies=frequencies)
        columns[str(name)] = entry
    return {"version": PROFILE_VERSION, "rows": len(frame), "columns": columns}


def _numeric_summary(numbers: np.ndarray) -> dict[str, Any]:
    if numbers.size == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "percentiles": []}
    return {
        "min": float(numbers.min()),
        "max": float(numbers.max()),
        "mean": float(numbers.mean()),
        "std": float(numbers.std()),
        "percentiles": [float(q) for q in np.quantile(numbers, PERCENTILES)],
    }


def summarize_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers per column that fit an Asset event's ``extra`` (no percentiles or frequencies)."""
    summary: dict[str, Any] = {}
    for name, entry in profile["columns"].items():
        facts: dict[str, Any] = {"nulls": entry["nulls"]}
        if entry["kind"] == "numeric":
            facts.update({k: _rounded(entry[k]) for k in ("min", "max", "mean")})
        elif entry["kind"] == "categorical":
            facts["distinct"] = entry["distinct"]
        else:
            facts.update(min=entry["min"], max=entry["max"])
        summary[name] = facts
    return summary


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class Divergence:
    """How far one column moved from the reference, and whether that crosses its threshold."""

    column: str
    kind: str
    metric: str
    value: float
    threshold: float
    drifted: bool
    ks: float | None = None
    new_categories: tuple[str, ...] = ()
    p_value: float | None = None

    def describe(self) -> str:
        text = f"{self.column}: {self.metric}={self.value:.3f} (threshold {self.threshold})"
        if self.ks is not None:
            text += f", ks={self.ks:.3f}"
        if self.p_value is not None:
            text += f", chi-square p={self.p_value:.3g}"
        if self.new_categories:
            text += f", new categories {list(self.new_categories[:5])}"
        return text

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["new_categories"] = list(self.new_categories)
        return record


def compare_profiles(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    columns: Sequence[str] | None = None,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    js_threshold: float = DEFAULT_JS_THRESHOLD,
    thresholds: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> list[Divergence]:
    """Compare each shared numeric and categorical column of two profiles.

    :param columns: the columns to compare (default: every numeric or categorical column both
        profiles have). A named column the reference lacks is an error; one the current profile
        lacks is reported as a ``missing`` divergence.
    :param thresholds: per-column overrides of the column's primary metric's threshold.
    :param alpha: a categorical difference must also be significant at this level (chi-square).
    """
    ref_columns, cur_columns = reference["columns"], current["columns"]
    if columns is None:
        names = [
            c for c, e in ref_columns.items() if c in cur_columns and e["kind"] in ("numeric", "categorical")
        ]
    else:
        unknown = [c for c in columns if c not in ref_columns]
        if unknown:
            raise UnknownColumnError(
                f"compare_profiles: columns {unknown} are not in the reference profile (rule: compare "
                f"columns the reference has: {sorted(ref_columns)})"
            )
        names = list(columns)
    overrides = thresholds or {}
    divergences = []
    for name in names:
        ref, cur = ref_columns[name], cur_columns.get(name)
        if cur is None:
            divergences.append(Divergence(name, ref["kind"], "missing", 1.0, 0.0, True))
        elif ref["kind"] != cur["kind"]:
            divergences.append(Divergence(name, cur["kind"], "kind_changed", 1.0, 0.0, True))
        elif (ref["count"] - ref["nulls"] == 0) != (cur["count"] - cur["nulls"] == 0):
            # One side has no values at all: as far apart as two distributions can be.
            divergences.append(Divergence(name, ref["kind"], "no_values", 1.0, 0.0, True))
        elif ref["kind"] == "numeric":
            limit = overrides.get(name, psi_threshold)
            value = psi(ref["percentiles"], cur["percentiles"])
            ks = ks_distance(ref["percentiles"], cur["percentiles"])
            divergences.append(Divergence(name, "numeric", "psi", value, limit, value > limit, ks=ks))
        elif ref["kind"] == "categorical":
            limit = overrides.get(name, js_threshold)
            ref_counts, cur_counts = aligned_frequencies(ref["frequencies"], cur["frequencies"])
            value = jensen_shannon_distance(ref_counts, cur_counts)
            p_value = chi_square_p_value(ref_counts, cur_counts)
            new = tuple(sorted(set(cur_counts) - set(ref_counts) - {OTHER}))
            divergences.append(
                Divergence(
                    name,
                    "categorical",
                    "js",
                    value,
                    limit,
                    value > limit and p_value < alpha,
                    new_categories=new,
                    p_value=p_value,
                )
            )
    return divergences


def _cdf(percentiles: Sequence[float], points: np.ndarray) -> np.ndarray:
    """The fraction of values at or below each point, read off a percentile function (steps at ties)."""
    q = np.asarray(percentiles, dtype="float64")
    if q.size == 0:
        return np.zeros_like(points)
    return np.clip((np.searchsorted(q, points, side="right") - 1) / (q.size - 1), 0.0, 1.0)


def ks_distance(reference: Sequence[float], current: Sequence[float]) -> float:
    """Largest gap between the two cumulative distributions (0 = same, 1 = disjoint)."""
    if not len(reference) or not len(current):
        return 0.0 if len(reference) == len(current) else 1.0
    points = np.union1d(reference, current)
    return float(np.max(np.abs(_cdf(reference, points) - _cdf(current, points))))


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """Population stability index over the reference's deciles (tied deciles merge into one bin)."""
    if not len(reference) or not len(current):
        return 0.0 if len(reference) == len(current) else math.inf
    edges = np.unique(np.asarray(reference, dtype="float64")[10:-1:10])
    ref_frac = _bin_fractions(reference, edges)
    cur_frac = _bin_fractions(current, edges)
    ref_frac, cur_frac = np.maximum(ref_frac, PSI_EPSILON), np.maximum(cur_frac, PSI_EPSILON)
    return float(np.sum((cur_frac - ref_frac) * np.log(cur_frac / ref_frac)))


def _bin_fractions(percentiles: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Mass of each bin (-inf, e1], (e1, e2], ..., (ek, inf) estimated from the percentile function."""
    return np.diff(np.concatenate([[0.0], _cdf(percentiles, edges), [1.0]]))


def jensen_shannon_distance(reference: Mapping[str, int], current: Mapping[str, int]) -> float:
    """Jensen-Shannon distance (base 2) between two frequency tables; unseen categories count as 0."""
    keys = sorted(set(reference) | set(current))
    p = np.array([reference.get(k, 0) for k in keys], dtype="float64")
    q = np.array([current.get(k, 0) for k in keys], dtype="float64")
    if p.sum() == 0 or q.sum() == 0:
        return 0.0 if p.sum() == q.sum() else 1.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


#: The longest category a profile keeps as it is; a longer one is named by its start, length and hash.
MAX_CATEGORY_CHARS = 200


def category_label(value: str) -> str:
    """A category as a profile names it: itself, or for a value over ``MAX_CATEGORY_CHARS``
    characters its first 64, its length and its SHA-256 (distinct values stay distinct; a 1 MB
    field is not copied into reports and Asset events)."""
    if len(value) <= MAX_CATEGORY_CHARS:
        return value
    import hashlib

    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{value[:64]}... ({len(value)} characters, sha256 {digest})"


def aligned_frequencies(
    reference: Mapping[str, int], current: Mapping[str, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """Both frequency tables over comparable categories: a category one side kept and the other
    side pooled into ``__other__`` (beyond its ``top_k``) is pooled on both sides, so it neither
    counts as new nor as vanished."""
    ref, cur = dict(reference), dict(current)
    for mine, theirs in ((cur, ref), (ref, cur)):
        if OTHER in theirs:
            for key in [k for k in mine if k not in theirs and k != OTHER]:
                mine[OTHER] = mine.get(OTHER, 0) + mine.pop(key)
    return ref, cur


def chi_square_p_value(reference: Mapping[str, int], current: Mapping[str, int]) -> float:
    """p-value of the chi-square test that two frequency tables come from one distribution."""
    from scipy.stats import chi2_contingency

    keys = sorted(set(reference) | set(current))
    table = np.array(
        [[reference.get(k, 0) for k in keys], [current.get(k, 0) for k in keys]], dtype="float64"
    )
    if len(keys) < 2 or table.sum(axis=1).min() == 0:
        return 1.0 if len(keys) < 2 else 0.0
    return float(chi2_contingency(table, correction=False).pvalue)
