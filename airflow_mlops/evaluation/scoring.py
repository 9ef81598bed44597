"""Scoring a model over a DataFrame of raw feature rows, whatever kind of model it is (no Airflow import).

Everything that runs a model (evaluation, the gate's champion, the model server, batch
prediction, the monitors, explanations) loads it with :func:`load_scorer`, which reads one of two
kinds of folder and returns a :class:`Predictor`:

- **a model package** of this suite (:mod:`airflow_mlops.models.package`): ``model.pt`` (a state
  dict, loaded with ``weights_only=True``) and ``config.json`` (the network's class and
  arguments, the task, the preprocessing learnt in training). Rows go through the same
  preprocessing as in training (:func:`airflow_mlops.training.tabular.transform`), the network,
  then the task's link: :class:`Scorer`.
- **any MLflow model with a** ``python_function`` **flavor and a column signature** (a
  scikit-learn pipeline logged with ``mlflow.sklearn.log_model``, say): :class:`PyfuncScorer`.
  Its task comes from the model's metadata (``mlops_task``; ``mlops_classes`` for multiclass),
  see :func:`airflow_mlops.models.package.pyfunc_contract`. Loading it runs the flavor's loader
  (for scikit-learn, unpickling): load such models only from a registry you trust.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from airflow_mlops.exceptions import MLOpsConfigError, SpecError
from airflow_mlops.storage import local_path


class Predictor(Protocol):
    """What every consumer needs from a loaded model, whatever its kind.

    ``scorer(frame)`` returns the task's predictions for raw feature rows: P(1) per row (binary),
    rows x classes probabilities (multiclass, columns in ``classes`` order) or values (regression).
    """

    task: str
    #: The classes of a multiclass model, in the order of its probability columns; empty otherwise.
    classes: list[Any]
    #: The label column the model was trained on, when the model says (else None).
    label: str | None
    #: ``{"inputs": [{"name", "type", "required"}], "outputs": [...]}`` with MLflow's column types.
    signature: dict[str, list[dict[str, Any]]]

    def __call__(self, frame: Any) -> np.ndarray: ...

    def baseline(self) -> dict[str, Any]:
        """A typical row: what an explanation measures each feature's effect against."""
        ...


def features(predictor: Predictor) -> list[str]:
    """The input columns a model reads, in its signature's order."""
    return [column["name"] for column in predictor.signature["inputs"]]


