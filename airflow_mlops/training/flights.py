"""The reference model for flights: a tabular network with categorical embeddings (no Airflow import).

``FlightDataModule`` reads a training set (``FeastTrainingDatasetOperator``'s manifest), computes
the preprocessing statistics on the training split only (means and standard deviations of the
numeric features, vocabularies of the categorical ones) and keeps every split as tensors; batches
are slices of a shuffled index, not per-row lookups, and each DDP process takes its own shard.
``FlightDelayModel`` embeds carrier, origin and destination, standardises the numeric features
with the stored statistics and predicts the probability that a flight arrives over 15 minutes late.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from .spec import SpecError, manifest_path

LABEL = "is_delayed"
CATEGORICAL = ("carrier", "origin", "dest")
NUMERIC = (
    "distance",
    "sched_dep_time",
    "sched_arr_time",
    "hour",
    "month",
    "day",
    "temp",
    "dewp",
    "humid",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
    "carrier_flights_7d",
    "carrier_delay_rate_7d",
    "carrier_mean_arr_delay_7d",
    "carrier_flights_30d",
    "carrier_delay_rate_30d",
    "carrier_mean_arr_delay_30d",
    "route_flights_30d",
    "route_delay_rate_30d",
    "route_mean_arr_delay_30d",
    "plane_year",
    "plane_seats",
    "plane_engines",
)


def fit_preprocessing(frame: Any) -> dict[str, Any]:
    """Statistics of the training split, stored with the model so serving transforms identically."""
    numeric = {}
    for column in NUMERIC:
        values = frame[column].astype("float64")
        mean = float(values.mean()) if values.notna().any() else 0.0
        std = float(values.std()) if values.notna().sum() > 1 else 1.0
        numeric[column] = {"mean": mean, "std": std if std > 0 and not math.isnan(std) else 1.0}
    vocab = {c: sorted(str(v) for v in frame[c].dropna().unique()) for c in CATEGORICAL}
    return {"numeric": numeric, "categorical": vocab, "label": LABEL}


def transform(frame: Any, preprocessing: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw feature rows -> (numeric tensor, category index tensor; 0 = unseen or missing).

    The numeric features stay raw (missing = NaN): ``FlightDelayModel`` standardises them with the
    statistics it holds as buffers, inside its forward pass. Vectorised, because in batch scoring
    this, not the network, is the cost: numeric columns are copied one by one into a float32
    array (``DataFrame.to_numpy`` over mixed int/float blocks is several times slower);
    categories go through pandas' ``Categorical``, which for a column that already is categorical
    (a Parquet dictionary, see ``evaluation.scoring.read_rows``) only recodes its few categories
    instead of hashing every row.
    """
    import numpy as np
    import pandas as pd

    # Filled column by column into a features x rows array: contiguous writes, five times faster than
    # into rows x features. The tensor returned is its transposed view; the model's first copy
    # (standardise, then cat with the embeddings) lays it out row by row anyway.
    numeric = np.empty((len(NUMERIC), len(frame)), dtype="float32")
    for i, column in enumerate(NUMERIC):
        values = frame[column]
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiu":  # NaN marks a missing value
            numeric[i] = values.to_numpy()
        else:  # nullable or object columns
            numeric[i] = values.to_numpy(dtype="float32", na_value=np.nan)
    categorical = np.empty((len(frame), len(CATEGORICAL)), dtype="int64")
    for i, column in enumerate(CATEGORICAL):
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):  # the vocabulary holds strings
            values = values.cat.rename_categories(values.cat.categories.astype(str))
        elif not (pd.api.types.is_string_dtype(values) or values.dtype == object):
            values = values.astype(str)
        codes = pd.Categorical(values, categories=preprocessing["categorical"][column]).codes
        categorical[:, i] = codes.astype("int64") + 1  # -1 (missing or unseen) -> 0
    return torch.from_numpy(numeric).T, torch.from_numpy(categorical)


class TensorBatches:
    """Batches as slices of a (shuffled) index over in-memory tensors; sharded across DDP processes."""

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.tensors, self.batch_size, self.shuffle, self.seed = tensors, batch_size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        # Every process sees the same number of rows, so collective operations stay in step.
        self.rows = len(tensors[0]) // world_size

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.tensors[0])
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(n)
        self.epoch += 1
        mine = order[self.rank :: self.world_size][: self.rows].to(self.tensors[0].device)
        for start in range(0, self.rows, self.batch_size):
            index = mine[start : start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)


