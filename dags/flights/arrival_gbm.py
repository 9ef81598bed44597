"""The second reference pipeline's scikit-learn model: arrival delay in minutes (``flights_arrival_delay``).

The README's "A scikit-learn model, or any MLflow model" example, line for line after this
docstring (a test keeps them the same): a user's own training, logged as an MLflow model that the
suite's operators then evaluate, gate, register, deploy, serve, explain, batch-score and monitor."""

import mlflow
import sklearn
import skops
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import root_mean_squared_error
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from airflow_mlops.training.spec import read_split


def train(training_set: str, features: dict, experiment_id: str) -> dict:
    columns, label = features["numeric"] + features["categorical"], features["label"]
    rows, validation = read_split(training_set, "train"), read_split(training_set, "validation")
    categories = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=50, sparse_output=False)
    model = make_pipeline(
        ColumnTransformer([("categories", categories, features["categorical"])], remainder="passthrough"),
        HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, random_state=0),
    ).fit(rows[columns], rows[label])

    with mlflow.start_run(experiment_id=experiment_id) as run:  # in MlflowHook.activated()'s store
        rmse = root_mean_squared_error(validation[label], model.predict(validation[columns]))
        mlflow.log_metric("validation_rmse", rmse)
        logged = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(rows[columns], model.predict(rows[columns].head(100))),
            input_example=rows[columns].head(5),
            metadata={"mlops_task": "regression", "mlops_label": label},  # what the suite reads
            # Saved with skops, not pickle: name the types skops does not trust by default.
            skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"],
        )
    # What release_task_group and RegisterModelOperator read from a training task's XCom.
    return {"mlflow_run_id": run.info.run_id, "model_uri": logged.model_uri, "task": "regression"}
