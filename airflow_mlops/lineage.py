"""OpenLineage for the suite's operators, and a walk over the events they produce.

Airflow's OpenLineage provider asks each finished task for ``get_openlineage_facets_on_complete``.
Our operators know what they read and wrote only while they run, so they record it with
:meth:`LineageMixin.record_lineage` in ``execute`` and the mixin hands it over. Names follow
OpenLineage's naming spec where it has one (``file`` + absolute path, ``s3://bucket`` + key,
``postgres://host:port`` + ``database.schema.table``); for what it has none we use:

- a model version: namespace ``mlflow:<registry URI without credentials>``, name ``<model>/<version>``;
- a served endpoint: namespace ``mlops-model-server://<host>:<port>``, name the endpoint.

Nothing here imports OpenLineage at module level: DAG files import the operators, and parse time
stays free of it. With no ``[openlineage] transport`` configured, the provider emits nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

Datasets = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]
PRODUCER = "https://github.com/airflow-mlops/airflow-mlops"
MODEL_FACET = "mlopsModelVersion"
SERVER_NAMESPACE = "mlops-model-server"


def storage_name(uri: str) -> tuple[str, str]:
    """``(namespace, name)`` of a file or object: ``file://`` -> ``("file", path)``, ``s3://b/k`` -> ``("s3://b", "k")``."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return "file", str(Path(parts.path or uri).resolve())
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def public_uri(uri: str) -> str:
    """``uri`` without user name, password or query (what may appear in events, records and UIs)."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def registry_namespace(tracking_uri: str) -> str:
    """``mlflow:<registry URI>``, credentials removed."""
    return f"mlflow:{public_uri(tracking_uri)}"


def model_version_name(model: str, version: str | int) -> str:
    return f"{model}/{version}"


def server_namespace(host: str, port: int | str | None) -> str:
    return f"{SERVER_NAMESPACE}://{host}:{port}" if port else f"{SERVER_NAMESPACE}://{host}"


def endpoint_lineage(hook: Any, endpoint: str, record: Mapping[str, Any]) -> Datasets:
    """A deployment as lineage: the variants' model versions in, the endpoint out.

    ``hook`` is the ``ModelServerHook`` that made it (its connection locates the server); ``record``
    the server's deployment record (variants pinned to versions, and the registry they came from)."""
    conn = hook.get_connection(hook.model_server_conn_id)
    registry = registry_namespace(record.get("registry") or "unknown")
    inputs = [(registry, model_version_name(v["name"], v["version"])) for v in record["variants"].values()]
    return inputs, [(server_namespace(conn.host, conn.port), endpoint)]


def table_names(conn: Any, sql: str) -> list[tuple[str, str]]:
    """``(namespace, name)`` of every table ``sql`` reads, found by OpenLineage's SQL parser.

    ``conn`` is the Airflow connection; its password never reaches the namespace."""
    from openlineage_sql import parse

    kind = conn.conn_type or "sql"
    meta = parse(
        [sql], dialect="postgres" if kind == "postgres" else "sqlite" if kind == "sqlite" else "generic"
    )
    if meta is None:
        return []
    if kind == "postgres":
        namespace = f"postgres://{conn.host}:{conn.port or 5432}"
        return [
            (namespace, f"{t.database or conn.schema or 'postgres'}.{t.schema or 'public'}.{t.name}")
            for t in meta.in_tables
        ]
    return [(f"{kind}://{conn.host or ''}", t.name) for t in meta.in_tables]


def schema_facet(columns: Mapping[str, str]) -> Any:
    """A schema facet from ``{column: type}``."""
    from airflow.providers.common.compat.openlineage.facet import SchemaDatasetFacet, SchemaDatasetFacetFields

    return SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name=n, type=str(t)) for n, t in columns.items()]
    )


