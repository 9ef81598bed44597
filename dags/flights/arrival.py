"""The second reference pipeline's network: arrival delay in minutes (``flights_arrival_delay``).

The README's "Bring your own model" network, line for line after this docstring (a test keeps them
the same): a user's network on the generic tabular data module, regression on the label's scale."""

import torch
from torch import nn

from airflow_mlops.training.tabular import TabularNetwork


class DelayMinutes(TabularNetwork):
    def __init__(
        self,
        task: str,
        num_numeric: int,
        cardinalities: list[int],
        numeric_mean: list[float],
        numeric_std: list[float],
        label_mean: float = 0.0,
        label_std: float = 1.0,
        hidden: int = 64,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # the model package rebuilds the network from these
        self.register_buffer("mean", torch.tensor(numeric_mean))
        self.register_buffer("std", torch.tensor(numeric_std))
        self.embeddings = nn.ModuleList(nn.Embedding(n, 4) for n in cardinalities)
        width = num_numeric + 4 * len(cardinalities)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        scaled = torch.nan_to_num((numeric - self.mean) / self.std)  # raw values arrive; NaN = missing
        embedded = [e(categorical[:, i]) for i, e in enumerate(self.embeddings)]
        minutes = self.mlp(torch.cat([scaled, *embedded], dim=1)).squeeze(1)
        return minutes * self.hparams["label_std"] + self.hparams["label_mean"]
