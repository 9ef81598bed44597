"""MLflow is reached through one door: the hook (Airflow tasks) or the registry layer (code that runs
without Airflow). No other module builds an ``MlflowClient``, and no operator, sensor or trigger
takes a tracking URI as a parameter (they take ``mlflow_conn_id``)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import airflow_mlops

PACKAGE = Path(airflow_mlops.__file__).parent
DOORS = ("hooks/mlflow.py", "registry/")


def client_calls() -> dict[str, list[int]]:
    """Lines of ``MlflowClient(...)`` (or ``mlflow.MlflowClient(...)``) per module of the package."""
    found: dict[str, list[int]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name == "MlflowClient":
                    found.setdefault(path.relative_to(PACKAGE).as_posix(), []).append(node.lineno)
    return found


def test_only_the_hook_and_the_registry_layer_build_an_mlflow_client() -> None:
    calls = client_calls()
    assert any(module.startswith(DOORS) for module in calls)  # the scan sees the real doors
    assert {m: lines for m, lines in calls.items() if not m.startswith(DOORS)} == {}


def test_no_operator_sensor_or_trigger_takes_a_tracking_uri() -> None:
    from airflow_mlops import get_provider_info

    info = get_provider_info()
    modules = [
        module
        for group in ("operators", "sensors", "triggers")
        for entry in info[group]
        for module in entry["python-modules"]
    ]
    offenders = []
    for module_name in modules:
        module = __import__(module_name, fromlist=["_"])
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module_name:
                continue
            for parameter in inspect.signature(cls.__init__).parameters:
                if "tracking_uri" in parameter or parameter == "mlflow_uri":
                    offenders.append(f"{module_name}.{name}({parameter})")
    assert modules and offenders == []
