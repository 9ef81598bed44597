"""Thin wrapper around ``feast.FeatureStore``, built from a repository path or an Airflow connection."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

from airflow_mlops.exceptions import FeatureStoreError
from airflow_mlops.storage import S3_SCHEMES

#: The scheme the hook gives S3 feature tables (s3fs's other name for S3): DuckDB sends it to the
#: filesystem the hook registers, while it keeps ``s3://`` for its own httpfs extension.
DUCKDB_S3 = "s3a://"


def table_uri(path: str) -> str:
    """A feature source's path as the rest of the suite names it (``s3://`` for the hook's ``s3a://``)."""
    return "s3://" + path.removeprefix(DUCKDB_S3) if path.startswith(DUCKDB_S3) else path


if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureService, FeatureStore
    from feast.repo_contents import RepoContents


class FeastHook(BaseHook):
    """A Feast feature store: its repository, configuration file and the variables that file uses.

    The repository's ``feature_store.yaml`` and definitions may refer to ``${MLOPS_FEAST_DIR}`` (registry
    and SQLite online store), ``${MLOPS_FEATURES_URI}`` (the feature tables) and ``${MLOPS_LAKE_URI}``
    (the lake's root, for sources elsewhere in it); the hook sets them in its process from the
    ``[mlops]`` configuration unless the connection or the caller gives them.

    :param feast_conn_id: a ``feast`` connection; its extra may hold ``repo_path``, ``config_file``
        (a YAML file in the repository, e.g. ``feature_store.redis.yaml``) and ``variables``.
    :param repo_path: the repository (default: the connection's, else ``[mlops] feature_repo``).
    :param config_file: the configuration file name in the repository (default ``feature_store.yaml``).
    :param variables: extra environment variables for the configuration and the definitions.
    :param storage_conn_id: the ``aws`` connection of the object store holding the feature tables
        when ``${MLOPS_FEATURES_URI}`` is an ``s3://`` URI (default ``[mlops] lake_conn_id``). Feast's
        DuckDB offline store then reads them through that connection: the hook registers the
        connection's s3fs filesystem with Feast's DuckDB connection and hands the repository the
        tables' URI as ``s3a://bucket/...`` (s3fs's other name for S3), which DuckDB routes to that
        filesystem. DuckDB's own ``s3://`` would need its ``httpfs`` extension, downloaded at run
        time (not on an offline worker), and credentials of its own.
    """

    conn_name_attr = "feast_conn_id"
    default_conn_name = "feast_default"
    conn_type = "feast"
    hook_name = "Feast"

    def __init__(
        self,
        feast_conn_id: str | None = None,
        *,
        repo_path: str | None = None,
        config_file: str | None = None,
        variables: Mapping[str, str] | None = None,
        storage_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.storage_conn_id = storage_conn_id
        self.feast_conn_id = feast_conn_id
        self.repo_path = repo_path
        self.config_file = config_file
        self.variables = dict(variables or {})
        self._store: FeatureStore | None = None
        self._object_store: Any = None  # the feature tables' filesystem, when they are in S3
        self._services: dict[str, FeatureService] = {}

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["host", "schema", "login", "password", "port"],
            "placeholders": {
                "extra": '{"repo_path": "/srv/feature_repo", "config_file": "feature_store.yaml", '
                '"variables": {"MLOPS_REDIS": "redis:6379"}}'
            },
        }

    def _settings(self) -> tuple[Path, str, dict[str, str]]:
        from airflow_mlops import settings

        extra: dict[str, Any] = {}
        if self.feast_conn_id:
            extra = self.get_connection(self.feast_conn_id).extra_dejson
        repo = Path(self.repo_path or extra.get("repo_path") or settings.feature_repo())
        config_file = self.config_file or extra.get("config_file") or "feature_store.yaml"
        variables = {
            "MLOPS_FEAST_DIR": settings.feast_dir(),
            "MLOPS_FEATURES_URI": settings.features_uri(),
            "MLOPS_LAKE_URI": settings.lake_uri(),  # a repository's sources anywhere in the lake
            **extra.get("variables", {}),
            **self.variables,
        }
        if not (repo / config_file).is_file():
            raise FeatureStoreError(f"feature repository {repo}: no configuration file {config_file!r}")
        return repo, config_file, variables

    def get_conn(self) -> FeatureStore:
        """The ``FeatureStore`` (created once per hook; Feast caches its registry inside it)."""
        if self._store is None:
            from feast import FeatureStore

            repo, config_file, variables = self._settings()
            features = variables["MLOPS_FEATURES_URI"]
            remote = features.startswith(S3_SCHEMES)
            if remote:
                variables["MLOPS_FEATURES_URI"] = DUCKDB_S3 + features.split("://", 1)[1]
            os.environ.update(variables)  # feature_store.yaml and the definitions read them
            Path(variables["MLOPS_FEAST_DIR"]).mkdir(parents=True, exist_ok=True)
            self.log.debug("Opening the Feast repository %s (%s)", repo, config_file)
            store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / config_file)
            if remote:
                self._object_store = self._register_object_store(features, store)
            self._store = store
        return self._store

    def _register_object_store(self, features: str, store: FeatureStore) -> Any:
        """The feature tables' s3fs filesystem (from the storage connection), registered with the
        DuckDB connection Feast's DuckDB offline store reads through (``ibis``'s default backend);
        a filesystem registered before (another hook in this process) is replaced."""
        from airflow.sdk import ObjectStoragePath

        from airflow_mlops import settings

        conn_id = self.storage_conn_id or settings.lake_conn_id()
        filesystem = ObjectStoragePath(features, conn_id=conn_id).fs
        if store.config.offline_store.type == "duckdb":
            import ibis

            duckdb = ibis.get_backend().con
            name = filesystem.protocol if isinstance(filesystem.protocol, str) else filesystem.protocol[0]
            if name in duckdb.list_filesystems():
                duckdb.unregister_filesystem(name)
            duckdb.register_filesystem(filesystem)
        return filesystem

    def parse_repo(self) -> RepoContents:
        """The objects the repository's Python files declare.

        Feast imports the definition files as modules named from the working directory, as
        ``feast apply`` run inside the repository does; the hook does the same and then restores
        the working directory, ``sys.path`` and ``sys.modules`` (so a second parse sees edits and
        the current variables).
        """
        import sys

        from feast import Project
        from feast.repo_operations import get_repo_files, parse_repo

        store = self.get_conn()
        repo = Path(store.repo_path).resolve()
        modules = [
            str(f.relative_to(repo).with_suffix("")).replace(os.sep, ".") for f in get_repo_files(repo)
        ]
        previous = os.getcwd()
        sys.path.insert(0, str(repo))
        try:
            os.chdir(repo)
            for name in modules:
                sys.modules.pop(name, None)
            contents = parse_repo(repo)
            if not contents.projects:  # as `feast apply` does: the project of feature_store.yaml
                contents.projects.append(
                    Project(name=store.project, description=store.config.project_description or "")
                )
            return contents
        finally:
            os.chdir(previous)
            sys.path.remove(str(repo))
            for name in modules:
                sys.modules.pop(name, None)

    def plan(self) -> str:
        """What ``apply`` would change in the registry, as Feast prints it (without colours)."""
        registry_diff, _, _ = self.get_conn().plan(self.parse_repo())
        return _plain_text(str(registry_diff.to_string()))

    def _check_sources(self, contents: RepoContents) -> None:
        """Every file source, local or in the feature tables' object store, must match a file: a view
        over nothing would serve only NULLs."""
        import glob

        from feast import FileSource

        for view in contents.feature_views:
            source = view.batch_source
            if not isinstance(source, FileSource):
                continue
            if "://" not in source.path:
                found = glob.glob(source.path)
            elif self._object_store is not None and source.path.startswith((DUCKDB_S3, *S3_SCHEMES)):
                found = self._object_store.glob(source.path.split("://", 1)[1])
            else:
                continue  # another store: Feast reads it with its own credentials
            if not found:
                raise FeatureStoreError(
                    f"feature view {view.name!r}: its source {source.path} matches no file "
                    "(rule: build the feature tables before applying)"
                )

    def apply(self) -> str:
        """Register the repository's definitions (removed ones are deleted); returns the registry diff."""
        from feast.repo_operations import extract_objects_for_apply_delete

        store = self.get_conn()
        contents = self.parse_repo()
        self._check_sources(contents)
        diff = _plain_text(str(store.plan(contents)[0].to_string()))
        to_apply, to_delete, _, _ = extract_objects_for_apply_delete(store.project, store.registry, contents)
        store.apply(to_apply, objects_to_delete=to_delete, partial=False)
        return diff

    def get_feature_service(self, name: str) -> FeatureService:
        """A registered feature service (looked up once per hook: online requests reuse it)."""
        from feast.errors import FeatureServiceNotFoundException

        if name in self._services:
            return self._services[name]
        try:
            service = self._services[name] = self.get_conn().get_feature_service(name)
            return service
        except FeatureServiceNotFoundException:
            known = [s.name for s in self.get_conn().list_feature_services()]
            raise FeatureStoreError(
                f"feature service {name!r}: not in the registry (registered: {known}); "
                "has the repository been applied?"
            ) from None

    def materialize(self, start: datetime, end: datetime, feature_views: Sequence[str] | None = None) -> None:
        """Load the feature values stamped in ``[start, end)`` into the online store."""
        if end <= start:
            raise FeatureStoreError(f"materialize: end {end} must be after start {start}")
        self.log.info("Materializing %s from %s to %s", list(feature_views or ["all views"]), start, end)
        self.get_conn().materialize(
            start_date=start, end_date=end, feature_views=list(feature_views) if feature_views else None
        )

    def get_historical_features(self, entity_df: pd.DataFrame, feature_service: str) -> pd.DataFrame:
        """Point-in-time join of ``entity_df`` (entity keys + ``event_timestamp``) with a feature service."""
        if "event_timestamp" not in entity_df.columns:
            raise FeatureStoreError(
                f"entity rows: no 'event_timestamp' column (columns: {list(entity_df.columns)}); "
                "a point-in-time join needs the time each row's prediction is made"
            )
        service = self.get_feature_service(feature_service)
        missing = sorted(set(self.entity_columns(service)) - set(entity_df.columns))
        if missing:
            raise FeatureStoreError(
                f"entity rows: columns {missing} needed by feature service {feature_service!r} "
                f"are missing (columns: {list(entity_df.columns)})"
            )
        job = self.get_conn().get_historical_features(entity_df=entity_df, features=service)
        return job.to_df()

    def get_online_features(
        self, feature_service: FeatureService | str, entity_rows: Sequence[Mapping[str, Any]]
    ) -> dict[str, list[Any]]:
        """Latest materialized values for each entity row; a key never materialized gives ``None`` values."""
        service = (
            self.get_feature_service(feature_service) if isinstance(feature_service, str) else feature_service
        )
        return (
            self.get_conn()
            .get_online_features(features=service, entity_rows=[dict(r) for r in entity_rows])
            .to_dict()
        )

    def entity_columns(self, service: FeatureService) -> list[str]:
        """The join keys a feature service needs."""
        store = self.get_conn()
        keys: list[str] = []
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            for column in view.entity_columns:
                if column.name not in keys:
                    keys.append(column.name)
        return keys


def _plain_text(text: str) -> str:
    """Feast colours its diffs for terminals; task logs want plain text."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
