"""Stream a SQL query into one Parquet file, chunk by chunk, written atomically (no Airflow import)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from airflow_mlops.artifacts import HashingWriter
from airflow_mlops.exceptions import (
    EmptyResultError,
    MLOpsConfigError,
    SchemaError,
    SourceQueryError,
    TargetError,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)

#: How many chunks may be held back while a column has shown only NULLs (so its type is unknown).
MAX_BUFFERED_CHUNKS = 8


class StoragePath(Protocol):
    """What extraction needs of a path: ``ObjectStoragePath``, ``upath.UPath`` and ``pathlib.Path`` fit."""

    @property
    def name(self) -> str: ...
    @property
    def parent(self) -> Any: ...
    def __truediv__(self, other: str) -> Any: ...
    def open(self, mode: str) -> IO[bytes]: ...
    def mkdir(self, mode: int = ..., parents: bool = ..., exist_ok: bool = ...) -> None: ...
    def rename(self, target: Any) -> Any: ...
    def exists(self) -> bool: ...
    def unlink(self) -> None: ...


@dataclass(frozen=True)
class ExtractResult:
    """What one extraction wrote: the partition's URI, its row count, schema and SHA-256."""

    uri: str
    rows: int
    sha256: str
    schema: list[dict[str, str]]
    bytes: int


