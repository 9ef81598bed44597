"""Validate a Parquet partition against an expectation suite with Great Expectations (no Airflow import).

``validate_partition`` takes the partition's bytes (so the hash in the report is of exactly what
was checked), reads them, runs the suite in an ephemeral GX context on pandas, profiles the
columns, optionally compares them with a reference profile, and returns a ``ValidationReport``.
A file that is not Parquet, or is truncated, gives a failed report, not an exception: the caller
quarantines it like any other failing partition. Problems with the suite itself (unknown
expectation, bad arguments, a missing parameter) raise ``SuiteError`` before any data is read.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.data.suites import SuiteSpec
from airflow_mlops.exceptions import MLOpsConfigError, SuiteError
from airflow_mlops.monitoring.statistics import compare_profiles, profile_frame

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

log = logging.getLogger(__name__)

#: Unexpected values quoted per failing expectation.
SAMPLE_SIZE = 5
#: kwargs that say where an expectation applies or how GX reports, not what it checks.
_NOT_RULES = frozenset({"column", "batch_id", "result_format", "catch_exceptions", "include_config"})


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, reduced to what a person needs to act on it."""

    expectation: str
    column: str | None
    rule: str
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: tuple[Any, ...] = ()
    observed: Any = None
    error: str | None = None

    def describe(self) -> str:
        where = f"column {self.column!r}" if self.column else "table"
        text = f"{where}: {self.expectation}({self.rule})"
        if self.error:
            return f"{text}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None:
            percent = f" ({self.unexpected_percent:.2f}%)" if self.unexpected_percent is not None else ""
            text += f": {self.unexpected_count} unexpected{percent}"
            if self.sample:
                text += f", e.g. {list(self.sample)}"
        elif self.observed is not None:
            observed = self.observed if isinstance(self.observed, str) else _short(self.observed)
            text += f": observed {observed}"
        return text

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ExpectationOutcome:
        return cls(**{**record, "sample": tuple(record.get("sample", ()))})


@dataclass(frozen=True)
class ValidationReport:
    """What validating one partition found; serialised as the report's JSON.

    The content depends only on the partition's bytes, the suite and the parameters, so validating
    the same partition again writes the same report.
    """

    partition_uri: str
    partition_sha256: str
    suite: str
    suite_sha256: str
    parameters: dict[str, Any]
    success: bool
    rows: int | None
    outcomes: tuple[ExpectationOutcome, ...] = ()
    read_error: str | None = None
    profile: dict[str, Any] | None = None
    divergences: tuple[dict[str, Any], ...] = ()
    drift_checked: bool = False
    fail_on_drift: bool = False
    row_split: dict[str, Any] | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def drifted(self) -> list[dict[str, Any]]:
        return [d for d in self.divergences if d["drifted"]]

    def failure_message(self, location: str | None = None) -> str:
        """Every reason the partition failed, one line each: column, rule, unexpected count, samples."""
        head = f"partition {self.partition_uri} failed suite {self.suite!r}"
        if self.read_error:
            lines = [f"{head}: {self.read_error}"]
        else:
            lines = [
                f"{head} ({len(self.failures)} of {len(self.outcomes)} expectations failed, {self.rows} rows):"
            ]
            lines += [f"  - {o.describe()}" for o in self.failures]
            if self.fail_on_drift:
                lines += [
                    f"  - drift from the reference: {d['column']} {d['metric']}={d['value']:.3f} "
                    f"(threshold {d['threshold']})"
                    for d in self.drifted
                ]
        if self.row_split and not self.row_split["accepted"]:
            lines.append(f"  row-level split refused: {self.row_split['reason']}")
        if location:
            lines.append(f"Quarantined with its report at {location}")
        return "\n".join(lines)

    def to_json(self) -> str:
        record = asdict(self)
        record["outcomes"] = [asdict(o) | {"sample": list(o.sample)} for o in self.outcomes]
        record["divergences"] = list(self.divergences)
        return json.dumps(record, indent=2, sort_keys=True, default=_jsonable)

    @classmethod
    def from_json(cls, text: str) -> ValidationReport:
        record = json.loads(text)
        record["outcomes"] = tuple(ExpectationOutcome.from_dict(o) for o in record.get("outcomes", ()))
        record["divergences"] = tuple(record.get("divergences", ()))
        return cls(**record)


@dataclass
class Validation:
    """A report plus, in row-level mode, the two halves of the partition."""

    report: ValidationReport
    valid_rows: pd.DataFrame | None = None
    invalid_rows: pd.DataFrame | None = None
    frame: pd.DataFrame | None = field(default=None, repr=False)


