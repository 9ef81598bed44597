"""The MLflow pyfunc face of a saved model folder, logged as "models from code" (nothing pickled).

MLflow copies this file into the logged model and runs it at load time; the weights and the
preprocessing come from the model folder logged as the artifact ``model`` (``model.pt`` loaded
with ``weights_only=True``, ``config.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class SavedModel(PythonModel):
    """``predict(rows)`` -> the task's predictions (raw feature columns in, as in training): the
    probability of each row (binary), the class probabilities (multiclass) or the value (regression)."""

    def load_context(self, context: Any) -> None:
        from airflow_mlops.evaluation.scoring import Scorer

        self.scorer = Scorer(Path(context.artifacts["model"]))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.scorer(model_input)


mlflow.models.set_model(SavedModel())
