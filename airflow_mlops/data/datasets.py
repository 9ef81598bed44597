"""Versioned dataset definitions: sources, filters, label and split, materialized into a manifest (no Airflow import).

A ``DatasetDefinition`` is declared once, in Python or YAML, and checked when it is constructed.
``materialize_dataset`` reads the definition's source partitions (only partitions with a manifest
whose hash matches the file, which the validator writes), applies the filters and the label,
assigns every row to a split, and writes one Parquet file per split plus ``manifest.json`` under
``<output>/<name>/<version>/``. The version is a hash of the definition and of the sources'
content hashes, so the same definition over the same data gives the same version, the same rows
and the same splits on any machine; ``load_split`` reads a split back and checks its hashes.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_mlops.artifacts import MANIFEST_SUFFIX, Artifact, write_atomically, write_parquet_atomically
from airflow_mlops.exceptions import DatasetDefinitionError, DatasetIntegrityError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
PROFILE_NAME = "profile.json"
FILTER_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "not_null", "is_null")
_UNARY = ("not_null", "is_null")
#: Hash buckets for ``split.by: hash``: fractions are resolved to 1/10,000.
HASH_BUCKETS = 10_000

#: Turns a URI into a path object with ``open``/``exists``/``parent``/``/`` (ObjectStoragePath, UPath).
PathFactory = Callable[[str], Any]


@dataclass(frozen=True)
class RowFilter:
    """Keep the rows where ``column <op> value`` holds (``not_null``/``is_null`` take no value)."""

    column: str
    op: str
    value: Any = None

    def __post_init__(self) -> None:
        if self.op not in FILTER_OPERATORS:
            raise DatasetDefinitionError(
                f"filter on {self.column!r}: unknown operator {self.op!r}; use one of {FILTER_OPERATORS}"
            )
        if self.op in _UNARY and self.value is not None:
            raise DatasetDefinitionError(
                f"filter on {self.column!r}: {self.op!r} takes no value, got {self.value!r}"
            )
        if self.op in ("in", "not_in") and not isinstance(self.value, list | tuple):
            raise DatasetDefinitionError(
                f"filter on {self.column!r}: {self.op!r} needs a list, got {self.value!r}"
            )
        if self.op not in _UNARY and self.op not in ("in", "not_in") and self.value is None:
            raise DatasetDefinitionError(f"filter on {self.column!r}: {self.op!r} needs a value")

    def describe(self) -> str:
        return f"{self.column} {self.op}" + ("" if self.op in _UNARY else f" {self.value!r}")

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        values = frame[self.column]
        match self.op:
            case "not_null":
                return values.notna()
            case "is_null":
                return values.isna()
            case "in":
                return values.isin(list(self.value))
            case "not_in":
                return ~values.isin(list(self.value))
        compare = {
            "==": values.eq,
            "!=": values.ne,
            "<": values.lt,
            "<=": values.le,
            ">": values.gt,
            ">=": values.ge,
        }
        return compare[self.op](_comparable(values, self.value)).fillna(False).astype(bool)


@dataclass(frozen=True)
class Label:
    """The label column ``name``, made from ``column`` in one of three ways, one per task type:

    - ``op`` and ``value`` (binary): 1 where ``column <op> value`` holds, else 0
      (``{name: is_delayed, column: arr_delay, op: ">", value: 15}``);
    - ``bins`` and ``classes`` (multiclass): the class whose interval holds the value, intervals
      closed on the right (``bins: [0, 60]``, ``classes: [early, late, very_late]``: ``<= 0``,
      ``(0, 60]``, ``> 60``);
    - neither (regression, or a column that already holds the classes): the column's value.

    Rows where ``column`` is null should be filtered out first (``op: not_null``); a null left
    fails the materialization naming the label.
    """

    name: str
    column: str
    op: str | None = None
    value: Any = None
    bins: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.bins is not None or self.classes is not None:
            self._check_bins()
        elif self.op is not None and self.op not in ("==", "!=", "<", "<=", ">", ">=", "in", "not_in"):
            raise DatasetDefinitionError(
                f"label {self.name!r}: operator {self.op!r} must compare with a value"
            )
        elif self.op is not None:
            RowFilter(self.column, self.op, self.value)  # same value rules as a filter
        elif self.value is not None:
            raise DatasetDefinitionError(f"label {self.name!r}: value {self.value!r} needs an op")

    def _check_bins(self) -> None:
        if self.op is not None:
            raise DatasetDefinitionError(f"label {self.name!r}: give op/value or bins/classes, not both")
        bins, classes = list(self.bins or ()), list(self.classes or ())
        if not bins or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bins):
            raise DatasetDefinitionError(
                f"label {self.name!r}: bins must be a list of numbers, got {self.bins!r}"
            )
        if any(b >= a for b, a in itertools.pairwise(bins)):
            raise DatasetDefinitionError(f"label {self.name!r}: bins must increase, got {bins}")
        if len(classes) != len(bins) + 1 or len(set(classes)) != len(classes):
            raise DatasetDefinitionError(
                f"label {self.name!r}: {len(bins)} bins make {len(bins) + 1} classes, "
                f"so classes must name {len(bins) + 1} distinct ones, got {classes}"
            )
        object.__setattr__(self, "bins", tuple(bins))
        object.__setattr__(self, "classes", tuple(str(c) for c in classes))

    @property
    def kind(self) -> str:
        """``"binary"``, ``"multiclass"`` (bins) or ``"value"`` (the column as it is)."""
        return "multiclass" if self.bins is not None else "binary" if self.op is not None else "value"

    def make(self, frame: pd.DataFrame) -> pd.Series:
        """The label of every row of ``frame``."""
        import numpy as np
        import pandas as pd

        values = frame[self.column]
        if self.kind == "binary":
            return RowFilter(self.column, str(self.op), self.value).mask(frame).astype("int64")
        if values.isna().any():
            raise DatasetDefinitionError(
                f"label {self.name!r}: column {self.column!r} has {int(values.isna().sum())} null value(s); "
                f"filter them out first ({{column: {self.column}, op: not_null}})"
            )
        if self.kind == "value":
            return values
        if not pd.api.types.is_numeric_dtype(values):
            raise DatasetDefinitionError(
                f"label {self.name!r}: bins need a numeric column, {self.column!r} is {values.dtype}"
            )
        edges = [-np.inf, *(self.bins or ()), np.inf]
        return pd.cut(values, bins=edges, labels=list(self.classes or ()), right=True).astype(str)

    def to_dict(self) -> dict[str, Any]:
        """The label in its file layout (only the fields its kind uses)."""
        record: dict[str, Any] = {"name": self.name, "column": self.column}
        if self.kind == "binary":
            record.update(op=self.op, value=self.value)
        elif self.kind == "multiclass":
            record.update(bins=list(self.bins or ()), classes=list(self.classes or ()))
        return record

    def summary(self, part: pd.Series) -> dict[str, Any]:
        """What a split's record says about its labels: positives, per-class counts or the mean."""
        import pandas as pd

        if self.kind == "binary":
            return {"label_positive": int(part.sum())}
        if self.kind == "multiclass" or not pd.api.types.is_numeric_dtype(part):
            return {"label_counts": {str(k): int(v) for k, v in part.value_counts().sort_index().items()}}
        return {"label_mean": float(part.mean()) if len(part) else None}


