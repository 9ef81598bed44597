"""Models as the server holds them: a registry version loaded safely, checked against its signature.

No Airflow import. A version is downloaded once from the MLflow registry into the server's cache
(``<cache>/<name>/<version>``) and loaded with ``evaluation.scoring.load_scorer``: a model package
of this suite (weights with ``weights_only=True``, preprocessing from ``config.json``) or any
MLflow pyfunc model with a signature. Rows arriving over HTTP are checked against the model's
**signature** before anything runs: a missing field, or a value that is not of the column's type,
is a ``RowError`` naming the row, the field and the reason (the server answers 422). Fields the
signature does not name are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from airflow_mlops.exceptions import RowError

#: What a JSON value must be for each MLflow column type, and how a 422 says it.
_NUMBER = "must be a finite number or null"
_INTEGER = "must be an integer or null"
_STRING = "must be a string or null"
_BOOLEAN = "must be true, false or null"


def check_value(kind: str, value: Any) -> str | None:
    """None when ``value`` (from JSON) fits an input column of MLflow type ``kind``, else the rule it breaks."""
    if value is None:
        return None
    if kind in ("double", "float", "long", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isinf(value):
            return _NUMBER
        if kind in ("long", "integer") and not float(value).is_integer():
            return _INTEGER
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else _BOOLEAN
    return None if isinstance(value, str) else _STRING


@dataclass
class ServedModel:
    """One loaded registry version: ``frame(rows)`` checks the rows against its signature,
    ``predict`` returns the task's predictions, ``answers`` them as JSON objects (see ``models.package``)."""

    name: str
    version: str
    folder: Path
    scorer: Any  # an evaluation.scoring.Predictor

    @classmethod
    def load(cls, name: str, version: str, tracking_uri: str | None, cache: Path) -> ServedModel:
        from airflow_mlops.evaluation.scoring import load_scorer
        from airflow_mlops.registry.versions import model_folder

        target = cache / name / str(version)
        try:  # already downloaded by an earlier start of the server
            folder = model_folder(str(target))
        except FileNotFoundError:
            target.mkdir(parents=True, exist_ok=True)
            folder = model_folder(f"models:/{name}/{version}", tracking_uri, dst=target)
        return cls(name, str(version), folder, load_scorer(folder))

    @property
    def task(self) -> str:
        return str(self.scorer.task)

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The signature's input columns: ``{"name", "type", "required"}``."""
        return list(self.scorer.signature["inputs"])

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(column["name"] for column in self.inputs)

    def frame(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """The rows as a DataFrame of the model's features, after checking every field against the
        signature (every input is a field of the row; null where the value is missing)."""
        import pandas as pd

        inputs = [(column["name"], column["type"]) for column in self.inputs]
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RowError(
                    ["body", "rows", i], f"a row must be an object of features, got {type(row).__name__}", row
                )
            for column, kind in inputs:
                if column not in row:
                    raise RowError(["body", "rows", i, column], "field required")
                broken = check_value(kind, row[column])
                if broken:
                    raise RowError(["body", "rows", i, column], broken, row[column])
        return pd.DataFrame.from_records(rows, columns=list(self.features))

    def predict(self, frame: Any) -> np.ndarray:
        return np.asarray(self.scorer(frame))

    def answers(self, predictions: np.ndarray) -> list[dict[str, Any]]:
        """The predictions as the API returns them, one object per row."""
        from airflow_mlops.models.package import prediction_records

        return prediction_records(self.task, predictions, self.scorer.classes)


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
