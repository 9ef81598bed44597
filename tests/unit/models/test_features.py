"""A feature spec refuses what cannot be trained on, naming the key and the value."""

from __future__ import annotations

import pytest

from airflow_mlops.exceptions import SpecError
from airflow_mlops.models import FeatureSpec


def test_round_trip_and_columns() -> None:
    spec = FeatureSpec.from_dict(
        {"label": "y", "task": "regression", "numeric": ["a", "b"], "categorical": ["c"], "weight": "w"}
    )
    assert spec.features == ("a", "b", "c") and spec.columns == ("a", "b", "c", "y", "w")
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"label": "y", "task": "binary", "numeric": ["a"], "colour": 1}, r"unknown keys \['colour'\]"),
        ({"task": "binary", "numeric": ["a"]}, r"\['label'\] are required"),
        ({"label": "y", "task": "ordinal", "numeric": ["a"]}, r"task must be one of .* got 'ordinal'"),
        (
            {"label": "y", "task": "binary", "numeric": "a"},
            r"numeric must be a list of column names, got 'a'",
        ),
        ({"label": "y", "task": "binary"}, r"at least one numeric or categorical column"),
        ({"label": "a", "task": "binary", "numeric": ["a"]}, r"columns \['a'\] have more than one role"),
        (
            {"label": "y", "task": "binary", "numeric": ["a"], "classes": ["x"]},
            r"classes are for the multiclass",
        ),
        ("label=y", r"feature spec must be a mapping, got str"),
    ],
)
def test_bad_specs(record: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        FeatureSpec.from_dict(record)  # type: ignore[arg-type]