def parquet_columns(path: Any) -> dict[str, str]:
    """``{column: Arrow type}`` from a Parquet file's footer (``path``: anything with ``open('rb')``)."""
    import pyarrow.parquet as pq

    with path.open("rb") as handle:
        schema = pq.read_schema(handle)
    return {field.name: str(field.type) for field in schema}


def split_lineage(
    inputs: Sequence[str],
    manifest_uri: str,
    splits: Mapping[str, Mapping[str, Any]],
    conn_id: str | None = None,
) -> Datasets:
    """Inputs by URI; outputs: a manifest and its splits (``{split: {"uri": ...}}``, as the operators
    write them: absolute URIs), each split with its schema."""
    from airflow.sdk import ObjectStoragePath

    outputs: list[tuple[Any, ...]] = [storage_name(manifest_uri)]
    for split in splits.values():
        columns = parquet_columns(ObjectStoragePath(split["uri"], conn_id=conn_id))
        outputs.append((*storage_name(split["uri"]), {"schema": schema_facet(columns)}))
    return [storage_name(uri) for uri in inputs], outputs


def data_quality_facets(report: Mapping[str, Any]) -> dict[str, Any]:
    """A validation report as OpenLineage's data-quality facets: the column metrics of its profile
    (an input facet) and one assertion per expectation (a dataset facet)."""
    from openlineage.client.generated.data_quality_assertions_dataset import (
        Assertion,
        DataQualityAssertionsDatasetFacet,
    )
    from openlineage.client.generated.data_quality_metrics_input_dataset import (
        ColumnMetrics,
        DataQualityMetricsInputDatasetFacet,
    )

    metrics = {}
    for column, stats in ((report.get("profile") or {}).get("columns") or {}).items():
        percentiles = stats.get("percentiles") or []
        quantiles = (
            {str(q): float(percentiles[round(q * (len(percentiles) - 1))]) for q in (0.25, 0.5, 0.75)}
            if percentiles
            else {}
        )
        metrics[column] = ColumnMetrics(
            nullCount=stats.get("nulls"),
            count=stats.get("count"),
            distinctCount=stats.get("distinct"),
            min=stats.get("min"),
            max=stats.get("max"),
            quantiles=quantiles,
        )
    assertions = [
        Assertion(
            assertion=o["expectation"],
            success=bool(o["success"]),
            column=o.get("column"),
            expected=o.get("rule"),
            actual=None if o.get("unexpected_count") is None else f"{o['unexpected_count']} unexpected",
        )
        for o in report.get("outcomes", [])
    ]
    return {
        "input": {
            "dataQualityMetrics": DataQualityMetricsInputDatasetFacet(
                columnMetrics=metrics, rowCount=report.get("rows")
            )
        },
        "dataset": {"dataQualityAssertions": DataQualityAssertionsDatasetFacet(assertions=assertions)},
    }


@functools.cache
def _model_facet_class() -> type:
    import attr
    from openlineage.client.generated.base import DatasetFacet

    @attr.define
    class MLOpsModelVersionDatasetFacet(DatasetFacet):
        """A model version in the registry: its state, held-out metrics, MLflow run and training set."""

        name: str
        version: str
        state: str
        metrics: dict[str, Any]
        mlflowRunId: str
        trainingSet: str
        modelUri: str

        @staticmethod
        def _get_schema() -> str:
            return f"{PRODUCER}/blob/main/docs/lineage.md#model-version-facet"

    return MLOpsModelVersionDatasetFacet


def model_facet(
    name: str,
    version: str,
    *,
    state: str,
    metrics: Mapping[str, Any],
    mlflow_run_id: str,
    training_set: str,
    model_uri: str,
) -> Any:
    """A model version as a dataset facet (OpenLineage has no standard one for models)."""
    return _model_facet_class()(
        name=name,
        version=str(version),
        state=state,
        metrics=dict(metrics),
        mlflowRunId=mlflow_run_id,
        trainingSet=training_set,
        modelUri=model_uri,
    )


