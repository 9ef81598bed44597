"""A model package that cannot be read is refused with its reason; the unversioned format still reads."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_mlops.exceptions import MLOpsConfigError, ModelNotFoundError, SpecError
from airflow_mlops.models.package import read_config

CONFIG = {"model": "m:M", "init": {}, "preprocessing": {"numeric": {"a": {}}, "categorical": {"c": []}}}


def package(folder: Path, config: object, weights: bool = True) -> Path:
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights:
        (folder / "model.pt").write_bytes(b"")
    return folder


def test_an_unversioned_package_reads_as_binary_with_its_inputs(tmp_path: Path) -> None:
    config = read_config(package(tmp_path, CONFIG).as_uri())
    assert config["task"] == "binary" and config["input_example"] == []
    assert [(c["name"], c["type"]) for c in config["signature"]["inputs"]] == [
        ("a", "double"),
        ("c", "string"),
    ]
    assert config["signature"]["outputs"] == [{"name": "probability", "type": "double"}]
    # Its network is the reference MLP's, whatever class path the old package named.
    assert config["model"] == "airflow_mlops.training.tabular:TabularMLP"
    assert read_config(package(tmp_path, {**CONFIG, "format_version": 1}))["model"] == "m:M"


@pytest.mark.parametrize(
    ("config", "weights", "error", "message"),
    [
        (CONFIG, False, ModelNotFoundError, r"expected model.pt and config.json"),
        ("{not json", True, SpecError, r"config.json is not JSON"),
        ([1, 2], True, SpecError, r"config.json must hold an object, got list"),
        (
            {**CONFIG, "format_version": 2},
            True,
            SpecError,
            r"format_version 2 is not one this suite reads \(0..1\)",
        ),
        ({"model": "m:M"}, True, SpecError, r"lacks \['init', 'preprocessing'\]"),
        ({**CONFIG, "task": "ranking"}, True, ValueError, r"task must be one of"),
    ],
)
def test_unreadable_packages_are_named(
    tmp_path: Path, config: object, weights: bool, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        read_config(package(tmp_path, config, weights))


@pytest.mark.parametrize("name", ["hyperparameters", "features"])
def test_a_template_that_renders_to_a_string_is_named(name: str) -> None:
    from airflow_mlops.operators.train import LightningTrainOperator

    operator = LightningTrainOperator(
        task_id="train",
        training_set="s",
        output_dir="o",
        checkpoint_root="c",
        model="m:M",
        mlflow_conn_id=None,
    )
    setattr(operator, name, "{'hidden': 8}")  # what a Jinja template renders without native objects
    with pytest.raises(
        MLOpsConfigError, match=rf"LightningTrainOperator train: {name} must be a mapping, got str"
    ):
        operator.training_spec(
            {"dag": SimpleNamespace(dag_id="d"), "run_id": "r"},  # type: ignore[arg-type]
            training_set="s",
            output_dir="o",
            checkpoint_dir="c",
            devices=1,
            num_nodes=1,
        )