def read_rows(path: Any) -> Any:
    """A Parquet file as a DataFrame whose string columns are categorical (read as Arrow
    dictionaries): preprocessing then maps each column's few distinct values to vocabulary codes
    instead of hashing every row's string, which makes batch scoring about twice as fast.
    ``path``: a local path or ``file://`` URI, or an object store path (``ObjectStoragePath``,
    ``UPath``), read through its filesystem without a local copy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def strings(schema: Any) -> list[str]:
        return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]

    if isinstance(path, str | Path):
        local = str(local_path(path, "rows"))
        return pq.read_table(local, read_dictionary=strings(pq.read_schema(local))).to_pandas()
    with path.open("rb") as handle:
        dictionaries = strings(pq.read_schema(handle))
        handle.seek(0)
        return pq.read_table(handle, read_dictionary=dictionaries).to_pandas()


class Scorer:
    """A model package of this suite and its preprocessing; ``scorer(frame)`` gives the task's
    predictions, chunk by chunk (a :class:`Predictor`)."""

    def __init__(
        self, model_dir: str | Path, chunk_rows: int = 65536, trusted_modules: Sequence[str] | None = None
    ) -> None:
        from airflow_mlops.training.tabular import load_model

        if chunk_rows < 1:
            raise MLOpsConfigError(f"chunk_rows must be positive, got {chunk_rows!r}")
        self.model, self.config = load_model(model_dir, trusted_modules)
        self.task: str = self.config["task"]
        preprocessing = self.config["preprocessing"]
        self.classes: list[Any] = list(preprocessing.get("classes", ()))
        self.label: str | None = preprocessing.get("label")
        self.signature: dict[str, list[dict[str, Any]]] = self.config["signature"]
        self.chunk_rows = chunk_rows
        self._local = threading.local()  # each thread's chunk buffers, kept between calls
        self._positions: dict[str, dict[str, int]] | None = None  # for score_records, made once

    def baseline(self) -> dict[str, Any]:
        """The training split's mean of every numeric feature and an unseen category (None) for
        every categorical one: the reference the model itself falls back to for a missing value."""
        preprocessing = self.config["preprocessing"]
        row: dict[str, Any] = {c: stats["mean"] for c, stats in preprocessing["numeric"].items()}
        return row | {c: None for c in preprocessing["categorical"]}

    def inputs(self, frame: Any) -> dict[str, Any]:
        """The model's named input tensors for raw rows (the stored preprocessing)."""
        from airflow_mlops.training.tabular import transform

        return transform(frame, self.config["preprocessing"])

    def __call__(self, frame: Any) -> np.ndarray:
        """Predictions for every row: probabilities (binary: one per row; multiclass: rows x
        classes) or values (regression). Rows are preprocessed and run through the network in
        chunks of ``chunk_rows`` (``training.tabular.transform_chunks``): a chunk's inputs and the
        layers' activations stay in the CPU caches; each calling thread keeps its two chunk buffers
        between calls. Preprocessing a chunk in a thread while the previous one runs through the
        network was slower: torch already keeps every core busy."""
        from airflow_mlops.training.tabular import feature_columns

        return self._run(feature_columns(frame, self.config["preprocessing"]), len(frame))

    def score_records(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``scorer(DataFrame.from_records(rows))`` for rows given as mappings (a request's JSON
        rows), without the DataFrame where every column is plain (``training.tabular.record_columns``):
        the same predictions, bit for bit, at a fraction of the cost for a few rows."""
        from airflow_mlops.training.tabular import record_columns, vocabulary_positions

        if self._positions is None:
            self._positions = vocabulary_positions(self.config["preprocessing"])
        columns = record_columns(rows, self.config["preprocessing"], self._positions)
        if columns is None:
            import pandas as pd

            return self(pd.DataFrame.from_records(list(rows), columns=features(self)))
        return self._run(columns, len(rows))

    def _run(self, columns: tuple[list[Any], list[tuple[Any, Any]]], rows: int) -> np.ndarray:
        import torch

        from airflow_mlops.models.contract import call_network
        from airflow_mlops.training.tabular import chunk_buffers, fill_chunks, predictions

        preprocessing = self.config["preprocessing"]
        classes = len(self.classes)
        out = np.empty((rows, classes) if self.task == "multiclass" else rows, dtype="float32")
        buffers = getattr(self._local, "buffers", None)
        width = min(self.chunk_rows, rows)
        if buffers is None or buffers[0].shape[1] < width:
            buffers = self._local.buffers = chunk_buffers(preprocessing, width)
        start = 0
        with torch.inference_mode():
            for chunk in fill_chunks(columns, rows, preprocessing, self.chunk_rows, buffers):
                scores = predictions(self.task, call_network(self.model, chunk))
                out[start : start + len(scores)] = scores.numpy()  # copied before the buffers are reused
                start += len(scores)
        return out


#: MLflow's numeric column types; every other input type must be ``string`` (or ``boolean``).
FLOAT_TYPES = {"double": "float64", "float": "float32"}
INTEGER_TYPES = {"long": "int64", "integer": "int32"}


class PyfuncScorer:
    """Any MLflow model with a ``python_function`` flavor, a column signature and the suite's task
    metadata (see :func:`airflow_mlops.models.package.pyfunc_contract`); a :class:`Predictor`.

    Rows are cast to the signature's types before ``predict`` (category columns to strings with
    None for a missing value, integers to floats for a ``double`` column), so frames read from
    Parquet and rows from JSON score alike. The model's output becomes the task's predictions: for
    a binary model the second column of a two-column ``predict_proba`` (or one probability per
    row), for a multiclass one a column per class, for a regression one the values.
    """

    def __init__(self, model_dir: str | Path, trusted_modules: Sequence[str] | None = None) -> None:
        import mlflow.pyfunc

        from airflow_mlops.models.package import pyfunc_contract

        folder = local_path(model_dir, "model folder")
        contract = pyfunc_contract(folder, trusted_modules)  # checked before the flavor's loader runs
        self.task: str = contract["task"]
        self.classes = list(contract["classes"])
        self.label = contract["label"]
        self.signature = contract["signature"]
        self.input_example: list[dict[str, Any]] = contract["input_example"]
        self.where = f"model {str(model_dir)!r}"
        self.model = mlflow.pyfunc.load_model(str(folder))

    def conform(self, frame: Any) -> Any:
        """The signature's columns of ``frame`` in the signature's types (a copy)."""
        import pandas as pd

        missing = [c for c in features(self) if c not in frame.columns]
        if missing:
            raise SpecError(f"rows to score: feature columns {missing} are missing")
        out = pd.DataFrame(index=frame.index)
        for column in self.signature["inputs"]:
            name, kind = column["name"], column["type"]
            values = frame[name]
            if kind in FLOAT_TYPES:
                out[name] = values.to_numpy(dtype=FLOAT_TYPES[kind], na_value=np.nan)
            elif kind in INTEGER_TYPES:
                if values.isna().any():
                    raise SpecError(
                        f"rows to score: column {name!r} is {kind} in the signature of {self.where} "
                        "but has missing values (declare it double to allow them)"
                    )
                out[name] = values.to_numpy(dtype=INTEGER_TYPES[kind])
            elif kind == "string":
                out[name] = values.astype(object).map(lambda v: None if pd.isna(v) else str(v))
            else:
                out[name] = values
        return out

    def __call__(self, frame: Any) -> np.ndarray:
        if len(frame) == 0:
            return np.empty((0, len(self.classes)) if self.task == "multiclass" else 0, dtype="float32")
        output = self.model.predict(self.conform(frame))
        values = np.asarray(output.to_numpy() if hasattr(output, "to_numpy") else output, dtype="float64")
        if self.task == "multiclass":
            if values.ndim != 2 or values.shape[1] != len(self.classes):
                raise SpecError(
                    f"{self.where}: a multiclass model must predict one probability per class "
                    f"({len(self.classes)} columns, mlops_classes), got shape {values.shape}; "
                    "log it with pyfunc_predict_fn='predict_proba'"
                )
            return values.astype("float32")
        if values.ndim == 2 and values.shape[1] == (2 if self.task == "binary" else 1):
            values = values[:, -1]
        if values.ndim != 1:
            raise SpecError(
                f"{self.where}: a {self.task} model must predict one value per row, got shape {values.shape}"
            )
        if self.task == "binary" and not bool(np.all((values >= 0) & (values <= 1))):
            raise SpecError(
                f"{self.where}: a binary model must predict P(1) in [0, 1], got values from "
                f"{values.min()!r} to {values.max()!r}; log it with pyfunc_predict_fn='predict_proba'"
            )
        return values.astype("float32")

    def baseline(self) -> dict[str, Any]:
        """The mean of every numeric input and the most frequent value of every other one over
        the model's logged input example (None where the example has no value)."""
        import pandas as pd

        example = pd.DataFrame.from_records(self.input_example, columns=features(self))
        row: dict[str, Any] = {}
        for column in self.signature["inputs"]:
            values = example[column["name"]].dropna()
            if values.empty:
                row[column["name"]] = None
            elif column["type"] in FLOAT_TYPES:
                row[column["name"]] = float(values.astype("float64").mean())
            elif column["type"] in INTEGER_TYPES:
                row[column["name"]] = round(float(values.astype("float64").mean()))
            else:
                row[column["name"]] = values.mode().iloc[0]
        return row


