"""Expectation suites as data: read and write suite files, check them against GX, infer a starting suite.

A suite is kept in the repository in Great Expectations' own JSON layout (``name``,
``expectations`` with ``type``/``kwargs``/``meta``, ``meta``), as JSON or YAML, so GX's
documentation applies to it unchanged. This module imports Great Expectations only where a suite
is checked or run, never at import time (DAG files build suites while they are parsed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.exceptions import SuiteError

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

log = logging.getLogger(__name__)

SUITE_SUFFIXES = (".json", ".yaml", ".yml")
#: Keys an expectation may carry in a suite file (GX's own layout).
EXPECTATION_KEYS = frozenset({"type", "kwargs", "meta", "notes", "id", "description", "rendered_content"})
#: String columns with at most this many distinct values get a value-set expectation when inferred.
MAX_CATEGORIES = 20


@dataclass(frozen=True)
class SuiteSpec:
    """An expectation suite as plain data, checked for shape when constructed.

    :param name: the suite's name (reports and Asset events carry it).
    :param expectations: GX expectation configurations: ``{"type": ..., "kwargs": {...}}``; a kwarg
        may be ``{"$PARAMETER": "name"}``, filled from the parameters given at validation time.
    :param meta: free-form notes (where the suite was inferred from, what a person edited).
    :param source: where the suite was read from, named in every error message.
    """

    name: str
    expectations: tuple[Mapping[str, Any], ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<python>"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SuiteError(f"suite {self.source}: 'name' must be a non-empty string, got {self.name!r}")
        if not self.expectations:
            raise SuiteError(f"suite {self.source}: 'expectations' is empty (rule: a suite checks something)")
        for index, expectation in enumerate(self.expectations):
            where = f"suite {self.source}, expectation #{index}"
            if not isinstance(expectation, Mapping):
                raise SuiteError(f"{where}: must be a mapping with 'type' and 'kwargs', got {expectation!r}")
            kind = expectation.get("type")
            if not isinstance(kind, str) or not kind:
                raise SuiteError(f"{where}: 'type' must name an expectation, got {kind!r}")
            if not isinstance(expectation.get("kwargs", {}), Mapping):
                raise SuiteError(
                    f"{where} ({kind}): 'kwargs' must be a mapping, got {expectation['kwargs']!r}"
                )
            unknown = set(expectation) - EXPECTATION_KEYS
            if unknown:
                raise SuiteError(
                    f"{where} ({kind}): unknown keys {sorted(unknown)}; allowed: {sorted(EXPECTATION_KEYS)}"
                )

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], source: str = "<python>") -> SuiteSpec:
        if not isinstance(record, Mapping):
            raise SuiteError(
                f"suite {source}: must be a mapping with 'name' and 'expectations', got {type(record).__name__}"
            )
        expectations = record.get("expectations")
        if not isinstance(expectations, list):
            raise SuiteError(f"suite {source}: 'expectations' must be a list, got {expectations!r}")
        return cls(
            name=record.get("name", ""),
            expectations=tuple(expectations),
            meta=dict(record.get("meta") or {}),
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "meta": dict(self.meta),
            "expectations": [dict(e) for e in self.expectations],
        }

    @property
    def sha256(self) -> str:
        """Content hash of the suite's rules (not of the file's formatting)."""
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()

    def parameter_names(self) -> set[str]:
        """Names of the ``$PARAMETER`` placeholders the suite needs at validation time."""
        return set(_parameters_in(e.get("kwargs", {}) for e in self.expectations))

    def to_gx(self) -> gx.ExpectationSuite:
        """Build the GX suite; every expectation type and argument is checked first.

        GX itself logs and silently drops an expectation of an unknown type, so each one is
        resolved in GX's registry and constructed here, and any problem is raised.
        """
        import great_expectations as gx
        from great_expectations.exceptions import ExpectationNotFoundError
        from great_expectations.expectations.registry import get_expectation_impl

        built = []
        for index, expectation in enumerate(self.expectations):
            kind = expectation["type"]
            where = f"suite {self.source}, expectation #{index} ({kind})"
            try:
                impl = get_expectation_impl(kind)
            except ExpectationNotFoundError:
                raise SuiteError(
                    f"{where}: unknown expectation type {kind!r} (rule: a Great Expectations "
                    "1.x expectation name, e.g. 'expect_column_values_to_not_be_null')"
                ) from None
            try:
                built.append(impl(**dict(expectation.get("kwargs", {})), meta=expectation.get("meta")))
            except (ValueError, TypeError) as err:  # pydantic's ValidationError is a ValueError
                raise SuiteError(
                    f"{where}: invalid arguments {dict(expectation.get('kwargs', {}))}: {err}"
                ) from None
        return gx.ExpectationSuite(name=self.name, expectations=built, meta=dict(self.meta))


def _parameters_in(values: Iterable[Any]) -> Iterable[str]:
    for value in values:
        if isinstance(value, Mapping):
            if set(value) == {"$PARAMETER"}:
                yield str(value["$PARAMETER"])
            else:
                yield from _parameters_in(value.values())
        elif isinstance(value, list | tuple):
            yield from _parameters_in(value)


def load_suite(path: str | Path) -> SuiteSpec:
    """Read a suite file (``.json``, ``.yaml`` or ``.yml``) in GX's layout."""
    path = Path(path)
    if path.suffix not in SUITE_SUFFIXES:
        raise SuiteError(f"suite {path}: unsupported file type {path.suffix!r}; use one of {SUITE_SUFFIXES}")
    try:
        text = path.read_text()
    except OSError as err:
        raise SuiteError(f"suite {path}: cannot be read ({err.strerror})") from None
    import yaml

    try:
        record = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise SuiteError(f"suite {path}: not valid {path.suffix[1:].upper()}: {err}") from None
    return SuiteSpec.from_dict(record, source=str(path))