def check_suite(suite: SuiteSpec, parameters: Mapping[str, Any] | None) -> gx.ExpectationSuite:
    """Everything that can be wrong with the suite, raised before a byte of data is read."""
    gx_suite = suite.to_gx()
    missing = suite.parameter_names() - set(parameters or {})
    if missing:
        raise SuiteError(
            f"suite {suite.source}: needs parameters {sorted(missing)} that were not given "
            f"(given: {sorted(parameters or {})})"
        )
    return gx_suite


def read_parquet_bytes(data: bytes) -> pd.DataFrame:
    """Parquet bytes -> DataFrame; raises ``ValueError`` naming what is wrong with the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        raise MLOpsConfigError("the file is empty (0 bytes), not a Parquet file")
    if data[:4] != b"PAR1":
        raise MLOpsConfigError(f"not a Parquet file (first bytes {data[:4]!r}, expected b'PAR1')")
    if data[-4:] != b"PAR1":
        raise MLOpsConfigError(
            f"truncated Parquet file ({len(data)} bytes, no footer: it ends {data[-4:]!r})"
        )
    try:
        return pq.read_table(pa.BufferReader(data)).to_pandas()
    except (pa.ArrowException, OSError) as err:
        raise MLOpsConfigError(f"unreadable Parquet file: {err}") from None


def validate_partition(
    data: bytes,
    uri: str,
    suite: SuiteSpec,
    *,
    parameters: Mapping[str, Any] | None = None,
    reference_profile: Mapping[str, Any] | None = None,
    drift_columns: Sequence[str] | None = None,
    drift_thresholds: Mapping[str, float] | None = None,
    fail_on_drift: bool = False,
    max_invalid_fraction: float | None = None,
) -> Validation:
    """Validate the Parquet bytes of the partition at ``uri``.

    :param parameters: values of the suite's ``$PARAMETER`` placeholders (e.g. the month).
    :param reference_profile: a ``profile_frame`` profile to compare the distributions with.
    :param drift_columns: columns compared with the reference (default: every shared column).
    :param drift_thresholds: per-column threshold overrides (PSI for numeric, JS for categorical).
    :param fail_on_drift: count a drifted column as a failure (default: report it only).
    :param max_invalid_fraction: row-level mode: when every failure is about individual rows and
        the failing rows are at most this fraction, split the partition into valid and invalid rows
        and pass with the valid ones. ``None`` validates the partition as a whole.
    """
    gx_suite = check_suite(suite, parameters)
    params = dict(parameters or {})
    digest = hashlib.sha256(data).hexdigest()
    base: dict[str, Any] = dict(
        partition_uri=uri,
        partition_sha256=digest,
        suite=suite.name,
        suite_sha256=suite.sha256,
        parameters=params,
        fail_on_drift=fail_on_drift,
    )
    try:
        frame = read_parquet_bytes(data)
    except ValueError as err:
        return Validation(ValidationReport(**base, success=False, rows=None, read_error=str(err)))

    row_level = max_invalid_fraction is not None
    # GX names failing rows by index label: with positions as labels, a row is named once even
    # when the file's own index repeats labels (the split below is by position too).
    outcomes, invalid_index = _run_gx(gx_suite, frame.reset_index(drop=True), params, row_level=row_level)
    profile = profile_frame(frame)
    divergences: tuple[dict[str, Any], ...] = ()
    if reference_profile is not None:
        divergences = tuple(
            d.to_dict()
            for d in compare_profiles(
                reference_profile, profile, columns=drift_columns, thresholds=drift_thresholds
            )
        )
    failed = any(not o.success for o in outcomes) or (
        fail_on_drift and any(d["drifted"] for d in divergences)
    )

    row_split = None
    valid = invalid = None
    if row_level and failed and max_invalid_fraction is not None:
        row_split = _decide_split(
            outcomes, invalid_index, len(frame), max_invalid_fraction, fail_on_drift, divergences
        )
        if row_split["accepted"]:
            import numpy as np

            mask = np.zeros(len(frame), dtype=bool)
            mask[sorted(invalid_index or ())] = True
            valid, invalid = frame[~mask], frame[mask]
            failed = False
    report = ValidationReport(
        **base,
        success=not failed,
        rows=len(frame),
        outcomes=tuple(outcomes),
        profile=profile,
        divergences=divergences,
        drift_checked=reference_profile is not None,
        row_split=row_split,
    )
    return Validation(report, valid_rows=valid, invalid_rows=invalid, frame=frame)


def _decide_split(
    outcomes: Sequence[ExpectationOutcome],
    invalid_index: set[Any] | None,
    rows: int,
    bound: float,
    fail_on_drift: bool,
    divergences: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    whole = [o for o in outcomes if not o.success and (o.unexpected_count is None or o.error)]
    invalid = len(invalid_index or ())
    fraction = invalid / rows if rows else 1.0
    split = {
        "accepted": False,
        "bound": bound,
        "invalid_rows": invalid,
        "valid_rows": rows - invalid,
        "invalid_fraction": round(fraction, 6),
        "reason": "",
    }
    if whole:
        split["reason"] = (
            f"{len(whole)} failing expectation(s) concern the whole table or a column's type, not rows: "
            + ", ".join(o.expectation for o in whole)
        )
    elif fail_on_drift and any(d["drifted"] for d in divergences):
        split["reason"] = "distribution drift concerns the whole partition"
    elif fraction > bound:
        split["reason"] = f"invalid fraction {fraction:.4f} exceeds the bound {bound}"
    elif invalid == rows:
        split["reason"] = "every row is invalid"
    else:
        split["accepted"] = True
    return split


def _run_gx(
    suite: gx.ExpectationSuite, frame: pd.DataFrame, parameters: Mapping[str, Any], *, row_level: bool
) -> tuple[list[ExpectationOutcome], set[Any] | None]:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("partition")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
    )
    definition = gx.ValidationDefinition(name="validate", data=batch, suite=context.suites.add(suite))
    # COMPLETE lists every unexpected row index, which only row-level mode needs.
    result_format = {
        "result_format": "COMPLETE" if row_level else "SUMMARY",
        "partial_unexpected_count": SAMPLE_SIZE,
    }
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=dict(parameters),
        result_format=result_format,
    )

    outcomes = []
    invalid: set[Any] | None = set() if row_level else None
    for item in result.results:
        config = item.expectation_config
        assert config is not None  # GX sets it on every result of a suite run
        kwargs = dict(config.kwargs)
        details = item.result or {}
        errors = [
            info.get("exception_message")
            for info in (item.exception_info or {}).values()
            if isinstance(info, Mapping) and info.get("raised_exception")
        ]
        if item.exception_info and item.exception_info.get("raised_exception"):
            errors.append(item.exception_info.get("exception_message"))
        observed = details.get("observed_value")
        if (
            not item.success
            and isinstance(observed, list)
            and ("column_list" in kwargs or "column_set" in kwargs)
        ):
            observed = _column_difference(
                kwargs.get("column_list") or kwargs.get("column_set") or [], observed
            )
        outcomes.append(
            ExpectationOutcome(
                expectation=config.type,
                column=kwargs.get("column")
                or (
                    ",".join(kwargs["column_list"])
                    if "column_list" in kwargs and config.type.startswith("expect_compound")
                    else None
                ),
                rule=_rule(kwargs),
                success=bool(item.success),
                unexpected_count=details.get("unexpected_count"),
                unexpected_percent=details.get("unexpected_percent"),
                sample=tuple(
                    clip(_jsonable(v)) for v in (details.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]
                ),
                observed=_jsonable_deep(observed),
                error="; ".join(dict.fromkeys(str(e) for e in errors if e)) or None,
            )
        )
        if invalid is not None and not item.success:
            invalid.update(details.get("unexpected_index_list") or ())
    return outcomes, invalid


def _column_difference(expected: Sequence[str], observed: Sequence[str]) -> str:
    """What a person needs from a failed column-list check: which columns are missing or unexpected."""
    missing = [c for c in expected if c not in observed]
    unexpected = [c for c in observed if c not in expected]
    if not missing and not unexpected:
        return f"the same columns in another order: {list(observed)}"
    return "; ".join(
        part
        for part in (
            f"missing columns {missing}" if missing else "",
            f"unexpected columns {unexpected}" if unexpected else "",
        )
        if part
    )


def _rule(kwargs: Mapping[str, Any]) -> str:
    parts = []
    for key, value in kwargs.items():
        if key in _NOT_RULES or value is None:
            continue
        parts.append(f"{key}={_short(value)}")
    return ", ".join(parts)


def _short(value: Any, limit: int = 6) -> str:
    if isinstance(value, list | tuple) and len(value) > limit:
        return f"[{', '.join(repr(clip(v)) for v in value[:limit])}, ... ({len(value)} values)]"
    if isinstance(value, list | tuple):
        return repr([clip(v) for v in value])
    return repr(clip(value))


#: The longest value a report or a failure message copies from the data.
MAX_SHOWN_CHARS = 200


def clip(value: Any) -> Any:
    """A value as a report or an error message may show it: a string longer than
    ``MAX_SHOWN_CHARS`` is cut and says how long it was (a 1 MB field is not copied whole)."""
    if isinstance(value, str) and len(value) > MAX_SHOWN_CHARS:
        return f"{value[:MAX_SHOWN_CHARS]}... ({len(value)} characters)"
    return value


def _jsonable(value: Any) -> Any:
    """numpy scalars, NaN and timestamps -> JSON values (NaN becomes None: it is a NULL here)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _jsonable_deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable_deep(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable_deep(v) for v in value]
    return _jsonable(value)