class FlightDataModule(pl.LightningDataModule):
    """Splits of a flights training set as tensors, preprocessed with statistics of the training split."""

    def __init__(self, manifest: str, batch_size: int = 1024, seed: int = 42) -> None:
        super().__init__()
        self.manifest_uri, self.batch_size, self.seed = manifest, batch_size, seed
        self.preprocessing: dict[str, Any] = {}
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.rows: dict[str, int] = {}
        self._resident: dict[str, tuple[torch.Tensor, ...]] = {}

    def prepare(self) -> None:
        """Read the splits and fit the preprocessing (every process does it: the data is small)."""
        import pandas as pd

        manifest = json.loads(manifest_path(self.manifest_uri).read_text())
        for split in ("train", "validation", "test"):
            if split not in manifest["splits"]:
                raise SpecError(
                    f"training set {self.manifest_uri}: no {split!r} split (splits: {sorted(manifest['splits'])})"
                )
        frames = {
            s: pd.read_parquet(manifest_path(r["uri"], self.manifest_uri))
            for s, r in manifest["splits"].items()
        }
        missing = [c for c in (*NUMERIC, *CATEGORICAL, LABEL) if c not in frames["train"].columns]
        if missing:
            raise SpecError(f"training set {self.manifest_uri}: columns {missing} are missing")
        self.preprocessing = fit_preprocessing(frames["train"])
        for split, frame in frames.items():
            numeric, categorical = transform(frame, self.preprocessing)
            labels = torch.tensor(frame[LABEL].to_numpy(), dtype=torch.float32)
            self.splits[split] = (numeric.contiguous(), categorical, labels)  # batches gather rows: row-major
            self.rows[split] = len(frame)

    def model_inputs(self) -> dict[str, Any]:
        """What the model depends on: the numeric features' count and statistics (it standardises
        them itself) and the category counts."""
        cardinalities = [len(self.preprocessing["categorical"][c]) + 1 for c in CATEGORICAL]
        stats = self.preprocessing["numeric"]
        return {
            "num_numeric": len(NUMERIC),
            "cardinalities": cardinalities,
            "numeric_mean": [stats[c]["mean"] for c in NUMERIC],
            "numeric_std": [stats[c]["std"] for c in NUMERIC],
        }

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        tensors: tuple[torch.Tensor, ...] = self.splits[split]
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if (
            device.type == "cuda"
        ):  # the whole split on the GPU once: batches are slices there, no copy per step
            tensors = self._resident.setdefault(split, tuple(t.to(device) for t in tensors))
        return TensorBatches(
            tensors, self.batch_size, shuffle=shuffle, seed=self.seed, rank=rank, world_size=world
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("validation", shuffle=False)


class FlightDelayModel(pl.LightningModule):
    """Standardised numeric features (statistics held as buffers, missing -> the mean) concatenated
    with embeddings of carrier, origin and destination, then an MLP."""

    def __init__(
        self,
        num_numeric: int,
        cardinalities: Sequence[int],
        numeric_mean: Sequence[float],
        numeric_std: Sequence[float],
        embedding_dim: int = 8,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.1,
        lr: float = 2e-3,
        weight_decay: float = 1e-5,
    ) -> None:
        super().__init__()
        if (
            len(numeric_mean) != num_numeric
            or len(numeric_std) != num_numeric
            or min(numeric_std, default=1) <= 0
        ):
            raise SpecError(
                f"FlightDelayModel: numeric_mean and numeric_std need {num_numeric} values each "
                f"(std > 0), got {len(numeric_mean)} and {len(numeric_std)}"
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
        self.mlp = nn.Sequential(*blocks, nn.Linear(width, 1))
        self.loss = nn.BCEWithLogitsLoss()

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
        return self.mlp(torch.cat([self.standardise(numeric), *embedded], dim=1)).squeeze(1)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        numeric, categorical, label = batch
        loss = self.loss(self(numeric, categorical), label)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        numeric, categorical, label = batch
        self.log("val_loss", self.loss(self(numeric, categorical), label), on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )


def load_model(model_dir: str | Path) -> tuple[FlightDelayModel, dict[str, Any]]:
    """Load a saved model without executing pickled code: the weights with ``weights_only=True``,
    the architecture and preprocessing from ``config.json``."""
    folder = Path(model_dir)
    config = json.loads((folder / "config.json").read_text())
    model = FlightDelayModel(**config["init"])
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, config
