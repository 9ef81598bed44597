"""Every error the package raises on purpose derives from MLOpsError (Airflow's own exceptions,
which instruct the scheduler, and the CLI's and HTTP routes' exits excepted)."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import airflow_mlops
from airflow_mlops import exceptions
from airflow_mlops.exceptions import MLOpsError

PACKAGE = Path(airflow_mlops.__file__).parent
# Not errors of ours: instructions to Airflow, the CLI's exit with a message, FastAPI's HTTP answers.
ALLOWED = {"AirflowFailException", "AirflowSkipException", "SystemExit", "HTTPException"}


def raised_names() -> dict[str, set[str]]:
    """``raise Name(...)`` in every module of the package: the raised class names per module."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                found.setdefault(str(path.relative_to(PACKAGE)), set()).add(name)
    return found


def test_no_module_raises_a_builtin_exception() -> None:
    builtin = {name for name in dir(builtins) if isinstance(getattr(builtins, name), type)} - ALLOWED
    offenders = {module: names & builtin for module, names in raised_names().items() if names & builtin}
    assert offenders == {}


def test_every_error_class_raised_is_an_mlops_error() -> None:
    classes = {name for names in raised_names().values() for name in names} - ALLOWED
    for name in sorted(classes):
        cls = getattr(exceptions, name, None)
        assert cls is not None, f"{name} is raised but not defined in airflow_mlops.exceptions"
        assert issubclass(cls, MLOpsError), name


def test_errors_keep_the_builtin_base_callers_relied_on() -> None:
    from airflow_mlops.evaluation.gate import GateError
    from airflow_mlops.serving.server import UnknownEndpoint
    from airflow_mlops.training.spec import SpecError

    assert issubclass(SpecError, ValueError) and issubclass(GateError, ValueError)
    assert issubclass(UnknownEndpoint, LookupError)
    assert issubclass(exceptions.ModelNotFoundError, FileNotFoundError)
    # A KeyError would show its message quoted; ours reads as written.
    error = exceptions.UnknownColumnError("compare_profiles: columns ['x'] are not in the reference")
    assert str(error) == "compare_profiles: columns ['x'] are not in the reference"
