"""Search spaces and pruners: every bad entry is refused with its name, the rule and the value."""

from __future__ import annotations

import pytest

from airflow_mlops.training.spec import SpecError
from airflow_mlops.training.tuning import distributions, make_pruner


def test_a_search_space_becomes_optuna_distributions() -> None:
    space = distributions(
        {
            "hidden": {"type": "int", "low": 16, "high": 128, "log": True},
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "layers": {"type": "categorical", "choices": [1, 2]},
        }
    )
    assert (space["hidden"].low, space["hidden"].high, space["hidden"].log) == (16, 128, True)
    assert space["lr"].log and space["layers"].choices == (1, 2)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "non-empty mapping"),
        ({"hidden": {"low": 1, "high": 2}}, r"'hidden' needs a 'type' among"),
        (
            {"hidden": {"type": "int", "low": 8, "high": 4}},
            r"'hidden' \(int\) needs numbers low <= high, got low=8 high=4",
        ),
        ({"hidden": {"type": "int", "low": 1.5, "high": 4}}, r"low=1.5"),
        (
            {"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}},
            r"'lr' has log=true, which needs low > 0",
        ),
        ({"lr": {"type": "float", "low": 0.1, "high": 1.0, "scale": 2}}, r"unknown keys \['scale'\]"),
        ({"layers": {"type": "categorical", "choices": []}}, r"'layers' needs a non-empty list of 'choices'"),
    ],
)
def test_bad_search_spaces_are_refused(space: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        distributions(space)


def test_pruners_by_name_and_bad_ones_refused() -> None:
    import optuna

    assert isinstance(make_pruner({"type": "median", "n_warmup_steps": 1}), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)
    with pytest.raises(SpecError, match=r"'type' must be one of .*got 'hyperband2'"):
        make_pruner({"type": "hyperband2"})
    with pytest.raises(SpecError, match=r"pruner 'median': bad options \{'patience': 3\}"):
        make_pruner({"type": "median", "patience": 3})