def parse_arrow_type(name: str, column: str) -> pa.DataType:
    """Turn a type name such as ``int64``, ``string`` or ``timestamp[us, tz=UTC]`` into an Arrow type."""
    simple = {
        "bool": pa.bool_(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "double": pa.float64(),
        "string": pa.string(),
        "large_string": pa.large_string(),
        "date32": pa.date32(),
        "date32[day]": pa.date32(),
        "binary": pa.binary(),
    }
    if name in simple:
        return simple[name]
    if name.startswith("timestamp[") and name.endswith("]"):
        unit, _, tz = name[len("timestamp[") : -1].partition(",")
        tz = tz.strip()
        if tz.startswith("tz="):
            return pa.timestamp(unit.strip(), tz=tz[3:])
        if not tz:
            return pa.timestamp(unit.strip())
    raise SchemaError(
        f"column_types[{column!r}]: unknown Arrow type name {name!r}; use one of "
        f"{sorted(simple)} or 'timestamp[us]' / 'timestamp[us, tz=UTC]'"
    )


def schema_to_records(schema: pa.Schema) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def compare_schemas(expected: Sequence[Mapping[str, str]], actual: pa.Schema, *, what: str) -> None:
    """Raise SchemaError when ``actual`` differs from ``expected`` (NULL-typed columns match any type)."""
    expected_names = [c["name"] for c in expected]
    if expected_names != actual.names:
        missing = [n for n in expected_names if n not in actual.names]
        added = [n for n in actual.names if n not in expected_names]
        raise SchemaError(
            f"{what}: columns changed (rule: same columns in the same order as the recorded schema); "
            f"missing={missing}, new={added}, expected order={expected_names}, got={actual.names}"
        )
    for column, field in zip(expected, actual, strict=True):
        if "null" in (column["type"], str(field.type)):
            continue
        if column["type"] != str(field.type):
            raise SchemaError(
                f"{what}: column {field.name!r} changed type (rule: a column keeps the type recorded for "
                f"its dataset); recorded {column['type']}, source now gives {field.type}"
            )


def _column_to_arrow(values: Sequence[Any], column: str, target: pa.DataType | None) -> pa.Array:
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        samples = {}
        for v in values:
            if v is not None and type(v).__name__ not in samples:
                samples[type(v).__name__] = v
        raise SchemaError(
            f"column {column!r}: values of mixed types in the source (rule: one type per column); "
            f"found {kinds}, e.g. {samples}"
        ) from err
    return _cast(array, column, target) if target is not None else array


def _cast(array: pa.Array, column: str, target: pa.DataType) -> pa.Array:
    if array.type == target:
        return array
    try:
        if (
            pa.types.is_timestamp(target)
            and target.tz is not None
            and (pa.types.is_string(array.type) or pa.types.is_large_string(array.type))
        ):
            # Naive timestamp strings (SQLite stores datetimes as text) are read in the target zone.
            naive = pc.cast(array, pa.timestamp(target.unit))
            return pc.assume_timezone(naive, target.tz)
        return pc.cast(array, target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        sample = next((v for v in array.to_pylist() if v is not None), None)
        raise SchemaError(
            f"column {column!r}: source type {array.type} cannot be cast safely to {target} "
            f"(rule: the partition schema is fixed by its first rows, column_types or the recorded "
            f"schema); first value {sample!r}: {err}"
        ) from err


class _Batches:
    """Turns row chunks into record batches whose schema is fixed once every column's type is known."""

    def __init__(
        self, columns: list[str], column_types: Mapping[str, pa.DataType], recorded: Mapping[str, pa.DataType]
    ) -> None:
        self.columns = columns
        self.forced = dict(column_types)
        self.recorded = dict(recorded)  # types of NULL-only columns, from the dataset's recorded schema
        self.schema: pa.Schema | None = None

    def convert(self, rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
        by_column = list(zip(*rows, strict=True)) if rows else [() for _ in self.columns]
        arrays = []
        for i, name in enumerate(self.columns):
            target = self.schema.field(i).type if self.schema is not None else self.forced.get(name)
            arrays.append(_column_to_arrow(by_column[i], name, target))
        return pa.RecordBatch.from_arrays(arrays, names=self.columns)

    def fix(self, batches: list[pa.RecordBatch], *, final: bool) -> pa.Schema | None:
        """Fix the schema from buffered batches once no column is NULL-only (or the data has ended)."""
        fields = []
        for i, name in enumerate(self.columns):
            types = [b.column(i).type for b in batches if not pa.types.is_null(b.column(i).type)]
            if types:
                fields.append(pa.field(name, types[0]))
            elif name in self.recorded:
                fields.append(pa.field(name, self.recorded[name]))
            elif final:
                fields.append(pa.field(name, pa.null()))
            else:
                return None
        self.schema = pa.schema(fields)
        return self.schema


def _chunks(conn: Connection, sql: str, parameters: Mapping[str, Any], chunk_size: int) -> Iterator[Any]:
    try:
        result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
            text(sql), dict(parameters)
        )
        yield list(result.keys())
        yield from result.partitions(chunk_size)
    except SQLAlchemyError as err:
        # The driver's own message (SQLAlchemy's text and the chained error would add the bind
        # values, which may be personal data or secrets: only their names are said).
        cause = getattr(err, "orig", None) or err
        message = str(cause).split("\n[SQL:")[0][:500]
        raise SourceQueryError(
            f"query failed in the source database ({type(cause).__name__}: {message}); "
            f"sql={' '.join(sql.split())[:300]!r} bind parameters {sorted(parameters)} (values not shown)"
        ) from None


def stream_query_to_parquet(
    conn: Connection,
    sql: str,
    target: StoragePath,
    *,
    parameters: Mapping[str, Any] | None = None,
    chunk_size: int = 50_000,
    column_types: Mapping[str, str] | None = None,
    expected_schema: Sequence[Mapping[str, str]] | None = None,
    allow_empty: bool = False,
) -> ExtractResult:
    """Run ``sql`` with bind ``parameters`` and write its rows to the Parquet file ``target``.

    Rows are fetched ``chunk_size`` at a time and each chunk becomes one row group, so memory is
    bounded by the chunk size, not by the result. The file is written under a temporary name in
    the same folder and renamed into place only when complete: readers never see half a partition,
    and a re-run replaces the old partition. ``expected_schema`` (a recorded schema) makes a column
    whose type changed in the source an error before anything is written.
    """
    if chunk_size <= 0:
        raise MLOpsConfigError(f"chunk_size must be a positive number of rows, got {chunk_size!r}")
    forced = {name: parse_arrow_type(type_name, name) for name, type_name in (column_types or {}).items()}
    chunks = _chunks(conn, sql, parameters or {}, chunk_size)
    columns: list[str] = next(chunks)
    if len(set(columns)) != len(columns):
        raise SchemaError(f"query result has duplicate column names (rule: names are unique): {columns}")
    unknown = sorted(set(forced) - set(columns))
    if unknown:
        raise SchemaError(f"column_types names columns the query does not return: {unknown}; got {columns}")
    recorded = {
        c["name"]: parse_arrow_type(c["type"], c["name"])
        for c in expected_schema or ()
        if c["name"] in columns and c["type"] != "null"
    }
    batches = _Batches(columns, forced, recorded)

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TargetError(f"target {target}: cannot create its folder ({err})") from err
    temp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
    rows = 0
    writer: pq.ParquetWriter | None = None
    sink: HashingWriter | None = None
    try:
        with temp.open("wb") as raw:
            sink = HashingWriter(raw)
            pending: list[pa.RecordBatch] = []
            for chunk in chunks:
                pending.append(batches.convert(chunk))
                if batches.schema is None and batches.fix(pending, final=False) is None:
                    if len(pending) >= MAX_BUFFERED_CHUNKS:
                        nulls = [
                            c
                            for i, c in enumerate(columns)
                            if all(pa.types.is_null(b.column(i).type) for b in pending)
                        ]
                        raise SchemaError(
                            f"columns {nulls} are NULL in the first {sum(len(b) for b in pending)} rows, "
                            "so their type is unknown (rule: memory stays bounded by the chunk size); "
                            "give their types in column_types"
                        )
                    continue
                writer = _flush(pending, batches, writer, sink, expected_schema, str(target))
                rows += sum(len(b) for b in pending)
                pending = []
            if batches.schema is None:
                batches.fix(pending or [batches.convert([])], final=True)
            writer = _flush(pending, batches, writer, sink, expected_schema, str(target))
            rows += sum(len(b) for b in pending)
            if rows == 0 and not allow_empty:
                raise EmptyResultError(
                    f"query returned no rows (rule: an empty partition is an error unless allow_empty=True); "
                    f"sql={' '.join(sql.split())[:300]!r} parameters={dict(parameters or {})!r}"
                )
            assert writer is not None
            writer.close()
            size = sink.tell()
        temp.rename(target)
    except BaseException:
        if writer is not None and sink is not None:
            sink.abort()
            writer.close()  # frees the writer; its footer goes nowhere
        _remove_quietly(temp)
        raise
    assert batches.schema is not None
    log.info("Wrote %s rows (%s bytes) to %s", rows, size, target)
    return ExtractResult(
        uri=str(target),
        rows=rows,
        sha256=sink.hexdigest,
        schema=schema_to_records(batches.schema),
        bytes=size,
    )


def _flush(
    pending: list[pa.RecordBatch],
    batches: _Batches,
    writer: pq.ParquetWriter | None,
    sink: HashingWriter,
    expected_schema: Sequence[Mapping[str, str]] | None,
    what: str,
) -> pq.ParquetWriter:
    schema = batches.schema
    assert schema is not None
    if writer is None:
        if expected_schema is not None:
            compare_schemas(expected_schema, schema, what=what)
        writer = pq.ParquetWriter(sink, schema)
    for batch in pending:
        if batch.schema != schema:
            batch = pa.RecordBatch.from_arrays(
                [_cast(batch.column(i), f.name, f.type) for i, f in enumerate(schema)], schema=schema
            )
        writer.write_batch(batch)
    return writer


def _remove_quietly(path: StoragePath) -> None:
    try:
        if path.exists():
            path.unlink()
    except OSError as err:  # the original error matters more; a stray temp file is never a partition
        log.warning("Could not remove temporary file %s: %s", path, err)