@dataclass(frozen=True)
class SplitRule:
    """How rows are assigned to splits.

    ``by="time"``: ``column`` is a timestamp; ``boundaries`` is an ordered list of ``(split, before)``,
    the last one with ``before=None`` (everything later). ``by="hash"``: ``key`` names a column,
    ``fractions`` maps split -> fraction (summing to 1); a row's split depends only on its key and
    ``salt``, so a row keeps its split when more data arrives.
    """

    by: str
    column: str | None = None
    boundaries: tuple[tuple[str, str | None], ...] = ()
    key: str | None = None
    fractions: tuple[tuple[str, float], ...] = ()
    salt: str = "airflow-mlops"

    def __post_init__(self) -> None:
        if self.by == "time":
            if not self.column or not self.boundaries:
                raise DatasetDefinitionError("split by time: needs 'column' and 'boundaries'")
            if self.boundaries[-1][1] is not None or any(b is None for _, b in self.boundaries[:-1]):
                raise DatasetDefinitionError(
                    f"split by time: only the last boundary is open-ended, got {list(self.boundaries)}"
                )
            befores = [str(b) for _, b in self.boundaries[:-1]]
            if befores != sorted(befores):
                raise DatasetDefinitionError(f"split by time: boundaries must increase, got {befores}")
        elif self.by == "hash":
            if not self.key or not self.fractions:
                raise DatasetDefinitionError("split by hash: needs 'key' and 'fractions'")
            total = sum(f for _, f in self.fractions)
            if any(f <= 0 for _, f in self.fractions) or abs(total - 1.0) > 1e-9:
                raise DatasetDefinitionError(
                    f"split by hash: fractions must be positive and sum to 1, got "
                    f"{dict(self.fractions)} (sum {total})"
                )
        else:
            raise DatasetDefinitionError(f"split: 'by' must be 'time' or 'hash', got {self.by!r}")
        names = self.split_names
        if len(set(names)) != len(names):
            raise DatasetDefinitionError(f"split: split names repeat: {names}")

    @property
    def split_names(self) -> list[str]:
        return [s for s, _ in (self.boundaries if self.by == "time" else self.fractions)]

    def assign(self, frame: pd.DataFrame) -> pd.Series:
        """The split name of every row."""
        import numpy as np
        import pandas as pd

        if self.by == "time":
            values = frame[self.column]
            names = np.full(len(frame), self.boundaries[-1][0], dtype=object)
            assigned = np.zeros(len(frame), dtype=bool)
            for name, before in self.boundaries[:-1]:
                hit = (values < _comparable(values, before)).to_numpy() & ~assigned
                names[hit] = name
                assigned |= hit
            if values.isna().any():
                raise DatasetDefinitionError(
                    f"split by time: column {self.column!r} has NULLs; filter them out first"
                )
            return pd.Series(names, index=frame.index)
        hashes = pd.util.hash_pandas_object(
            frame[self.key], index=False, hash_key=hashlib.md5(self.salt.encode()).hexdigest()[:16]
        )
        buckets = (hashes.to_numpy() % HASH_BUCKETS).astype("int64")
        names = np.empty(len(frame), dtype=object)
        low = 0
        for i, (name, fraction) in enumerate(self.fractions):
            high = HASH_BUCKETS if i == len(self.fractions) - 1 else low + round(fraction * HASH_BUCKETS)
            names[(buckets >= low) & (buckets < high)] = name
            low = high
        return pd.Series(names, index=frame.index)


