"""Feature engineering and the Feast feature store: build feature tables, apply, materialize, build training sets."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_mlops.extras import ExtraMixin
from airflow_mlops.lineage import LineageMixin, split_lineage
from airflow_mlops.xcom import MaterializeResult

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_mlops.hooks.feast import FeastHook

FEATURES_MANIFEST = "manifest.json"


class _FeastOperator(ExtraMixin, BaseOperator):
    """Shared arguments: which feature store (connection, or repository and configuration file)."""

    required_extra: ClassVar[str | None] = "features"

    def __init__(
        self,
        *,
        feast_conn_id: str | None = None,
        repo_path: str | None = None,
        config_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feast_conn_id = feast_conn_id
        self.repo_path = repo_path
        self.config_file = config_file

    @property
    def hook(self) -> FeastHook:
        from airflow_mlops import settings
        from airflow_mlops.hooks.feast import FeastHook

        return FeastHook(
            self.feast_conn_id or settings.feast_conn_id(),
            repo_path=self.repo_path,
            config_file=self.config_file,
        )


class FeastApplyOperator(_FeastOperator):
    """Log what ``feast apply`` would change in the registry, then apply the repository's definitions.

    Idempotent: applying an unchanged repository changes nothing (the logged diff says so).

    :param feast_conn_id: a ``feast`` connection (extra: ``repo_path``, ``config_file``, ``variables``;
        default ``[mlops] feast_conn_id``, else none: the repository's ``feature_store.yaml``).
    :param repo_path: the feature repository (default: the connection's, else ``[mlops] feature_repo``).
    :param config_file: its configuration file (default ``feature_store.yaml``).

    XCom: the registry diff as text.
    """

    ui_color = "#f0e8fd"

    def execute(self, context: Context) -> str:
        diff = self.hook.apply()
        self.log.info("Feast registry changes:\n%s", diff or "(none)")
        return diff


class FeastMaterializeOperator(_FeastOperator):
    """Load feature values stamped in ``[start, end)`` into the online store (incremental over the data interval).

    :param start: window start (templated; default the run's ``data_interval_start``).
    :param end: window end (templated; default the run's ``data_interval_end``).
    :param feature_views: only these views (default: all of the repository's).
    :param feast_conn_id, repo_path, config_file: as for :class:`FeastApplyOperator`.

    XCom: ``{"start": ..., "end": ..., "feature_views": [...]}``.
    """

    template_fields: Sequence[str] = ("start", "end", "feature_views")
    ui_color = "#f0e8fd"

    def __init__(
        self,
        *,
        start: str | datetime | None = None,
        end: str | datetime | None = None,
        feature_views: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start = start
        self.end = end
        self.feature_views = feature_views

    def execute(self, context: Context) -> MaterializeResult:
        start = _timestamp(self.start, "start") if self.start else context["data_interval_start"]
        end = _timestamp(self.end, "end") if self.end else context["data_interval_end"]
        if start is None or end is None:
            from airflow_mlops.exceptions import FeatureStoreError

            raise FeatureStoreError("materialize: give start and end, or run with a data interval")
        self.hook.materialize(start, end, self.feature_views)
        return {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "feature_views": list(self.feature_views or []),
        }


def _timestamp(value: str | datetime, name: str) -> datetime:
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        from airflow_mlops.exceptions import FeatureStoreError

        raise FeatureStoreError(f"materialize: {name} {value!r} is not a timestamp") from None
    return (stamp if stamp.tzinfo else stamp.tz_localize("UTC")).to_pydatetime()


class FeastTrainingDatasetOperator(LineageMixin, _FeastOperator):
    """Join a dataset's entity rows with a feature service, point in time, into a training set.

    Reads every split of a dataset manifest (``MaterializeDatasetOperator``), turns each into entity
    rows (``prepare_entities``, e.g. adding ``event_timestamp`` and derived keys), runs Feast's
    ``get_historical_features`` with the feature service, and writes
    ``<output_uri>/<feature service>/<dataset version>/<split>.parquet`` plus ``manifest.json``
    (the feature service, its feature views and features, rows per split, content hashes, the
    dataset manifest as parent). Rows keep their order and count: a missing feature value is NULL.

    :param dataset_manifest: URI of the dataset's ``manifest.json`` (templated).
    :param feature_service: the Feast feature service, e.g. ``flight_delay_v1`` (templated).
    :param output_uri: root folder of the training sets (templated).
    :param prepare_entities: ``module:function`` turning a split into entity rows.
    :param storage_conn_id: Airflow connection for the object storage.
    :param feast_conn_id, repo_path, config_file: as for :class:`FeastApplyOperator`.

    XCom: the training set manifest's URI.
    OpenLineage: the dataset manifest and the files the feature views read as inputs; the training
    set manifest and its splits (with their schemas) as outputs.
    Assets: every Asset in ``outlets`` gets an event whose ``extra`` holds ``manifest_uri``,
    ``feature_service``, ``feature_views``, ``splits`` (split -> rows), ``dataset_manifest``,
    ``dataset_version`` and ``sha256`` (of the manifest).
    """

    template_fields: Sequence[str] = ("dataset_manifest", "feature_service", "output_uri")
    ui_color = "#f0e8fd"

    def __init__(
        self,
        *,
        dataset_manifest: str,
        feature_service: str,
        output_uri: str,
        prepare_entities: str | None = None,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset_manifest = dataset_manifest
        self.feature_service = feature_service
        self.output_uri = output_uri
        self.prepare_entities = prepare_entities
        self.storage_conn_id = storage_conn_id

    def _path(self, uri: str) -> ObjectStoragePath:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(uri, conn_id=self.storage_conn_id)

    def _source_files(self, hook: FeastHook, service: Any) -> list[str]:
        """The files each file-backed feature view of ``service`` reads now (its source is a glob)."""
        from airflow_mlops.hooks.feast import table_uri

        store, files = hook.get_conn(), []
        for projection in service.feature_view_projections:
            path = getattr(
                getattr(store.get_feature_view(projection.name), "batch_source", None), "path", None
            )
            if path:
                uri = table_uri(path)
                folder, _, pattern = uri.rpartition("/")
                files += sorted(str(p) for p in self._path(folder).glob(pattern)) if "*" in pattern else [uri]
        return files

    def execute(self, context: Context) -> str:
        import json

        from airflow_mlops.artifacts import Artifact, write_atomically, write_parquet_atomically
        from airflow_mlops.data.datasets import content_hash, load_manifest, load_split

        prepare = _import(self.prepare_entities) if self.prepare_entities else None
        hook = self.hook
        service = hook.get_feature_service(self.feature_service)
        dataset = load_manifest(self.dataset_manifest, self._path)
        root = f"{self.output_uri.rstrip('/')}/{service.name}/{dataset.version}"
        splits: dict[str, dict[str, Any]] = {}
        for split in dataset.splits:
            entities = load_split(dataset, split, self._path)
            if prepare is not None:
                entities = prepare(entities)
            joined = _historical_in_order(hook, entities, service.name)
            uri = f"{root}/{split}.parquet"
            sha256 = write_parquet_atomically(self._path(uri), joined)
            splits[split] = {
                "uri": uri,
                "sha256": sha256,
                "rows": len(joined),
                "content_sha256": content_hash(joined),
                "null_fraction": {c: round(float(v), 6) for c, v in joined.isna().mean().items() if v > 0},
            }
            self.log.info(
                "Training set split %s: %d rows, %d columns -> %s", split, len(joined), joined.shape[1], uri
            )

        views = {p.name: [f.name for f in p.features] for p in service.feature_view_projections}
        record = {
            "feature_service": service.name,
            "feature_views": views,
            "splits": splits,
            "dataset_manifest": self.dataset_manifest,
            "dataset_version": dataset.version,
            "label": dataset.definition["label"]["name"],
            "entity_columns": hook.entity_columns(service),
        }
        manifest_uri = f"{root}/{FEATURES_MANIFEST}"
        text = json.dumps(record, indent=2, sort_keys=True)
        sha256 = write_atomically(self._path(manifest_uri), text)
        write_atomically(
            self._path(f"{manifest_uri}.artifact.json"),
            Artifact(
                uri=manifest_uri,
                sha256=sha256,
                kind="training_set",
                parents=(self.dataset_manifest,),
                metadata={"feature_service": service.name, "rows": {k: v["rows"] for k, v in splits.items()}},
            ).to_json(),
        )
        extra: dict[str, Any] = {
            "manifest_uri": manifest_uri,
            "feature_service": service.name,
            "feature_views": sorted(views),
            "splits": {k: v["rows"] for k, v in splits.items()},
            "dataset_manifest": self.dataset_manifest,
            "dataset_version": dataset.version,
            "sha256": sha256,
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        self.record_lineage(
            lambda: split_lineage(
                [self.dataset_manifest, *self._source_files(hook, service)],
                manifest_uri,
                splits,
                self.storage_conn_id,
            )
        )
        return manifest_uri


def _historical_in_order(hook: FeastHook, entities: pd.DataFrame, service: str) -> pd.DataFrame:
    """Feast returns the rows in its own order; a row number carried through puts them back."""
    from airflow_mlops.exceptions import FeatureStoreError

    marker = "__entity_row__"
    joined = hook.get_historical_features(entities.assign(**{marker: range(len(entities))}), service)
    if len(joined) != len(entities) or not joined[marker].is_unique:
        raise FeatureStoreError(
            f"historical features: {len(entities)} entity rows came back as {len(joined)} rows"
        )
    return joined.sort_values(marker).drop(columns=marker).reset_index(drop=True)


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        from airflow_mlops.exceptions import FeatureStoreError

        raise FeatureStoreError(
            f"prepare_entities {path!r}: cannot be imported as 'module:function' ({err})"
        ) from None