class LineageMixin:
    """Hands what ``execute`` read and wrote to Airflow's OpenLineage provider.

    ``execute`` calls ``record_lineage(describe)`` with a function returning ``(inputs, outputs)``:
    ``(namespace, name)`` pairs or ``(namespace, name, facets)`` triples (an input's facets may hold
    ``{"input": {...}, "dataset": {...}}``). It runs only when the provider asks, after the task,
    so with OpenLineage off nothing is computed, and a failure there is the provider's to log:
    lineage never fails a task."""

    _describe_lineage: Callable[[], Datasets] | None = None

    def record_lineage(self, describe: Callable[[], Datasets]) -> None:
        self._describe_lineage = describe

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        from airflow.providers.common.compat.openlineage.facet import InputDataset, OutputDataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        if self._describe_lineage is None:
            return None
        inputs, outputs = self._describe_lineage()

        def facets(item: tuple[Any, ...]) -> dict[str, Any]:
            return dict(item[2]) if len(item) > 2 and item[2] else {}

        return OperatorLineage(
            inputs=[
                InputDataset(
                    namespace=i[0],
                    name=i[1],
                    facets=facets(i).get("dataset", {}),
                    inputFacets=facets(i).get("input", {}),
                )
                for i in inputs
            ],
            outputs=[OutputDataset(namespace=o[0], name=o[1], facets=facets(o)) for o in outputs],
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage | None:
        """A failed task's lineage: what it had recorded (a quarantined partition, say)."""
        return self.get_openlineage_facets_on_complete(task_instance)


# Reading the events back ----------------------------------------------------------------------


def read_events(path: Any) -> list[dict[str, Any]]:
    """The run events of a file transport: one JSON document per line (``append: true``), or a
    folder of one-event files (``append: false``, what the transport writes to an object store).
    ``path``: a local path, or a path object of an object store (``ObjectStoragePath``)."""
    path = Path(path) if isinstance(path, str) else path
    files = sorted((p for p in path.iterdir() if p.is_file()), key=str) if path.is_dir() else [path]
    events = []
    for file in files:
        for line in file.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
    return events


def print_walk(steps: Sequence[Mapping[str, Any]]) -> None:
    """The walk as an indented tree: each dataset with the task that wrote it (or ``source``)."""
    for step in steps:
        namespace, name = step["dataset"]
        where = name if namespace == "file" else f"{namespace} {name}"
        print(f"{'  ' * step['depth']}{where}  <- {step['job'] or 'source (no task wrote it)'}")


def walk_back(events: Sequence[Mapping[str, Any]], namespace: str, name: str) -> list[dict[str, Any]]:
    """Every step from a dataset back to its sources, depth first, from COMPLETE events alone.

    A dataset's producer is the latest completed job that wrote it before its consumer finished (a
    served endpoint: the latest deployment). Each step is ``{"dataset", "job", "inputs",
    "depth"}``; a dataset nobody wrote (an external source) is a step with ``job`` None."""
    complete = sorted((e for e in events if e.get("eventType") == "COMPLETE"), key=lambda e: e["eventTime"])
    steps: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    frontier: list[tuple[tuple[str, str], str | None, int]] = [((namespace, name), None, 0)]
    while frontier:
        dataset, before, depth = frontier.pop()  # depth first: each input's ancestry before the next input
        if dataset in seen:
            continue
        seen.add(dataset)
        producer = None
        for event in complete:
            if before is not None and event["eventTime"] > before:
                break
            if any((o["namespace"], o["name"]) == dataset for o in event.get("outputs", [])):
                producer = event
        inputs = [(i["namespace"], i["name"]) for i in producer.get("inputs", [])] if producer else []
        steps.append(
            {
                "dataset": dataset,
                "job": producer["job"]["name"] if producer else None,
                "inputs": inputs,
                "depth": depth,
                "event": producer,
            }
        )
        frontier += [(i, producer["eventTime"], depth + 1) for i in reversed(inputs)] if producer else []
    return steps
