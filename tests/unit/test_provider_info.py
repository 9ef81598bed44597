"""get_provider_info() lists everything the package provides: a module, link, connection type or
``[mlops]`` option missing from it fails here."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import airflow_mlops
from airflow_mlops import get_provider_info

PACKAGE = Path(airflow_mlops.__file__).parent
INFO = get_provider_info()


def modules(kind: str) -> set[str]:
    folder = PACKAGE / kind
    return {f"airflow_mlops.{kind}.{m.name}" for m in pkgutil.iter_modules([str(folder)])}


def listed(kind: str) -> set[str]:
    return {module for entry in INFO[kind] for module in entry["python-modules"]}


@pytest.mark.parametrize("kind", ["operators", "sensors", "hooks", "triggers"])
def test_every_module_of_each_kind_is_listed_and_nothing_else(kind: str) -> None:
    assert listed(kind) == modules(kind)


def test_each_listed_module_belongs_to_a_declared_integration() -> None:
    integrations = {i["integration-name"] for i in INFO["integrations"]}
    for kind in ("operators", "sensors", "hooks", "triggers"):
        for entry in INFO[kind]:
            assert entry["integration-name"] in integrations, (kind, entry)


def test_every_hook_with_a_connection_type_is_registered_under_it() -> None:
    from airflow.sdk.bases.hook import BaseHook

    found = {}
    for module in modules("hooks"):
        for _, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass):
            if issubclass(cls, BaseHook) and cls.__module__ == module and getattr(cls, "conn_type", ""):
                found[f"{module}.{cls.__name__}"] = cls.conn_type
    registered = {c["hook-class-name"]: c["connection-type"] for c in INFO["connection-types"]}
    assert registered == found
    for conn_type in registered.values():  # a valid URI scheme: Airflow warns about '_' and maps '-' to '_'
        assert conn_type.isalnum() and conn_type.islower(), conn_type


def test_every_operator_link_class_is_listed() -> None:
    from airflow.sdk import BaseOperatorLink

    import airflow_mlops.links as links

    public = {
        f"airflow_mlops.links.{name}"
        for name, cls in inspect.getmembers(links, inspect.isclass)
        if issubclass(cls, BaseOperatorLink) and cls.__module__ == links.__name__ and not name.startswith("_")
    }
    assert set(INFO["extra-links"]) == public
    for path in INFO["extra-links"]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)().name


def test_every_mlops_option_read_in_settings_is_documented() -> None:
    tree = ast.parse((PACKAGE / "settings.py").read_text())
    read = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "_get"
        and isinstance(node.args[0], ast.Constant)
    }
    options = INFO["config"]["mlops"]["options"]
    assert set(options) == read
    for name, option in options.items():
        assert option["description"] and option["type"] in ("string", "boolean", "integer"), name


def test_airflow_loads_the_provider_with_its_hooks_and_links() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert "airflow-mlops" in manager.providers
    assert set(INFO["extra-links"]) <= set(manager.extra_links_class_names)
    hooks = ProvidersManagerTaskRuntime().hooks
    assert {"mlflow", "feast", "mlopsmodelserver"} <= set(hooks)
    assert hooks["mlflow"].hook_class_name == "airflow_mlops.hooks.mlflow.MlflowHook"
