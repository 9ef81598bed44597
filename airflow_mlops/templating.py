"""Templated arguments that must render to a mapping or a list (no Airflow import).

A Jinja template renders to a string unless the DAG sets ``render_template_as_native_obj=True``,
so ``variants="{{ ti.xcom_pull(...) }}"`` reaches ``execute`` as the text of a dict. Operators
whose templated arguments must be mappings or lists call :func:`require_rendered` first, which
fails the task with an error naming the operator, the argument, what it must be and what it got,
instead of a ``TypeError`` or ``AttributeError`` deep inside the task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_mlops.exceptions import MLOpsConfigError

_HINT = "a template renders to a string unless the DAG sets render_template_as_native_obj=True"


def require_rendered(operator: Any, mappings: Sequence[str] = (), lists: Sequence[str] = ()) -> None:
    """Raise ``MLOpsConfigError`` unless each named attribute of ``operator`` is None or a mapping
    (``mappings``), or None or a list or tuple (``lists``)."""
    for names, kind, accepts in ((mappings, "a mapping", (Mapping,)), (lists, "a list", (list, tuple))):
        for name in names:
            value = getattr(operator, name)
            if value is not None and not isinstance(value, accepts):
                shown = repr(value)
                shown = shown if len(shown) <= 200 else shown[:200] + "..."
                raise MLOpsConfigError(
                    f"{type(operator).__name__} {getattr(operator, 'task_id', '')}: {name} must be {kind}, "
                    f"got {type(value).__name__} {shown} ({_HINT})"
                )
