"""A templated argument that must be a mapping or a list, rendered to a string (a Jinja template
without native objects), fails the task naming the operator, the argument and what it got, before
the task reads or writes anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_mlops.exceptions import MLOpsConfigError


def operators(tmp_path: Path) -> list[tuple[Any, str, str]]:
    from airflow_mlops.operators.dataset import MaterializeDatasetOperator
    from airflow_mlops.operators.deploy import DeployModelOperator
    from airflow_mlops.operators.extract import SqlExtractOperator
    from airflow_mlops.operators.validate import DataValidationOperator

    target = str(tmp_path / "out.parquet")
    return [
        (
            DeployModelOperator(task_id="deploy", endpoint="e", model_name="m", version="1"),
            "variants",
            "a mapping",
        ),
        (
            DeployModelOperator(task_id="deploy", endpoint="e", model_name="m", version="1"),
            "policy",
            "a mapping",
        ),
        (
            MaterializeDatasetOperator(task_id="dataset", definition="d.yaml", output_uri=target),
            "variables",
            "a mapping",
        ),
        (
            MaterializeDatasetOperator(task_id="dataset", definition="d.yaml", output_uri=target),
            "periods",
            "a list",
        ),
        (
            SqlExtractOperator(task_id="extract", sql="SELECT 1", source_conn_id="s", target=target),
            "parameters",
            "a mapping",
        ),
        (
            DataValidationOperator(
                task_id="validate",
                partition=target,
                suite="s.yaml",
                validated_target=target,
                quarantine_dir=str(tmp_path / "q"),
            ),
            "suite_parameters",
            "a mapping",
        ),
    ]


def test_each_mapping_or_list_argument_rendered_to_a_string_is_named(tmp_path: Path) -> None:
    for operator, name, kind in operators(tmp_path):
        setattr(operator, name, "{'day': '2013-01-01'}")  # what "{{ ... }}" renders to without native objects
        with pytest.raises(
            MLOpsConfigError,
            match=rf"{type(operator).__name__} {operator.task_id}: {name} must be {kind}, got str",
        ):
            operator.execute({})  # type: ignore[arg-type]
        assert not any(tmp_path.iterdir()), f"{name}: something was written"


def test_a_long_value_is_cut_in_the_message() -> None:
    from types import SimpleNamespace

    from airflow_mlops.templating import require_rendered

    with pytest.raises(MLOpsConfigError) as raised:
        require_rendered(SimpleNamespace(task_id="t", variables="x" * 10_000), mappings=("variables",))
    assert len(str(raised.value)) < 500 and "render_template_as_native_obj=True" in str(raised.value)
    require_rendered(
        SimpleNamespace(task_id="t", variables=None, periods=("2013-01",)), ["variables"], ["periods"]
    )