def load_scorer(
    model_dir: str | Path, chunk_rows: int = 65536, trusted_modules: Sequence[str] | None = None
) -> Predictor:
    """The model in ``model_dir``: a :class:`Scorer` for a model package of this suite
    (``config.json``), a :class:`PyfuncScorer` for any other MLflow model (``MLmodel``).

    With ``trusted_modules`` (the model server passes ``[mlops] trusted_model_modules``), no module
    the folder names is imported unless it is the suite's own, carried in the package, or trusted:
    a network's module for a package, the flavor's loader (``mlflow.sklearn``, ...) for an MLflow
    model. ``None`` (a pipeline's tasks reading their own training output) checks nothing."""
    from airflow_mlops.exceptions import ModelNotFoundError
    from airflow_mlops.models.package import CONFIG_FILE

    folder = local_path(model_dir, "model folder")
    if (folder / CONFIG_FILE).is_file():
        return Scorer(folder, chunk_rows=chunk_rows, trusted_modules=trusted_modules)
    if (folder / "MLmodel").is_file():
        return PyfuncScorer(folder, trusted_modules)
    raise ModelNotFoundError(
        f"model {str(model_dir)!r}: expected model.pt and {CONFIG_FILE} (a model package) or MLmodel "
        "(an MLflow model) in the folder"
    )
