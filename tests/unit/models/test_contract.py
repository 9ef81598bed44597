"""A network or data module missing what the contract needs fails before launch, naming it."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from airflow_mlops.exceptions import SpecError
from airflow_mlops.models.contract import (
    call_network,
    check_data_module,
    check_forward,
    check_network,
    constructor_arguments,
)
from airflow_mlops.training.tabular import TabularDataModule, TabularMLP, TabularNetwork


class NoSteps(pl.LightningModule):
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["numeric"].sum(1)


class OnlyForward(TabularNetwork):
    def __init__(self, width: int, scale: float = 1.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(width, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(batch["numeric"]).squeeze(1) * self.hparams["scale"]


class WantsImages(TabularNetwork):
    def forward(self, numeric: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return numeric.sum(1)


def test_a_network_without_its_steps_is_refused_naming_them() -> None:
    with pytest.raises(
        SpecError, match=r"model 'm:NoSteps' does not define \['training_step', 'configure_optimizers'\]"
    ):
        check_network(NoSteps, "m:NoSteps")
    with pytest.raises(SpecError, match=r"must subclass LightningModule"):
        check_network(dict, "m:dict")
    check_network(OnlyForward, "m:OnlyForward")  # TabularNetwork gives the steps
    check_network(TabularMLP, "m:TabularMLP")


def test_forward_must_take_the_batch_or_declared_tensors() -> None:
    check_forward(OnlyForward, "m:OnlyForward", ("numeric", "categorical"))
    check_forward(TabularMLP, "m:TabularMLP", ("numeric", "categorical"))
    with pytest.raises(
        SpecError, match=r"forward takes \['numeric', 'image'\].*\(not provided: \['image'\]\)"
    ):
        check_forward(WantsImages, "m:WantsImages", ("numeric", "categorical"))


def test_call_network_in_both_forms() -> None:
    batch = {
        "numeric": torch.ones(3, 2),
        "categorical": torch.ones(3, 1, dtype=torch.long),
        "label": torch.ones(3),
    }
    mlp = TabularMLP(2, [3], [0.0, 0.0], [1.0, 1.0], hidden=4)
    assert call_network(mlp, batch).shape == (3,)
    assert call_network(OnlyForward(width=2), batch).shape == (3,)


def test_constructor_arguments_come_from_hyperparameters_and_data() -> None:
    data = {"task": "binary", "num_numeric": 2, "outputs": 1}
    assert constructor_arguments(OnlyForward, "m:O", {"width": 4}, data) == {"width": 4}
    with pytest.raises(SpecError, match=r"m:O needs arguments \['width'\], given by neither"):
        constructor_arguments(OnlyForward, "m:O", {}, data)
    with pytest.raises(SpecError, match=r"hyperparameters \['depth'\] are not arguments of m:O"):
        constructor_arguments(OnlyForward, "m:O", {"depth": 2}, None)
    with pytest.raises(SpecError, match=r"hyperparameters \['num_numeric'\] of m:T are learnt from the data"):
        constructor_arguments(TabularMLP, "m:T", {"num_numeric": 3}, data)


def test_data_module_contract() -> None:
    check_data_module(TabularDataModule, "m:TabularDataModule")
    with pytest.raises(SpecError, match=r"data module 'm:X' does not define \['prepare', 'model_inputs'"):
        check_data_module(pl.LightningDataModule, "m:X")
    with pytest.raises(SpecError, match=r"TabularDataModule: features .* is required"):
        TabularDataModule(manifest="x.json")
