"""Networks a user writes for ``TabularDataModule``: only ``__init__`` and ``forward``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from airflow_mlops.training.tabular import TabularNetwork


class LinearNetwork(TabularNetwork):
    """A linear model on the standardised numeric features and one-hot categories: any task."""

    def __init__(
        self,
        task: str,
        num_numeric: int,
        cardinalities: Sequence[int],
        numeric_mean: Sequence[float],
        numeric_std: Sequence[float],
        outputs: int = 1,
        label_mean: float = 0.0,
        label_std: float = 1.0,
        lr: float = 0.05,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.register_buffer("mean", torch.tensor(numeric_mean))
        self.register_buffer("std", torch.tensor(numeric_std))
        self.linear = torch.nn.Linear(num_numeric + sum(cardinalities), outputs)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        numeric = torch.nan_to_num((batch["numeric"] - self.get_buffer("mean")) / self.get_buffer("std"))
        onehot = [
            torch.nn.functional.one_hot(batch["categorical"][:, i], n).float()
            for i, n in enumerate(self.hparams["cardinalities"])
        ]
        return self.task_output(self.linear(torch.cat([numeric, *onehot], dim=1)))


class NoOptimiser(torch.nn.Module):
    """Not a LightningModule: refused before launch."""
