"""Extract the result of a SQL query into one Parquet partition on object storage."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlops.lineage import LineageMixin

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_mlops.data.extract import ExtractResult

SCHEMA_FILE = "_schema.json"


class SqlExtractOperator(LineageMixin, BaseOperator):
    """Run a query over an Airflow connection and stream its rows into one Parquet partition.

    Values reach the database as bind parameters, never formatted into the SQL. Rows are fetched
    ``chunk_size`` at a time, one row group per chunk, so memory stays bounded by the chunk size.
    The file is written under a temporary name beside the target and renamed into place when
    complete: a crash never leaves half a partition, and re-running a logical date replaces its
    partition instead of adding a second one. Beside it goes ``<target>.manifest.json`` (an
    :class:`~airflow_mlops.artifacts.Artifact`: URI, SHA-256, parents, row count, schema, query).

    The first partition of a dataset records its schema in ``_schema.json`` in the target's folder;
    with ``enforce_schema`` a later partition whose column types or columns differ fails before
    anything is written.

    :param sql: the query, with ``:name`` bind parameters (templated).
    :param source_conn_id: Airflow connection of the source database (any type whose provider hook gives a
        SQLAlchemy engine: sqlite, postgres, mysql...).
    :param target: URI of the Parquet file to write, ``file://`` or ``s3://`` (templated).
    :param parameters: bind parameter values (templated).
    :param storage_conn_id: Airflow connection for the target's object storage (e.g. ``aws_default``).
    :param chunk_size: rows fetched and written per chunk.
    :param column_types: Arrow type names forcing a column's type, e.g. ``{"time_hour":
        "timestamp[us, tz=UTC]"}``; needed for columns that may be NULL in the first chunks.
    :param allow_empty: write an empty partition instead of failing when the query returns no rows
        (no rows, like a changed schema, fails without a retry: asking again gives the same answer).
    :param enforce_schema: compare with, or record, the dataset's ``_schema.json``.
    :param parents: lineage parents recorded in the manifest (templated); defaults to the
        connection's table reference ``conn://<source_conn_id>``.

    XCom: the partition URI (``return_value``).
    OpenLineage: the tables the query reads (found by OpenLineage's SQL parser) as inputs, the
    partition with its schema as output.
    Assets: every Asset in ``outlets`` gets an event whose ``extra`` holds ``uri``, ``rows``,
    ``sha256``, ``bytes``, ``schema``, ``manifest_uri`` and ``logical_date``.
    """

    template_fields: Sequence[str] = ("sql", "parameters", "target", "parents")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "parameters": "json"}
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        sql: str,
        source_conn_id: str,
        target: str,
        parameters: Mapping[str, Any] | None = None,
        storage_conn_id: str | None = None,
        chunk_size: int = 50_000,
        column_types: Mapping[str, str] | None = None,
        allow_empty: bool = False,
        enforce_schema: bool = True,
        parents: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql = sql
        self.source_conn_id = source_conn_id
        self.target = target
        self.parameters = parameters
        self.storage_conn_id = storage_conn_id
        self.chunk_size = chunk_size
        self.column_types = column_types
        self.allow_empty = allow_empty
        self.enforce_schema = enforce_schema
        self.parents = parents

    def _extract(self, conn: Any, target: Any, recorded: Any) -> Any:
        """Run the query into the target. No rows or a changed schema fail the task without a retry:
        the source answers the same when asked again (wait for late data with a sensor instead)."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.data.extract import stream_query_to_parquet
        from airflow_mlops.exceptions import EmptyResultError, SchemaError

        try:
            return stream_query_to_parquet(
                conn,
                self.sql,
                target,
                parameters=self.parameters,
                chunk_size=self.chunk_size,
                column_types=self.column_types,
                expected_schema=recorded,
                allow_empty=self.allow_empty,
            )
        except (EmptyResultError, SchemaError) as err:
            raise AirflowFailException(str(err)) from err

    def execute(self, context: Context) -> str:
        from airflow.sdk import ObjectStoragePath

        from airflow_mlops.artifacts import MANIFEST_SUFFIX, Artifact, write_atomically
        from airflow_mlops.exceptions import TargetError
        from airflow_mlops.templating import require_rendered

        require_rendered(self, mappings=("parameters",))
        from airflow_mlops.hooks.sql import get_sqlalchemy_engine

        target = ObjectStoragePath(self.target, conn_id=self.storage_conn_id)
        if not target.name.endswith(".parquet"):
            raise TargetError(
                f"target {self.target!r}: must name a .parquet file (rule: one partition, one file)"
            )
        schema_path = target.parent / SCHEMA_FILE
        recorded = _read_json(schema_path) if self.enforce_schema else None

        engine = get_sqlalchemy_engine(self.source_conn_id)
        try:
            with engine.connect() as conn:
                result = self._extract(conn, target, recorded)
        finally:
            engine.dispose()
        # str(ObjectStoragePath) carries the storage conn_id; artifacts record the plain URI.
        result = dataclasses.replace(result, uri=self.target)

        artifact = Artifact(
            uri=result.uri,
            sha256=result.sha256,
            kind="dataset_partition",
            parents=tuple(self.parents or (f"conn://{self.source_conn_id}",)),
            metadata={
                "rows": result.rows,
                "bytes": result.bytes,
                "schema": result.schema,
                "sql": self.sql,
                "parameters": {k: str(v) for k, v in (self.parameters or {}).items()},
                "dag_id": context["dag"].dag_id,
                "run_id": context["run_id"],
            },
        )
        manifest = ObjectStoragePath(result.uri + MANIFEST_SUFFIX, conn_id=self.storage_conn_id)
        write_atomically(manifest, artifact.to_json())
        if self.enforce_schema and recorded is None:
            write_atomically(schema_path, json.dumps(result.schema, indent=2))

        self.log.info("Extracted %s rows to %s (sha256 %s)", result.rows, result.uri, result.sha256[:12])
        self.record_lineage(lambda: self._lineage(result))
        self._emit(context, result, str(manifest))
        return result.uri

    def _lineage(self, result: ExtractResult) -> tuple[list[Any], list[Any]]:
        from airflow.sdk import BaseHook

        from airflow_mlops.lineage import schema_facet, storage_name, table_names

        tables = table_names(BaseHook.get_connection(self.source_conn_id), self.sql)
        columns = {c["name"]: c["type"] for c in result.schema}
        return list(tables), [(*storage_name(result.uri), {"schema": schema_facet(columns)})]

    def _emit(self, context: Context, result: ExtractResult, manifest_uri: str) -> None:
        logical_date = context.get("logical_date")
        extra: dict[str, Any] = {
            "uri": result.uri,
            "rows": result.rows,
            "sha256": result.sha256,
            "bytes": result.bytes,
            "schema": result.schema,
            "manifest_uri": manifest_uri,
            "logical_date": logical_date.isoformat() if logical_date else None,
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra


def _read_json(path: ObjectStoragePath) -> Any:
    if not path.exists():
        return None
    return json.loads(path.read_text())
