"""The training spec: what to train, on which data, with which trainer options (no Airflow import)."""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airflow_mlops.exceptions import SpecError

#: Trainer options a spec may set, with their defaults.
TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "num_nodes": 1,
    "strategy": "auto",
    "precision": "32-true",
    "max_epochs": 3,
    "seed": 42,
    "limit_train_batches": None,
}


@dataclass(frozen=True)
class TrainingSpec:
    """Everything the runtime needs, serialisable as JSON.

    :param model: ``module:Class`` of a ``LightningModule``.
    :param data: ``module:Class`` of a ``LightningDataModule`` taking ``manifest``, ``batch_size``,
        ``seed`` (and ``features`` when given); see :mod:`airflow_mlops.models.contract`.
    :param training_set: path or ``file://`` URI of the training set manifest.
    :param output_dir: where the model, its config and ``result.json`` are written.
    :param checkpoint_dir: where Lightning checkpoints go; a rerun resumes from ``last.ckpt`` there.
    :param hyperparameters: keyword arguments of the model (checked against its signature).
    :param features: the feature spec (:class:`~airflow_mlops.models.FeatureSpec` as a mapping)
        passed to the data module; empty: the data module's own (e.g. a ``TabularDataModule`` subclass's ``default_features``).
    :param batch_size: rows per batch (per process).
    :param trainer: options among ``TRAINER_DEFAULTS``.
    :param mlflow: ``{"tracking_uri": ..., "experiment": ...}``; empty disables MLflow.
    :param tags: MLflow run tags (lineage: DAG, run, task; ``mlflow.parentRunId`` for a tuning trial).
    :param tuning: for an Optuna trial: ``{"study", "trial_id", "metric", "pruner"}`` (see ``tuning.py``).
    """

    model: str
    data: str
    training_set: str
    output_dir: str
    checkpoint_dir: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 1024
    trainer: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)

    def data_arguments(self) -> dict[str, Any]:
        """The data module's keyword arguments."""
        arguments: dict[str, Any] = {
            "manifest": self.training_set,
            "batch_size": self.batch_size,
            "seed": self.trainer_options()["seed"],
        }
        if self.features:
            arguments["features"] = self.features
        return arguments

    def trainer_options(self) -> dict[str, Any]:
        return {**TRAINER_DEFAULTS, **self.trainer}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainingSpec:
        record = json.loads(text)
        unknown = set(record) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise SpecError(f"training spec: unknown fields {sorted(unknown)}")
        return cls(**record)

    def check(self) -> None:
        """The checks that import nothing: trainer options, batch size, class paths, the training set."""
        unknown = set(self.trainer) - set(TRAINER_DEFAULTS)
        if unknown:
            raise SpecError(
                f"training spec: unknown trainer options {sorted(unknown)}; allowed: {sorted(TRAINER_DEFAULTS)}"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SpecError(f"training spec: batch_size must be a positive integer, got {self.batch_size!r}")
        for what, path in (("model", self.model), ("data", self.data)):
            find_module(path, what)
        if not isinstance(self.hyperparameters, dict):
            raise SpecError(f"training spec: hyperparameters must be a mapping, got {self.hyperparameters!r}")
        if not isinstance(self.features, dict):
            raise SpecError(
                f"training spec: features must be a mapping (a feature spec), got {self.features!r}"
            )
        if self.features:
            from airflow_mlops.models.features import FeatureSpec

            FeatureSpec.from_dict(self.features)
        if not manifest_path(self.training_set).is_file():
            raise SpecError(f"training spec: training_set {self.training_set!r} does not exist")

    def validate(self) -> None:
        """Everything that can be checked before training: :meth:`check`, then the classes and hyperparameters."""
        self.check()
        from airflow_mlops.models.contract import (
            check_data_module,
            check_forward,
            check_network,
            constructor_arguments,
        )

        model = load_class(self.model, "model")
        data = load_class(self.data, "data")
        check_network(model, self.model)
        check_data_module(data, self.data)
        check_forward(model, self.model, getattr(data, "inputs", ("numeric", "categorical")))
        if not self.features and getattr(data, "default_features", "") is None:
            raise SpecError(
                f"training spec: data module {self.data} has no feature spec of its own; give features "
                "(label, task, numeric, categorical)"
            )
        constructor_arguments(model, self.model, self.hyperparameters, None)
        check = getattr(model, "check_hyperparameters", None)
        if check is not None:
            check(self.hyperparameters)
        if self.tuning:
            from .tuning import make_pruner

            missing = sorted({"study", "trial_id"} - set(self.tuning))
            if missing:
                raise SpecError(f"training spec: tuning needs {missing}, got {sorted(self.tuning)}")
            make_pruner(self.tuning.get("pruner"))


def storage_path(uri: str | Path) -> Any:
    """A path to read and write through: a ``pathlib.Path`` for a local path or ``file://`` URI, a
    ``UPath`` (fsspec) for an object store URI such as ``s3://bucket/key``. Outside Airflow there are
    no connections: the object store's credentials and endpoint come from fsspec's configuration in
    the environment (``FSSPEC_S3``, which the training operators set from ``storage_conn_id``)."""
    from airflow_mlops.storage import is_remote, local_path

    text = str(uri)
    if not is_remote(text):
        return local_path(text)
    from upath import UPath

    return UPath(text)


def is_local(path: Any) -> bool:
    """True for a ``pathlib.Path`` (what :func:`storage_path` gives for local files)."""
    return isinstance(path, Path) and type(path).__module__.startswith("pathlib")


def manifest_path(uri: str, relative_to: str | None = None) -> Any:
    """A path (:func:`storage_path`) from a path or URI; a relative one (a relocated training set, as
    in a SageMaker channel) is taken from the folder of the manifest ``relative_to``."""
    path = storage_path(uri)
    if relative_to is not None and is_local(path) and not path.is_absolute():
        return manifest_path(relative_to).parent / path
    return path


def read_parquet(path: Any, columns: Sequence[str] | None = None) -> Any:
    """A Parquet file as a DataFrame, local or in an object store (streamed through fsspec)."""
    import pandas as pd

    columns = list(columns) if columns else None
    if is_local(path):
        return pd.read_parquet(path, columns=columns)
    with path.open("rb") as handle:
        return pd.read_parquet(handle, columns=columns)


def read_split(training_set: str, split: str, columns: Sequence[str] | None = None) -> Any:
    """One split of a training set as a DataFrame, for a model you train yourself (a scikit-learn
    pipeline, say): ``training_set`` is the manifest's URI (``FeastTrainingDatasetOperator``'s or
    ``MaterializeDatasetOperator``'s XCom), ``split`` one of its splits (``train``, ``validation``,
    ``test``). Raises ``SpecError`` naming the manifest and its splits when the split is not there."""
    splits = json.loads(manifest_path(training_set).read_text()).get("splits", {})
    if split not in splits:
        raise SpecError(f"training set {training_set}: no {split!r} split (splits: {sorted(splits)})")
    return read_parquet(manifest_path(splits[split]["uri"], training_set), columns)


def find_module(path: str, what: str) -> str:
    """The module of ``module:Class``, found on the path without running it (its parent packages are imported)."""
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise SpecError(f"training spec: {what} {path!r} must be 'module:Class'")
    try:
        found = importlib.util.find_spec(module_name)
    except ImportError as err:
        raise SpecError(f"training spec: {what} {path!r}: module cannot be found ({err})") from None
    if found is None:
        raise SpecError(f"training spec: {what} {path!r}: no module named {module_name!r}")
    return module_name


def load_class(path: str, what: str) -> Any:
    module_name = find_module(path, what)
    name = path.partition(":")[2]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SpecError(f"training spec: {what} {path!r}: module cannot be imported ({err})") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise SpecError(f"training spec: {what} {path!r}: {module_name} has no {name!r}") from None
