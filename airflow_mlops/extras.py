"""The optional dependencies of the provider, grouped as the package's extras.

The provider itself needs Airflow and its providers, pandas and pyarrow: with no extra installed its
operators, sensors and hooks import and a DAG that uses them parses. Each heavy library is needed
only where a task runs, and comes with an extra::

    pip install 'airflow-mlops[training]'    # torch, Lightning, Optuna, Captum, MLflow
    pip install 'airflow-mlops[all]'         # everything below

A task that needs a library that is not installed fails at once with a
:class:`~airflow_mlops.exceptions.MissingExtraError` that names the extra to install (and, being
a ``ModuleNotFoundError``, says which module is missing), never with a bare ``ImportError`` from
deep inside the task. No imports of the heavy libraries here: checking uses ``find_spec``.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

from airflow_mlops.exceptions import MissingExtraError, MLOpsConfigError

#: extra -> the importable modules it brings (the distributions are in ``pyproject.toml``).
EXTRAS: dict[str, tuple[str, ...]] = {
    "registry": ("mlflow",),
    "training": ("torch", "pytorch_lightning", "optuna", "captum", "mlflow"),
    "features": ("feast",),
    "validation": ("great_expectations",),
    "serving": ("torch", "captum", "mlflow", "uvicorn", "prometheus_client"),
    "kubernetes": ("kubernetes", "airflow.providers.cncf.kubernetes"),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty when the extra is installed)."""
    if extra not in EXTRAS:
        raise MLOpsConfigError(f"extra must be one of {sorted(EXTRAS)}, got {extra!r}")
    absent = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a parent package that is absent or a stub without a spec
            found = None
        if found is None:
            absent.append(module)
    return absent


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` if any of its modules is not installed;
    ``what`` says what needs it (an operator's task id, a command)."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{what} needs the '{extra}' extra, which is not installed (missing: {', '.join(absent)}): "
            f"pip install 'airflow-mlops[{extra}]'",
            name=absent[0],
        )


class ExtraMixin:
    """For operators and sensors: ``pre_execute`` checks the class's ``required_extra`` before the task does
    anything, so a worker without it fails with the extra's name (and no retry can help)."""

    #: The extra this operator's task needs, or None.
    required_extra: ClassVar[str | None] = None
    task_id: str

    def pre_execute(self, context: Any) -> Any:
        if self.required_extra is not None:
            require(self.required_extra, f"task {self.task_id!r} ({type(self).__name__})")
        return super().pre_execute(context)  # type: ignore[misc]
