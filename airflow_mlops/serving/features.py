"""Online features for requests that give entity keys (no Airflow import).

An endpoint deployed with a ``feature_service`` takes rows holding the service's join keys (for
flights: origin, carrier, tailnum, route) and the request-time fields (distance, scheduled
times...). The server fetches the latest materialized values of the service's features from the
Feast online store and completes each row with them; a field the request gives itself is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_mlops.exceptions import MLOpsConfigError

from .models import RowError


class OnlineFeatures:
    """A Feast repository's online store, opened once per server process."""

    def __init__(self, repo_path: str | Path, config_file: str = "feature_store.yaml") -> None:
        from feast import FeatureStore

        repo = Path(repo_path)
        if not (repo / config_file).is_file():
            raise MLOpsConfigError(f"feature repository {repo}: no configuration file {config_file!r}")
        self.store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / config_file)
        self._keys: dict[str, tuple[Any, list[str]]] = {}
        self._lock = threading.Lock()  # Feast's registry cache is not meant for concurrent refreshes

    def service(self, name: str) -> tuple[Any, list[str]]:
        """The feature service and the join keys its views need (cached)."""
        with self._lock:
            if name not in self._keys:
                try:
                    service = self.store.get_feature_service(name)
                except Exception as err:  # Feast raises its own FeatureServiceNotFoundException
                    raise MLOpsConfigError(
                        f"feature service {name!r} is not in the repository: {err}"
                    ) from err
                keys: list[str] = []
                for projection in service.feature_view_projections:
                    for column in self.store.get_feature_view(projection.name).entity_columns:
                        if column.name not in keys:
                            keys.append(column.name)
                self._keys[name] = (service, keys)
            return self._keys[name]

    def complete(self, service_name: str, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Each row with the service's online features added (the row's own fields win)."""
        service, keys = self.service(service_name)
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RowError(["body", "rows", i], f"a row must be an object, got {type(row).__name__}", row)
            for key in keys:
                if row.get(key) is None:
                    raise RowError(
                        ["body", "rows", i, key],
                        f"field required: a join key of feature service {service_name!r}",
                    )
        with self._lock:
            online = self.store.get_online_features(
                features=service, entity_rows=[{k: row[k] for k in keys} for row in rows]
            ).to_dict()
        features = [c for c in online if c not in keys]
        return [{**{c: online[c][i] for c in features}, **row} for i, row in enumerate(rows)]
