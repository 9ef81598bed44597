"""Every trigger of the package survives the triggerer's round trip: ``serialize()``, the class
imported from its path, built again from the kwargs, serialised to the same thing."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger

import airflow_mlops.triggers

# One example per trigger class; a trigger added without one fails test_every_trigger_has_an_example.
EXAMPLES: dict[str, dict[str, Any]] = {
    "airflow_mlops.triggers.approval.ModelApprovalTrigger": {
        "mlflow_conn_id": "mlflow_default",
        "name": "flight_delay",
        "version": "3",
        "poke_interval": 2.5,
    },
    "airflow_mlops.triggers.canary.CanaryAnalysisTrigger": {
        "model_server_conn_id": "mlops_model_server",
        "endpoint": "flight_delay",
        "criteria": {"min_requests": 200, "max_error_rate_increase": 0.01},
        "deadline": 1_790_000_000.5,
        "poll_interval": 15.0,
        "carry": {"index": 1, "primary": {"name": "flight_delay", "version": "2"}, "decisions": []},
    },
    "airflow_mlops.triggers.landing.LandingFileTrigger": {
        "directory": "/srv/landing",
        "pattern": "*.parquet",
        "poke_interval": 5.0,
    },
}


def trigger_classes() -> dict[str, type[BaseTrigger]]:
    found = {}
    folder = Path(airflow_mlops.triggers.__file__).parent
    for info in pkgutil.iter_modules([str(folder)]):
        module = importlib.import_module(f"airflow_mlops.triggers.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseTrigger) and cls.__module__ == module.__name__:
                found[f"{module.__name__}.{cls.__qualname__}"] = cls
    return found


def test_every_trigger_has_an_example() -> None:
    assert set(trigger_classes()) == set(EXAMPLES)


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_round_trip(path: str) -> None:
    trigger = trigger_classes()[path](**EXAMPLES[path])
    classpath, kwargs = trigger.serialize()
    assert classpath == path and kwargs == EXAMPLES[path]
    json.dumps(kwargs)  # the triggerer stores them as JSON
    module, _, name = classpath.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (classpath, kwargs)


def test_no_trigger_takes_credentials_or_uris_with_them() -> None:
    for path, cls in trigger_classes().items():
        parameters = set(inspect.signature(cls.__init__).parameters) - {"self"}
        assert not parameters & {"password", "token", "tracking_uri", "storage", "uri"}, path
