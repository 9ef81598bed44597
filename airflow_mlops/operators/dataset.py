"""Materialize a versioned dataset (splits + manifest) from its definition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlops.data.datasets import DatasetDefinition
from airflow_mlops.lineage import LineageMixin, split_lineage

if TYPE_CHECKING:
    from airflow.sdk import Context


class MaterializeDatasetOperator(LineageMixin, BaseOperator):
    """Build a dataset's splits from its validated source partitions and write its manifest.

    The definition (a YAML file or a ``DatasetDefinition``) names the source partitions, filters,
    label and split rule. Only partitions whose manifest records their exact bytes are read. The
    output goes to ``<output_uri>/<name>/<version>/`` (one Parquet file per split, a ``profile.json``
    of the first split, ``manifest.json``); the version hashes the definition and the sources'
    content, so re-running with the same inputs rewrites the same version.

    :param definition: path of a dataset YAML file (templated) or a ``DatasetDefinition``.
    :param output_uri: root folder of the datasets, ``file://`` or ``s3://`` (templated).
    :param periods: the source partitions to read, e.g. ``["2013-01", "2013-02"]`` (templated);
        default: the definition's own ``periods``.
    :param variables: values for the source URI template's placeholders, e.g. ``{"lake": ...}``
        (templated).
    :param code_version: recorded in the manifest (templated), e.g. a git commit; the package
        version is always recorded.
    :param storage_conn_id: Airflow connection for the object storage.

    XCom: the manifest's URI (``return_value``).
    OpenLineage: the source partitions as inputs; the manifest and each split (with its schema) as outputs.
    Assets: every Asset in ``outlets`` gets an event whose ``extra`` holds ``name``, ``version``,
    ``manifest_uri``, ``profile_uri``, ``splits`` (split -> rows), ``rows_read`` and ``rows_filtered``.
    """

    template_fields: Sequence[str] = ("definition", "output_uri", "periods", "variables", "code_version")
    template_fields_renderers = {"variables": "json", "periods": "json"}
    ui_color = "#eef8e8"

    def __init__(
        self,
        *,
        definition: str | DatasetDefinition,
        output_uri: str,
        periods: Sequence[str] | None = None,
        variables: Mapping[str, str] | None = None,
        code_version: str = "",
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.definition = definition
        self.output_uri = output_uri
        self.periods = periods
        self.variables = variables
        self.code_version = code_version
        self.storage_conn_id = storage_conn_id

    def execute(self, context: Context) -> str:
        from airflow.sdk import ObjectStoragePath

        from airflow_mlops import __version__
        from airflow_mlops.data.datasets import materialize_dataset
        from airflow_mlops.templating import require_rendered

        require_rendered(self, mappings=("variables",), lists=("periods",))

        definition = (
            self.definition
            if isinstance(self.definition, DatasetDefinition)
            else DatasetDefinition.from_yaml(self.definition)
        )
        manifest = materialize_dataset(
            definition,
            output_uri=self.output_uri,
            open_path=lambda uri: ObjectStoragePath(uri, conn_id=self.storage_conn_id),
            periods=self.periods,
            variables=self.variables,
            code_version=" ".join(filter(None, (f"airflow-mlops=={__version__}", self.code_version))),
        )
        splits = {name: split["rows"] for name, split in manifest.splits.items()}
        self.log.info(
            "Dataset %s version %s: %s rows read, splits %s, filtered out %s",
            manifest.name,
            manifest.version,
            manifest.rows_read,
            splits,
            manifest.rows_filtered,
        )
        extra: dict[str, Any] = {
            "name": manifest.name,
            "version": manifest.version,
            "manifest_uri": manifest.uri,
            "profile_uri": manifest.profile_uri,
            "splits": splits,
            "rows_read": manifest.rows_read,
            "rows_filtered": manifest.rows_filtered,
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        sources = [source["uri"] for source in manifest.sources]
        self.record_lineage(
            lambda: split_lineage(sources, manifest.uri, manifest.splits, self.storage_conn_id)
        )
        return manifest.uri