def save_suite(suite: SuiteSpec, path: str | Path) -> Path:
    """Write a suite file; the format follows the suffix. Written whole or not at all."""
    path = Path(path)
    if path.suffix not in SUITE_SUFFIXES:
        raise SuiteError(f"suite {path}: unsupported file type {path.suffix!r}; use one of {SUITE_SUFFIXES}")
    if path.suffix == ".json":
        text = json.dumps(suite.to_dict(), indent=2, default=str) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(suite.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    temp.replace(path)
    return path


def gx_type_name(dtype: Any) -> str:
    """The ``type_`` that ``expect_column_values_to_be_of_type`` checks for a pandas dtype.

    GX compares the dtype's scalar type, so a tz-aware timestamp column is ``Timestamp`` and a
    naive one ``datetime64``: a naive column is caught where an aware one is required.
    """
    import pandas as pd

    if isinstance(dtype, pd.DatetimeTZDtype):
        return "Timestamp"
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return "str"
    if str(dtype).startswith("datetime64"):
        return "datetime64"
    return str(dtype)


def infer_suite(
    frame: pd.DataFrame,
    name: str,
    *,
    key_columns: Sequence[str] | None = None,
    max_categories: int = MAX_CATEGORIES,
    source_uri: str | None = None,
) -> SuiteSpec:
    """Profile a reference partition into a starting suite, as TFDV's ``infer_schema`` does.

    The suite expects: the columns in this order; at least one row; each column's type; no NULLs
    where the reference has none; numeric values within the observed range; string columns with at
    most ``max_categories`` values within the observed set; unique keys (``key_columns``, else every
    column whose values are all distinct). Observed ranges are a start, not a rule: a person widens
    them to what is plausible (winter temperatures do not bound summer's) and commits the file.
    """
    import pandas as pd

    if frame.empty:
        raise SuiteError(
            f"infer_suite({name!r}): the reference partition has no rows (rule: profile real data)"
        )
    missing = [c for c in key_columns or () if c not in frame.columns]
    if missing:
        raise SuiteError(f"infer_suite({name!r}): key_columns {missing} are not columns of the partition")

    expectations: list[dict[str, Any]] = [
        {
            "type": "expect_table_columns_to_match_ordered_list",
            "kwargs": {"column_list": list(frame.columns)},
        },
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    ]
    for column in frame.columns:
        values = frame[column]
        expectations.append(
            {
                "type": "expect_column_values_to_be_of_type",
                "kwargs": {"column": column, "type_": gx_type_name(values.dtype)},
            }
        )
        if not values.isna().any():
            expectations.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": column}})
        present = values.dropna()
        if present.empty:
            continue
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            expectations.append(
                {
                    "type": "expect_column_values_to_be_between",
                    "kwargs": {
                        "column": column,
                        "min_value": _plain(present.min()),
                        "max_value": _plain(present.max()),
                    },
                }
            )
        elif gx_type_name(values.dtype) == "str" and present.nunique() <= max_categories:
            expectations.append(
                {
                    "type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": column, "value_set": sorted(map(str, present.unique()))},
                }
            )
    if key_columns and len(key_columns) > 1:
        expectations.append(
            {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": list(key_columns)}}
        )
    else:
        keys = key_columns or [
            c
            for c in frame.columns
            if len(frame) > 1
            and frame[c].notna().all()
            and frame[c].is_unique
            and not str(frame[c].dtype).startswith(("float", "datetime"))
        ]
        expectations.extend(
            {"type": "expect_column_values_to_be_unique", "kwargs": {"column": c}} for c in keys
        )

    meta = {
        "inferred_from": source_uri,
        "rows": len(frame),
        "notes": "Inferred starting suite: review the ranges and sets, then commit.",
    }
    return SuiteSpec(name=name, expectations=tuple(expectations), meta=meta)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, so suites serialise as plain JSON/YAML."""
    return value.item() if hasattr(value, "item") else value
