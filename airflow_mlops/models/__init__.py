"""The model contract: what the suite needs from a model, whatever its task and framework.

No Airflow, torch or MLflow import here; the contract is plain data and small functions.

- :mod:`.tasks`: the task types (``binary``, ``multiclass``, ``regression``), what a model's
  output means for each, their metrics and which way each metric is better.
- :mod:`.contract`: what a trainable network and its data module must provide, checked before
  training starts (a :class:`~airflow_mlops.exceptions.SpecError` names what is missing).
- :mod:`.features`: the feature spec of tabular data (numeric, categorical, label and weight
  columns, the task) that the generic data module (:mod:`airflow_mlops.training.tabular`) reads.

The README's "Bring your own model" section is the user's guide to it.
"""

from __future__ import annotations

from .features import FeatureSpec
from .tasks import TASKS, Task, check_task, lower_is_better, metric_names, primary_metric

__all__ = ["TASKS", "FeatureSpec", "Task", "check_task", "lower_is_better", "metric_names", "primary_metric"]