@dataclass(frozen=True)
class DatasetDefinition:
    """A dataset, declared once.

    :param name: the dataset's name (folder name and Asset extra).
    :param source_uri: URI template of one source partition, with ``{period}`` and any ``{variable}``
        given at materialization (``{lake}``), e.g. ``{lake}/validated/flights/{period}.parquet``.
    :param periods: the partitions' period names (``YYYY-MM``) used when materialization names none.
    :param label: the label column's rule.
    :param split: the split rule.
    :param filters: rows kept (all must hold); the rows each filter removes are counted.
    :param columns: the columns kept (default all), the label is added.
    :param source_asset: the Asset the partitions come from (recorded as lineage).
    """

    name: str
    source_uri: str
    label: Label
    split: SplitRule
    periods: tuple[str, ...] = ()
    filters: tuple[RowFilter, ...] = ()
    columns: tuple[str, ...] = ()
    source_asset: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise DatasetDefinitionError(f"dataset name {self.name!r}: must be non-empty with no '/'")
        if "{period}" not in self.source_uri:
            raise DatasetDefinitionError(
                f"dataset {self.name!r}: source_uri {self.source_uri!r} must contain '{{period}}'"
            )

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], source: str = "<python>") -> DatasetDefinition:
        try:
            source_block = record["source"]
            split = dict(record["split"])
            label = record["label"]
            return cls(
                name=record["name"],
                description=record.get("description", ""),
                source_uri=source_block["uri"],
                source_asset=source_block.get("asset"),
                periods=tuple(str(p) for p in source_block.get("periods", ())),
                filters=tuple(RowFilter(**f) for f in record.get("filters", ())),
                columns=tuple(record.get("columns", ())),
                label=Label(
                    **{
                        **label,
                        **({"bins": tuple(label["bins"])} if isinstance(label.get("bins"), list) else {}),
                        **(
                            {"classes": tuple(label["classes"])}
                            if isinstance(label.get("classes"), list)
                            else {}
                        ),
                    }
                ),
                split=SplitRule(
                    by=split.get("by", ""),
                    column=split.get("column"),
                    key=split.get("key"),
                    salt=split.get("salt", "airflow-mlops"),
                    boundaries=tuple((b["split"], b.get("before")) for b in split.get("boundaries", ())),
                    fractions=tuple((k, float(v)) for k, v in dict(split.get("fractions", {})).items()),
                ),
            )
        except KeyError as err:
            raise DatasetDefinitionError(f"dataset definition {source}: missing field {err}") from None
        except TypeError as err:
            raise DatasetDefinitionError(f"dataset definition {source}: {err}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> DatasetDefinition:
        import yaml

        path = Path(path)
        try:
            record = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise DatasetDefinitionError(f"dataset definition {path}: cannot be read: {err}") from None
        if not isinstance(record, Mapping):
            raise DatasetDefinitionError(
                f"dataset definition {path}: must be a mapping, got {type(record).__name__}"
            )
        return cls.from_dict(record, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The definition in its file layout: ``from_dict(d.to_dict()) == d``."""
        split: dict[str, Any] = {"by": self.split.by, "salt": self.split.salt}
        if self.split.by == "time":
            split.update(
                column=self.split.column,
                boundaries=[{"split": name, "before": before} for name, before in self.split.boundaries],
            )
        else:
            split.update(key=self.split.key, fractions=dict(self.split.fractions))
        return {
            "name": self.name,
            "description": self.description,
            "source": {"uri": self.source_uri, "asset": self.source_asset, "periods": list(self.periods)},
            "filters": [asdict(f) for f in self.filters],
            "label": self.label.to_dict(),
            "split": split,
            "columns": list(self.columns),
        }

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class DatasetManifest:
    """A materialized dataset version: where each split is, with its hashes, counts and lineage."""

    name: str
    version: str
    uri: str
    definition: dict[str, Any]
    definition_sha256: str
    code_version: str
    sources: tuple[dict[str, Any], ...]
    splits: dict[str, dict[str, Any]]
    rows_read: int
    rows_filtered: dict[str, int] = field(default_factory=dict)
    profile_uri: str | None = None

    def to_json(self) -> str:
        record = asdict(self)
        record["sources"] = list(self.sources)
        return json.dumps(record, indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> DatasetManifest:
        record = json.loads(text)
        record["sources"] = tuple(record["sources"])
        return cls(**record)


def materialize_dataset(
    definition: DatasetDefinition,
    *,
    output_uri: str,
    open_path: PathFactory,
    periods: Sequence[str] | None = None,
    variables: Mapping[str, str] | None = None,
    code_version: str = "",
) -> DatasetManifest:
    """Build the dataset's splits from its sources and write them with a manifest; see the module docstring.

    :param output_uri: the datasets root; the version goes to ``<output_uri>/<name>/<version>/``.
    :param open_path: turns a URI into a path object (``ObjectStoragePath`` or ``UPath``).
    :param periods: the partitions to read (default: the definition's ``periods``).
    :param variables: values for the source template's placeholders other than ``{period}``.
    """
    import pandas as pd

    from airflow_mlops.monitoring.statistics import profile_frame

    chosen = list(periods) if periods is not None else list(definition.periods)
    if not chosen:
        raise DatasetDefinitionError(
            f"dataset {definition.name!r}: no periods to read (rule: name at least one partition)"
        )
    frames, sources = [], []
    for period in sorted(set(chosen)):
        uri = _format(definition.source_uri, period, variables, definition.name)
        data = _read_verified_source(open_path(uri), uri)
        frame = pd.read_parquet(io.BytesIO(data))
        sources.append(
            {"uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "rows": len(frame), "period": period}
        )
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    rows_read = len(frame)

    needed = {f.column for f in definition.filters} | {definition.label.column}
    needed |= {definition.split.column or definition.split.key or ""} - {""}
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise DatasetDefinitionError(
            f"dataset {definition.name!r}: columns {missing} are not in the sources {[s['uri'] for s in sources]}"
        )

    filtered: dict[str, int] = {}
    for row_filter in definition.filters:
        keep = row_filter.mask(frame)
        filtered[row_filter.describe()] = int((~keep).sum())
        frame = frame[keep]
    if frame.empty:
        raise DatasetDefinitionError(
            f"dataset {definition.name!r}: the filters removed every row ({filtered})"
        )
    label = definition.label
    frame = frame.assign(**{label.name: label.make(frame)})
    splits = definition.split.assign(frame)
    if definition.columns:
        frame = frame[[*definition.columns, label.name]]
    frame = frame.reset_index(drop=True)
    splits = splits.reset_index(drop=True)

    fingerprint = hashlib.sha256(
        json.dumps(
            {"definition": definition.sha256, "sources": [s["sha256"] for s in sources]}, sort_keys=True
        ).encode()
    )
    version = fingerprint.hexdigest()[:16]
    root = f"{output_uri.rstrip('/')}/{definition.name}/{version}"
    split_records: dict[str, dict[str, Any]] = {}
    for name in definition.split.split_names:
        part = frame[splits == name].reset_index(drop=True)
        uri = f"{root}/{name}.parquet"
        digest = write_parquet_atomically(open_path(uri), part)
        split_records[name] = {
            "uri": uri,
            "sha256": digest,
            "rows": len(part),
            "content_sha256": content_hash(part),
            **label.summary(part[label.name]),
        }
        log.info("dataset %s %s: split %s has %d rows", definition.name, version, name, len(part))

    profile_uri = f"{root}/{PROFILE_NAME}"
    train_split = definition.split.split_names[0]
    write_atomically(
        open_path(profile_uri), json.dumps(profile_frame(frame[splits == train_split]), default=str)
    )
    manifest = DatasetManifest(
        name=definition.name,
        version=version,
        uri=f"{root}/{MANIFEST_NAME}",
        definition=definition.to_dict(),
        definition_sha256=definition.sha256,
        code_version=code_version,
        sources=tuple(sources),
        splits=split_records,
        rows_read=rows_read,
        rows_filtered=filtered,
        profile_uri=profile_uri,
    )
    write_atomically(open_path(manifest.uri), manifest.to_json())
    return manifest


def load_manifest(uri: str, open_path: PathFactory) -> DatasetManifest:
    path = open_path(uri)
    if not path.exists():
        raise DatasetIntegrityError(f"dataset manifest {uri}: does not exist")
    return DatasetManifest.from_json(path.read_text())


def load_split(manifest: DatasetManifest, split: str, open_path: PathFactory) -> pd.DataFrame:
    """Read one split back, exactly: its file's SHA-256 and its rows' content hash are checked."""
    import pandas as pd

    if split not in manifest.splits:
        raise DatasetIntegrityError(
            f"dataset {manifest.name} {manifest.version}: no split {split!r}; "
            f"splits are {sorted(manifest.splits)}"
        )
    record = manifest.splits[split]
    path = open_path(record["uri"])
    if not path.exists():
        raise DatasetIntegrityError(
            f"dataset {manifest.name} {manifest.version}: split file {record['uri']} is missing"
        )
    with path.open("rb") as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"]:
        raise DatasetIntegrityError(
            f"dataset {manifest.name} {manifest.version}: {record['uri']} has sha256 "
            f"{digest[:16]}, the manifest records {record['sha256'][:16]} (rule: files never change)"
        )
    frame = pd.read_parquet(io.BytesIO(data))
    if content_hash(frame) != record["content_sha256"]:
        raise DatasetIntegrityError(
            f"dataset {manifest.name} {manifest.version}: rows of {record['uri']} differ from the manifest"
        )
    return frame


def content_hash(frame: pd.DataFrame) -> str:
    """A hash of the rows and columns, independent of how the Parquet file encodes them."""
    import pandas as pd

    digest = hashlib.sha256(
        json.dumps([list(map(str, frame.columns)), list(map(str, frame.dtypes))]).encode()
    )
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _read_verified_source(path: Any, uri: str) -> bytes:
    """A source partition's bytes, only if its manifest exists and records exactly these bytes."""
    manifest_path = path.parent / f"{path.name}{MANIFEST_SUFFIX}"
    if not path.exists():
        raise DatasetIntegrityError(f"source partition {uri}: does not exist (has it been validated?)")
    if not manifest_path.exists():
        raise DatasetIntegrityError(
            f"source partition {uri}: has no manifest {manifest_path.name} "
            "(rule: only partitions written by the pipeline, with a manifest, are used)"
        )
    artifact = Artifact.from_json(manifest_path.read_text())
    with path.open("rb") as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != artifact.sha256:
        raise DatasetIntegrityError(
            f"source partition {uri}: sha256 {digest[:16]} differs from its manifest's "
            f"{artifact.sha256[:16]} (the file changed after it was written)"
        )
    return data


def _format(template: str, period: str, variables: Mapping[str, str] | None, name: str) -> str:
    try:
        return template.format(period=period, **(variables or {}))
    except KeyError as err:
        raise DatasetDefinitionError(
            f"dataset {name!r}: source_uri {template!r} needs variable {err}, given {sorted(variables or {})}"
        ) from None


def _comparable(values: pd.Series, value: Any) -> Any:
    """A filter's value in the column's terms: a string becomes a timestamp for timestamp columns."""
    import pandas as pd

    if isinstance(value, str) and pd.api.types.is_datetime64_any_dtype(values):
        stamp = pd.Timestamp(value)
        tz = getattr(values.dtype, "tz", None)
        if tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(tz)
        return stamp
    return value
