"""Training specs are checked before anything is launched."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mlops.training.spec import SpecError, TrainingSpec

MODEL = "flights.model:FlightDelayModel"
DATA = "flights.model:FlightDataModule"


def spec(tmp_path: Path, **changes) -> TrainingSpec:
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    fields = {
        "model": MODEL,
        "data": DATA,
        "training_set": manifest.as_uri(),
        "output_dir": str(tmp_path / "out"),
        "checkpoint_dir": str(tmp_path / "ckpt"),
        **changes,
    }
    return TrainingSpec(**fields)


def test_a_good_spec_passes_and_round_trips(tmp_path: Path) -> None:
    good = spec(tmp_path, hyperparameters={"hidden": 32, "lr": 0.01}, trainer={"devices": 2})
    good.validate()
    assert TrainingSpec.from_json(good.to_json()) == good


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "flights.model:NoSuchModel"}, r"model .*has no 'NoSuchModel'"),
        (
            {"model": "no_such_package.models:Model"},
            r"model 'no_such_package.models:Model': module cannot be found",
        ),
        ({"data": "flights.model"}, r"data .* must be 'module:Class'"),
        (
            {"hyperparameters": {"hiden": 32}},
            r"hyperparameters \['hiden'\] are not arguments of .*FlightDelayModel",
        ),
        ({"hyperparameters": {"dropout": 1.5}}, r"hyperparameter dropout=1.5 is out of range"),
        ({"hyperparameters": {"hidden": "wide"}}, r"hyperparameter hidden='wide' is out of range"),
        ({"trainer": {"max_epoch": 3}}, r"unknown trainer options \['max_epoch'\]"),
        ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
        (
            {"training_set": "file:///nowhere/manifest.json"},
            r"training_set 'file:///nowhere/manifest.json' does not exist",
        ),
    ],
)
def test_bad_specs_are_refused_with_the_reason(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec(tmp_path, **changes).validate()


def test_unknown_spec_fields_are_refused() -> None:
    with pytest.raises(SpecError, match=r"unknown fields \['epochs'\]"):
        TrainingSpec.from_json('{"epochs": 3}')
