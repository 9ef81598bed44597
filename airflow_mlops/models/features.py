"""The feature spec of a tabular training set: which columns are what, and the task.

No heavy import. The generic data module (:class:`airflow_mlops.training.tabular.TabularDataModule`)
reads a training set through it; the spec is saved with the model, so scoring and serving know the
input columns and their types without the user's code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_mlops.exceptions import MLOpsConfigError, SpecError

from .tasks import Task, check_task


@dataclass(frozen=True)
class FeatureSpec:
    """Columns of a tabular data set by role.

    :param label: the column to predict (0/1 for ``binary``, any class values for ``multiclass``,
        a number for ``regression``).
    :param task: ``binary``, ``multiclass`` or ``regression``.
    :param numeric: numeric feature columns (missing values allowed: the network sees NaN).
    :param categorical: categorical feature columns (read as strings; unseen or missing -> index 0).
    :param weight: an optional column of non-negative row weights.
    :param classes: for ``multiclass``, the class values in index order; learnt from the training
        split (sorted) when not given.
    """

    label: str
    task: Task
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    weight: str | None = None
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        try:
            check_task(self.task, "feature spec: task")
        except MLOpsConfigError as err:
            raise SpecError(str(err)) from None
        for name in ("numeric", "categorical", "classes"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise SpecError(f"feature spec: {name} must be a list of column names, got {value!r}")
            object.__setattr__(self, name, tuple(str(v) for v in value))
        if not isinstance(self.label, str) or not self.label:
            raise SpecError(f"feature spec: label must be a column name, got {self.label!r}")
        if not self.numeric and not self.categorical:
            raise SpecError("feature spec: at least one numeric or categorical column is needed, got none")
        columns = [*self.numeric, *self.categorical, self.label, *([self.weight] if self.weight else [])]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise SpecError(f"feature spec: columns {repeated} have more than one role (each column has one)")
        if self.classes and self.task != "multiclass":
            raise SpecError(f"feature spec: classes are for the multiclass task, not {self.task!r}")

    @property
    def features(self) -> tuple[str, ...]:
        """The input columns, numeric first."""
        return self.numeric + self.categorical

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the training set must have."""
        return (*self.features, self.label, *((self.weight,) if self.weight else ()))

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for name in ("numeric", "categorical", "classes"):
            record[name] = list(record[name])
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> FeatureSpec:
        """A spec from a mapping (JSON, YAML, a DAG argument); unknown keys are an error naming them."""
        if not isinstance(record, Mapping):
            raise SpecError(f"feature spec must be a mapping, got {type(record).__name__}: {record!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(record) - known)
        if unknown:
            raise SpecError(f"feature spec: unknown keys {unknown}; allowed: {sorted(known)}")
        missing = sorted({"label", "task"} - set(record))
        if missing:
            raise SpecError(f"feature spec: {missing} are required, got {sorted(record)}")
        return cls(**record)