def render_report_html(report: ValidationReport, *, location: str | None = None) -> str:
    """A self-contained page for people: verdict, failing expectations, drift, and the column profile."""
    esc = html.escape
    verdict = "passed" if report.success else "FAILED"
    color = "#1a7f37" if report.success else "#cf222e"
    rows = []
    for o in report.outcomes:
        mark = "&#10003;" if o.success else "&#10007;"
        detail = "" if o.success else esc(o.describe())
        rows.append(
            f"<tr class={'ok' if o.success else 'bad'}><td>{mark}</td><td>{esc(o.column or '(table)')}</td>"
            f"<td>{esc(o.expectation)}</td><td><code>{esc(o.rule)}</code></td><td>{detail}</td></tr>"
        )
    drift_rows = [
        f"<tr class={'bad' if d['drifted'] else 'ok'}><td>{esc(d['column'])}</td><td>{esc(d['metric'])}</td>"
        f"<td>{d['value']:.4f}</td><td>{d['threshold']}</td><td>{_number(d.get('ks'))}</td>"
        f"<td>{_bar(d['value'], d['threshold'])}</td></tr>"
        for d in report.divergences
    ]
    profile_rows = []
    for name, entry in (report.profile or {}).get("columns", {}).items():
        nulls = entry["nulls"] / entry["count"] if entry["count"] else 0.0
        facts = (
            f"min {entry['min']}, max {entry['max']}, mean {entry.get('mean', '')}"
            if entry["kind"] in ("numeric", "datetime")
            else f"{entry['distinct']} distinct"
        )
        profile_rows.append(
            f"<tr><td>{esc(name)}</td><td>{entry['kind']}</td><td>{nulls:.2%}</td>"
            f"<td>{esc(str(facts))}</td></tr>"
        )
    split = report.row_split
    split_html = (
        (
            f"<p>Row-level split: {split['valid_rows']} valid, {split['invalid_rows']} invalid "
            f"({split['invalid_fraction']:.4%}, bound {split['bound']}): "
            f"{'accepted' if split['accepted'] else 'refused: ' + esc(split['reason'])}</p>"
        )
        if split
        else ""
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Validation of {esc(report.partition_uri)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:80em}} td,th{{padding:.2em .6em;
text-align:left;vertical-align:top}} tr.bad{{background:#ffebe9}} table{{border-collapse:collapse}}
tr{{border-bottom:1px solid #ddd}} code{{font-size:.85em}}</style></head><body>
<h1 style="color:{color}">{verdict}: {esc(report.suite)}</h1>
<p>Partition <code>{esc(report.partition_uri)}</code> (sha256 <code>{report.partition_sha256[:16]}</code>),
{report.rows if report.rows is not None else "unreadable"} rows, suite sha256 <code>{
        report.suite_sha256[:16]
    }</code>,
parameters <code>{esc(json.dumps(report.parameters, default=str))}</code>.</p>
{f"<p><b>Quarantined at</b> <code>{esc(location)}</code></p>" if location else ""}
{f"<p class=bad><b>Unreadable:</b> {esc(report.read_error)}</p>" if report.read_error else ""}
{split_html}
<h2>Expectations ({len(report.failures)} failed of {len(report.outcomes)})</h2>
<table><tr><th></th><th>column</th><th>expectation</th><th>rule</th><th>finding</th></tr>{
        "".join(rows)
    }</table>
<h2>Distribution against the reference</h2>
{
        "<table><tr><th>column</th><th>metric</th><th>value</th><th>threshold</th><th>KS</th><th></th></tr>"
        + "".join(drift_rows)
        + "</table>"
        if drift_rows
        else "<p>No reference given.</p>"
    }
<h2>Profile</h2>
<table><tr><th>column</th><th>kind</th><th>nulls</th><th>summary</th></tr>{"".join(profile_rows)}</table>
</body></html>
"""


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _bar(value: float, threshold: float) -> str:
    width = 0 if not threshold else min(200, int(100 * value / threshold))
    color = "#cf222e" if value > threshold else "#1a7f37"
    return f'<div style="background:{color};height:.8em;width:{width}px" title="{value:.4f}"></div>'
