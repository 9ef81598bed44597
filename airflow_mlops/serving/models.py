"""Models as the server holds them: a registry version loaded safely, with its own preprocessing.

No Airflow import. A version is downloaded once from the MLflow registry into the server's cache
(``<cache>/<name>/<version>``) and loaded with ``Scorer`` (weights with ``weights_only=True``,
preprocessing statistics from ``config.json``). Rows arriving over HTTP are checked against the
model's features before anything runs: a missing or mistyped field is a ``RowError`` naming the
row, the field and the reason (the server answers 422).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from airflow_mlops.exceptions import RowError


@dataclass
class ServedModel:
    """One loaded registry version: ``frame(rows)`` checks the rows against its inputs, ``predict``
    returns the task's predictions, ``answers`` them as JSON objects (see ``models.package``)."""

    name: str
    version: str
    folder: Path
    scorer: Any
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    task: str = "binary"

    @classmethod
    def load(cls, name: str, version: str, tracking_uri: str | None, cache: Path) -> ServedModel:
        from airflow_mlops.evaluation.scoring import Scorer
        from airflow_mlops.registry.versions import model_folder

        target = cache / name / str(version)
        try:  # already downloaded by an earlier start of the server
            folder = model_folder(str(target))
        except FileNotFoundError:
            target.mkdir(parents=True, exist_ok=True)
            folder = model_folder(f"models:/{name}/{version}", tracking_uri, dst=target)
        scorer = Scorer(folder)
        preprocessing = scorer.config["preprocessing"]
        return cls(
            name,
            str(version),
            folder,
            scorer,
            tuple(preprocessing["numeric"]),
            tuple(preprocessing["categorical"]),
            scorer.task,
        )

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def frame(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """The rows as a DataFrame of the model's features, after checking every field."""
        import pandas as pd

        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RowError(
                    ["body", "rows", i], f"a row must be an object of features, got {type(row).__name__}", row
                )
            for column in self.numeric:
                if column not in row:
                    raise RowError(["body", "rows", i, column], "field required")
                value = row[column]
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or math.isinf(value)
                ):
                    raise RowError(["body", "rows", i, column], "must be a finite number or null", value)
            for column in self.categorical:
                if column not in row:
                    raise RowError(["body", "rows", i, column], "field required")
                if row[column] is not None and not isinstance(row[column], str):
                    raise RowError(["body", "rows", i, column], "must be a string or null", row[column])
        return pd.DataFrame.from_records(rows, columns=list(self.features))

    def predict(self, frame: Any) -> np.ndarray:
        return self.scorer(frame)

    def answers(self, predictions: np.ndarray) -> list[dict[str, Any]]:
        """The predictions as the API returns them, one object per row."""
        from airflow_mlops.models.package import prediction_records

        return prediction_records(self.task, predictions, self.scorer.config["preprocessing"])


def json_rows(frame: Any, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready objects for a predict request (NaN and NA become null,
    timestamps ISO 8601 strings)."""
    import pandas as pd

    selected = frame[list(columns)] if columns is not None else frame
    records = selected.astype(object).where(pd.notna(selected), None).to_dict(orient="records")
    return [{k: _plain(v) for k, v in row.items()} for row in records]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
