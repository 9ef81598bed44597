"""The generic tabular data module and network base: a user with a training set writes only the network.

No Airflow import. ``TabularDataModule`` reads a training-set manifest (``splits`` of Parquet
files, as ``FeastTrainingDatasetOperator`` and ``BuildDatasetOperator`` write them) through a
:class:`~airflow_mlops.models.FeatureSpec`, learns the preprocessing on the training split only
(means and standard deviations of the numeric columns, vocabularies of the categorical ones, the
classes of a multiclass label, the label's mean and spread for regression) and keeps every split
as tensors. A batch is a mapping of named tensors:

==============  ==========================================================================
``numeric``     float32, rows x numeric columns, raw values (missing = NaN)
``categorical`` int64, rows x categorical columns, vocabulary index + 1 (0 = unseen or missing)
``label``       float32 (binary 0/1, regression) or int64 class index (multiclass)
``weight``      float32 row weights, only when the spec names a weight column
==============  ==========================================================================

``TabularNetwork`` gives a network the task's loss (weighted when the batch has weights), the
training and validation steps and an AdamW optimiser; a subclass writes ``__init__`` and
``forward``. ``TabularMLP`` is a ready network for any task (embeddings and an MLP).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from airflow_mlops.exceptions import SpecError
from airflow_mlops.models.contract import call_network
from airflow_mlops.models.features import FeatureSpec
from airflow_mlops.models.package import column_types, import_network, read_config
from airflow_mlops.models.tasks import Task, check_task
from airflow_mlops.serving.models import json_rows
from airflow_mlops.storage import local_path

from .spec import manifest_path, read_parquet

SPLITS = ("train", "validation", "test")
#: Rows of the test split kept as the model package's input example.
EXAMPLE_ROWS = 3


def fit_preprocessing(frame: Any, spec: FeatureSpec) -> dict[str, Any]:
    """Statistics of the training split, stored with the model so serving transforms identically."""
    numeric = {}
    for column in spec.numeric:
        values = frame[column].astype("float64")
        mean = float(values.mean()) if values.notna().any() else 0.0
        std = float(values.std()) if values.notna().sum() > 1 else 1.0
        numeric[column] = {"mean": mean, "std": std if std > 0 and not math.isnan(std) else 1.0}
    vocab = {c: sorted(str(v) for v in frame[c].dropna().unique()) for c in spec.categorical}
    preprocessing: dict[str, Any] = {"numeric": numeric, "categorical": vocab, "label": spec.label}
    if spec.task == "multiclass":
        classes = list(spec.classes) or sorted(str(v) for v in frame[spec.label].dropna().unique())
        if len(classes) < 2:
            raise SpecError(
                f"feature spec: a multiclass label needs at least 2 classes, {spec.label!r} has {classes}"
            )
        preprocessing["classes"] = classes
    if spec.task == "regression":
        label = frame[spec.label].astype("float64")
        std = float(label.std()) if len(label) > 1 else 1.0
        preprocessing["label_mean"] = float(label.mean())
        preprocessing["label_std"] = std if std > 0 and not math.isnan(std) else 1.0
    return preprocessing


#: NumPy types ``torch.from_numpy`` views without a copy.
TORCH_VIEWABLE = frozenset({"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8"})


def feature_columns(frame: Any, preprocessing: Mapping[str, Any]) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """The features of raw rows, read once: each numeric one as an array (a view where the column
    already is a numeric array, a tensor view where torch can take it; NaN marks a missing value)
    and each categorical one as ``(codes, lookup)``, where ``lookup[codes]`` is the vocabulary index + 1 (0 = missing or unseen).

    A column that already is categorical (a Parquet dictionary, see ``evaluation.scoring.read_rows``)
    maps only its few categories to the vocabulary; other columns are compared as strings.
    """
    import numpy as np
    import pandas as pd

    numeric_columns = list(preprocessing["numeric"])
    categorical_columns = list(preprocessing["categorical"])
    missing = [c for c in (*numeric_columns, *categorical_columns) if c not in frame.columns]
    if missing:
        raise SpecError(f"rows to score: feature columns {missing} are missing")
    numeric: list[Any] = []
    for column in numeric_columns:
        values = frame[column]
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiu":
            array = values.to_numpy()
            # a tensor view where torch takes the array as it is (read only here)
            tensor = array.flags.writeable and array.dtype.name in TORCH_VIEWABLE
            numeric.append(torch.from_numpy(array) if tensor else array)
            continue
        try:  # nullable or object columns
            numeric.append(values.to_numpy(dtype="float32", na_value=np.nan))
        except (TypeError, ValueError) as error:
            raise SpecError(
                f"rows to score: numeric feature {column!r} must hold numbers or nulls ({error})"
            ) from error
    categorical = []
    for column in categorical_columns:
        values, vocabulary = frame[column], pd.Index(preprocessing["categorical"][column])
        if isinstance(values.dtype, pd.CategoricalDtype):
            lookup = vocabulary.get_indexer(values.cat.categories.astype(str)) + 1
            codes = values.cat.codes.to_numpy()
        else:
            if not (pd.api.types.is_string_dtype(values) or values.dtype == object):
                values = values.astype(str)
            codes = pd.Categorical(values, categories=vocabulary).codes
            lookup = np.arange(1, len(vocabulary) + 1)
        categorical.append((codes, np.append(lookup, 0).astype("int64")))  # code -1 (missing) -> the 0
    return numeric, categorical


def record_columns(
    rows: Sequence[Mapping[str, Any]],
    preprocessing: Mapping[str, Any],
    positions: Mapping[str, Mapping[str, int]],
) -> tuple[list[Any], list[tuple[Any, Any]]] | None:
    """:func:`feature_columns` of rows given as mappings (a request's JSON rows), without building a
    DataFrame: the arrays are the ones ``pd.DataFrame.from_records(rows)`` would give
    :func:`feature_columns`, so the predictions are the same bit for bit. ``positions``: each
    categorical column's ``{value: vocabulary index}`` (:func:`vocabulary_positions`).

    Only for plain columns: numbers of one kind (all whole numbers, or floats with whole numbers
    and nulls, or all nulls) and categories that are all strings (or nulls) or all whole numbers. Any other
    column (booleans, mixed kinds, a missing field) returns None: the caller takes the DataFrame
    path, which handles (or refuses, naming the column) everything.
    """
    import numpy as np

    numeric: list[Any] = []
    categorical: list[tuple[Any, Any]] = []
    try:
        for column in preprocessing["numeric"]:
            values = [row[column] for row in rows]
            kinds = {type(v) for v in values}
            if kinds == {int}:  # pandas: an int64 column
                array = np.array(values, dtype="int64")
            elif kinds <= {int, float, type(None)} and kinds & {int, float}:  # float64, NaN for null
                array = np.array(values, dtype="float64")
            elif kinds == {type(None)}:  # pandas: an object column, read as float32 NaN
                numeric.append(np.full(len(values), np.nan, dtype="float32"))
                continue
            else:
                return None
            numeric.append(torch.from_numpy(array))
        for column in preprocessing["categorical"]:
            values = [row[column] for row in rows]
            kinds = {type(v) for v in values}
            if kinds == {int}:  # pandas: int64, compared as strings
                values = [str(v) for v in values]
            elif not kinds <= {str, type(None)}:
                return None
            index = positions[column]
            codes = np.fromiter((index.get(v, -1) for v in values), dtype="int64", count=len(values))
            lookup = np.append(np.arange(1, len(index) + 1), 0).astype("int64")
            categorical.append((codes, lookup))
    except (KeyError, OverflowError):  # a missing field, a number past int64: the DataFrame path
        return None
    return numeric, categorical


def vocabulary_positions(preprocessing: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Each categorical column's ``{value: index in its vocabulary}`` (for :func:`record_columns`)."""
    return {
        column: {value: i for i, value in enumerate(vocabulary)}
        for column, vocabulary in preprocessing["categorical"].items()
    }


def _fill(
    columns: tuple[list[Any], list[tuple[Any, Any]]], start: int, stop: int, numeric: Any, categorical: Any
) -> dict[str, torch.Tensor]:
    """Rows ``start:stop`` of the feature columns written into the two buffers, as tensors."""
    import numpy as np

    rows = stop - start
    into = torch.from_numpy(numeric)
    for i, values in enumerate(columns[0]):
        if isinstance(values, torch.Tensor):
            into[i, :rows].copy_(values[start:stop])  # torch's cast: vectorised, about 20 % faster
        else:
            numeric[i, :rows] = values[start:stop]
    for i, (codes, lookup) in enumerate(columns[1]):
        # codes are within the lookup (-1 is its last entry); "wrap" skips the buffered
        # bounds check that mode="raise" makes with ``out`` (six times slower)
        np.take(lookup, codes[start:stop], out=categorical[i, :rows], mode="wrap")
    return {
        "numeric": torch.from_numpy(numeric[:, :rows]).T,
        "categorical": torch.from_numpy(categorical[:, :rows]).T,
    }


def transform(frame: Any, preprocessing: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Raw feature rows -> ``{"numeric", "categorical"}`` tensors (see the module docstring).

    Vectorised: each column is written into a features x rows array (contiguous writes;
    ``DataFrame.to_numpy`` over mixed blocks is several times slower), returned as its transposed view.
    """
    import numpy as np

    columns = feature_columns(frame, preprocessing)
    numeric = np.empty((len(columns[0]), len(frame)), dtype="float32")
    categorical = np.empty((len(columns[1]), len(frame)), dtype="int64")
    return _fill(columns, 0, len(frame), numeric, categorical)


def chunk_buffers(preprocessing: Mapping[str, Any], rows: int) -> tuple[Any, Any]:
    """The two arrays :func:`transform_chunks` writes chunks of up to ``rows`` rows into:
    float32 numeric features x rows and int64 categorical features x rows."""
    import numpy as np

    return (
        np.empty((len(preprocessing["numeric"]), rows), dtype="float32"),
        np.empty((len(preprocessing["categorical"]), rows), dtype="int64"),
    )


def transform_chunks(
    frame: Any, preprocessing: Mapping[str, Any], chunk_rows: int, buffers: tuple[Any, Any] | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """:func:`transform` chunk by chunk into two buffers reused for every chunk: a chunk's tensors are
    valid until the next chunk is asked for (copy what must outlive it).

    Batch scoring's path: the whole frame's arrays (about 130 MB for a million rows) are never
    allocated, and a chunk's buffers stay in the CPU caches for the network. ``buffers``
    (:func:`chunk_buffers` of at least ``min(chunk_rows, len(frame))`` rows) are used instead of
    new ones: a caller that scores many frames keeps its pages mapped (a fresh 8 MB buffer costs
    2,000 page faults per call).
    """
    return fill_chunks(feature_columns(frame, preprocessing), len(frame), preprocessing, chunk_rows, buffers)


def fill_chunks(
    columns: tuple[list[Any], list[tuple[Any, Any]]],
    rows: int,
    preprocessing: Mapping[str, Any],
    chunk_rows: int,
    buffers: tuple[Any, Any] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """:func:`transform_chunks` of columns already read (:func:`feature_columns`, :func:`record_columns`)."""
    if chunk_rows < 1:
        raise SpecError(f"chunk_rows must be positive, got {chunk_rows!r}")
    width = min(chunk_rows, rows)
    if buffers is None or buffers[0].shape[1] < width:
        buffers = chunk_buffers(preprocessing, width)
    numeric, categorical = buffers
    for start in range(0, rows, chunk_rows):
        yield _fill(columns, start, min(start + chunk_rows, rows), numeric, categorical)


def encode_labels(
    frame: Any, spec: FeatureSpec, preprocessing: Mapping[str, Any], where: str
) -> torch.Tensor:
    """The label column as the task's tensor; a value the task cannot take is a ``SpecError`` naming it."""
    import numpy as np
    import pandas as pd

    values = frame[spec.label]
    if values.isna().any():
        raise SpecError(f"{where}: label {spec.label!r} is null in {int(values.isna().sum())} row(s)")
    if spec.task == "multiclass":
        codes = pd.Categorical(values.astype(str), categories=preprocessing["classes"]).codes
        if (codes < 0).any():
            unknown = sorted(set(values.astype(str)[codes < 0]))[:5]
            raise SpecError(
                f"{where}: label {spec.label!r} has values {unknown} outside the classes {preprocessing['classes']}"
            )
        return torch.from_numpy(codes.astype("int64"))
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    if not np.isfinite(numbers).all():
        bad = values[~np.isfinite(numbers)].head(3).tolist()
        raise SpecError(f"{where}: label {spec.label!r} must be a finite number, got {bad}")
    if spec.task == "binary" and not np.isin(numbers, (0.0, 1.0)).all():
        bad = sorted(set(numbers[~np.isin(numbers, (0.0, 1.0))].tolist()))[:5]
        raise SpecError(f"{where}: a binary label {spec.label!r} must be 0 or 1, got {bad}")
    return torch.from_numpy(numbers.astype("float32"))


class TensorBatches:
    """Batches (mappings of named tensors) as slices of a (shuffled) index over in-memory tensors,
    sharded across DDP processes."""

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.tensors, self.batch_size, self.shuffle, self.seed = tensors, batch_size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        first = next(iter(tensors.values()))
        self.size, self.device = len(first), first.device
        # Every process sees the same number of rows, so collective operations stay in step.
        self.rows = self.size // world_size

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        self.epoch += 1
        mine = order[self.rank :: self.world_size][: self.rows].to(self.device)
        for start in range(0, self.rows, self.batch_size):
            index = mine[start : start + self.batch_size]
            yield {name: t[index] for name, t in self.tensors.items()}


class TabularDataModule(pl.LightningDataModule):
    """The splits of a training set as tensors, preprocessed with statistics of the training split.

    :param manifest: path or ``file://`` URI of the training set's manifest (``{"splits": {"train":
        {"uri": ...}, "validation": ..., "test": ...}}``; relative URIs are taken from its folder).
    :param batch_size: rows per batch (per process).
    :param seed: the shuffle's seed (each epoch shuffles with ``seed + epoch``).
    :param features: the :class:`FeatureSpec` (or its mapping) of the columns; subclasses may set
        ``default_features`` instead.
    """

    default_features: FeatureSpec | None = None
    #: The tensors a batch holds for the network (its ``forward`` takes these or ``batch``).
    inputs: tuple[str, ...] = ("numeric", "categorical")

    def __init__(
        self,
        manifest: str,
        batch_size: int = 1024,
        seed: int = 42,
        features: FeatureSpec | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        spec = features if features is not None else self.default_features
        if spec is None:
            raise SpecError(
                f"{type(self).__name__}: features (a feature spec: label, task, numeric, categorical) is required"
            )
        self.spec = spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(spec)
        self.manifest_uri, self.batch_size, self.seed = manifest, batch_size, seed
        self.preprocessing: dict[str, Any] = {}
        self.splits: dict[str, dict[str, torch.Tensor]] = {}
        self.rows: dict[str, int] = {}
        self._resident: dict[str, dict[str, torch.Tensor]] = {}
        self.example: list[dict[str, Any]] = []
        self.column_types: dict[str, str] = {}

    @property
    def task(self) -> Task:
        return self.spec.task

    def prepare(self) -> None:
        """Read the splits and fit the preprocessing (every process does it: tabular data is small)."""

        manifest = json.loads(manifest_path(self.manifest_uri).read_text())
        splits = manifest.get("splits", {})
        for split in SPLITS:
            if split not in splits:
                raise SpecError(
                    f"training set {self.manifest_uri}: no {split!r} split (splits: {sorted(splits)})"
                )
        frames = {s: read_parquet(manifest_path(r["uri"], self.manifest_uri)) for s, r in splits.items()}
        missing = [c for c in self.spec.columns if c not in frames["train"].columns]
        if missing:
            raise SpecError(
                f"training set {self.manifest_uri}: columns {missing} of the feature spec are missing "
                f"(columns: {list(frames['train'].columns)})"
            )
        self.preprocessing = fit_preprocessing(frames["train"], self.spec)
        self.example = json_rows(frames["test"].head(EXAMPLE_ROWS), self.spec.features)
        self.column_types = column_types(frames["train"], self.spec.numeric)
        for split, frame in frames.items():
            where = f"training set {self.manifest_uri}, split {split!r}"
            tensors = transform(frame, self.preprocessing)
            tensors["numeric"] = tensors["numeric"].contiguous()  # batches gather rows: row-major
            tensors["label"] = encode_labels(frame, self.spec, self.preprocessing, where)
            if self.spec.weight:
                weight = frame[self.spec.weight].to_numpy(dtype="float32")
                if not (weight >= 0).all():
                    raise SpecError(f"{where}: weight {self.spec.weight!r} must be >= 0 and not null")
                tensors["weight"] = torch.from_numpy(weight)
            self.splits[split] = tensors
            self.rows[split] = len(frame)

    def model_inputs(self) -> dict[str, Any]:
        """What a network may take from the data: the task, the numeric features' count and
        statistics, the category counts, the outputs (1, or the classes), the label's mean and spread."""
        stats = self.preprocessing["numeric"]
        inputs: dict[str, Any] = {
            "task": self.task,
            "num_numeric": len(self.spec.numeric),
            "cardinalities": [len(self.preprocessing["categorical"][c]) + 1 for c in self.spec.categorical],
            "numeric_mean": [stats[c]["mean"] for c in self.spec.numeric],
            "numeric_std": [stats[c]["std"] for c in self.spec.numeric],
            "outputs": len(self.preprocessing.get("classes", ())) or 1,
        }
        if self.task == "regression":
            inputs["label_mean"] = self.preprocessing["label_mean"]
            inputs["label_std"] = self.preprocessing["label_std"]
        return inputs

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        tensors = self.splits[split]
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if (
            device.type == "cuda"
        ):  # the whole split on the GPU once: batches are slices there, no copy per step
            tensors = self._resident.setdefault(split, {k: t.to(device) for k, t in tensors.items()})
        return TensorBatches(
            tensors, self.batch_size, shuffle=shuffle, seed=self.seed, rank=rank, world_size=world
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("validation", shuffle=False)


def task_loss(task: str, output: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The task's training loss (BCE on logits, cross-entropy, or mean squared error), weighted by
    ``batch["weight"]`` when there is one."""
    functional = nn.functional
    losses_by_task: dict[str, Callable[..., torch.Tensor]] = {
        "binary": functional.binary_cross_entropy_with_logits,
        "multiclass": functional.cross_entropy,
        "regression": functional.mse_loss,
    }
    loss = losses_by_task[task]
    weight = batch.get("weight")
    if weight is None:  # the fused mean: bit for bit what nn.BCEWithLogitsLoss() gives
        return loss(output, batch["label"])
    losses = loss(output, batch["label"], reduction="none")
    return (losses * weight).sum() / weight.sum().clamp_min(1e-12)


def predictions(task: str, output: torch.Tensor) -> torch.Tensor:
    """The task's link on the network's raw output: probabilities (binary, multiclass) or values."""
    if task == "binary":
        return torch.sigmoid(output)
    if task == "multiclass":
        return torch.softmax(output, dim=1)
    return output


class TabularNetwork(pl.LightningModule):
    """Base of a network for the generic data module: the task's loss, steps and optimiser.

    A subclass defines ``__init__`` (calling ``self.save_hyperparameters()``, so the model package
    can rebuild it; ``lr`` and ``weight_decay`` among them set the optimiser) and ``forward``
    (taking ``numeric`` and ``categorical``, or ``batch``). The task is the ``task``
    hyperparameter (the data module passes it), else the class attribute ``task``.
    """

    task: str = "binary"

    def _task(self) -> str:
        return str(self.hparams.get("task", self.task))

    def task_output(self, out: torch.Tensor) -> torch.Tensor:
        """A final layer's ``rows x outputs`` as the task's raw output: the logits of a multiclass
        model; one column squeezed otherwise, a regression's scaled back with the hyperparameters
        ``label_mean`` and ``label_std`` (the network learns the standardised label)."""
        if self._task() == "multiclass":
            return out
        out = out.squeeze(1)
        if self._task() == "regression":
            return out * self.hparams.get("label_std", 1.0) + self.hparams.get("label_mean", 0.0)
        return out

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = task_loss(self._task(), call_network(self, batch), batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        loss = task_loss(self._task(), call_network(self, batch), batch)
        self.log("val_loss", loss, on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams.get("lr", 2e-3),
            weight_decay=self.hparams.get("weight_decay", 1e-5),
        )


class TabularMLP(TabularNetwork):
    """Standardised numeric features (statistics held as buffers, missing -> the mean) concatenated
    with an embedding per categorical column, then an MLP; for any task (regression outputs are
    scaled back with the label's training mean and spread)."""

    def __init__(
        self,
        num_numeric: int,
        cardinalities: Sequence[int],
        numeric_mean: Sequence[float],
        numeric_std: Sequence[float],
        task: str = "binary",
        outputs: int = 1,
        label_mean: float = 0.0,
        label_std: float = 1.0,
        embedding_dim: int = 8,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.1,
        lr: float = 2e-3,
        weight_decay: float = 1e-5,
    ) -> None:
        super().__init__()
        check_task(task, f"{type(self).__name__}: task")
        if (
            len(numeric_mean) != num_numeric
            or len(numeric_std) != num_numeric
            or min(numeric_std, default=1) <= 0
        ):
            raise SpecError(
                f"{type(self).__name__}: numeric_mean and numeric_std need {num_numeric} values each "
                f"(std > 0), got {len(numeric_mean)} and {len(numeric_std)}"
            )
        if (task == "multiclass") != (outputs > 1) or outputs < 1 or label_std <= 0:
            raise SpecError(
                f"{type(self).__name__}: outputs={outputs} (classes for multiclass, 1 otherwise) and "
                f"label_std={label_std} (> 0) do not fit task {task!r}"
            )
        self.save_hyperparameters()
        self.register_buffer("numeric_mean", torch.tensor(numeric_mean, dtype=torch.float32))
        self.register_buffer("numeric_std", torch.tensor(numeric_std, dtype=torch.float32))
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in cardinalities)
        width = num_numeric + embedding_dim * len(cardinalities)
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        self.mlp = nn.Sequential(*blocks, nn.Linear(width, outputs))

    def standardise(self, numeric: torch.Tensor) -> torch.Tensor:
        """Raw numeric features -> standardised with the training split's statistics; NaN -> 0 (the mean)."""
        mean, std = self.get_buffer("numeric_mean"), self.get_buffer("numeric_std")
        return torch.nan_to_num((numeric - mean) / std, nan=0.0)

    @staticmethod
    def check_hyperparameters(values: Mapping[str, Any]) -> None:
        rules = {
            "embedding_dim": lambda v: isinstance(v, int) and v > 0,
            "hidden": lambda v: isinstance(v, int) and v > 0,
            "layers": lambda v: isinstance(v, int) and v >= 0,
            "dropout": lambda v: 0 <= v < 1,
            "lr": lambda v: v > 0,
            "weight_decay": lambda v: v >= 0,
        }
        for name, value in values.items():
            rule = rules.get(name)
            try:
                ok = rule is None or rule(value)
            except TypeError:
                ok = False
            if not ok:
                raise SpecError(
                    f"training spec: hyperparameter {name}={value!r} is out of range "
                    "(embedding_dim, hidden > 0; layers >= 0; 0 <= dropout < 1; lr > 0; weight_decay >= 0)"
                )

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        embedded = [e(categorical[:, i]) for i, e in enumerate(self.embeddings)]
        return self.task_output(self.mlp(torch.cat([self.standardise(numeric), *embedded], dim=1)))


def load_model(
    model_dir: str | Path, trusted_modules: Sequence[str] | None = None
) -> tuple[Any, dict[str, Any]]:
    """A saved model without executing pickled code: the architecture from ``config.json``'s
    ``model`` and ``init``, the weights with ``weights_only=True``; with ``trusted_modules``, a
    network module the package does not carry must be trusted (``models.package.import_network``)."""
    folder = local_path(model_dir, "model folder")
    config = read_config(folder)
    model = import_network(config, folder, trusted_modules)(**config["init"])
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, config
