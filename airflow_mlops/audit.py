"""Who did it: the name an Airflow task records with a governance or deployment action."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def actor(context: Mapping[str, Any], who: str) -> str:
    """``who (dag_id/run_id)``: the component that acted and the DAG run it acted in."""
    dag_run = context.get("dag_run")
    return f"{who} ({getattr(dag_run, 'dag_id', '?')}/{getattr(dag_run, 'run_id', '?')})"
