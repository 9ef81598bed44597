"""The MLflow registry for real: a version with lineage, signature and a model card with real numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.connections import mlflow_conn

pytestmark = pytest.mark.integration


@pytest.fixture
def trained(trained_models: dict, tmp_path: Path) -> dict:
    model = trained_models["challenger"]
    return {
        "root": tmp_path,
        "training_set": trained_models["training_set"],
        "tracking": trained_models["tracking"],
        "model": model,
        "result": json.loads((model / "result.json").read_text()),
    }


def test_a_registered_version_carries_lineage_a_signature_and_a_model_card_with_its_numbers(
    trained: dict,
) -> None:
    import mlflow

    from airflow_mlops.evaluation.report import evaluate
    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.registry.versions import register_version, registry_client

    manifest = json.loads(Path(trained["training_set"].removeprefix("file://")).read_text())
    test = pd.read_parquet(manifest["splits"]["test"]["uri"].removeprefix("file://"))
    scorer = Scorer(trained["model"])
    evaluation = {"split": "test", **evaluate(scorer(test), test, "is_delayed", slices=["origin"])}
    lineage = {
        "training_set": trained["training_set"],
        "training_set_sha256": "abc123",
        "dag_id": "flights_training",
        "run_id": "manual__1",
        "code_version": "0.1.0",
    }
    example = test.drop(columns=["is_delayed"]).head(5)

    registered = register_version(
        registry_client(trained["tracking"]),
        trained["tracking"],
        "flight_delay",
        trained["result"]["mlflow_run_id"],
        trained["model"],
        example,
        evaluation,
        lineage,
        trained["root"] / "card",
        intended_use="Rank flights by delay risk.",
        limitations="Trained on 2013 NYC flights.",
    )

    client = mlflow.MlflowClient(trained["tracking"])
    version = client.get_model_version("flight_delay", registered["version"])
    assert version.tags["state"] == "candidate" and version.tags["training_set_sha256"] == "abc123"
    assert (
        str(client.get_model_version_by_alias("flight_delay", "challenger").version) == registered["version"]
    )
    card = Path(registered["model_card"]).read_text()
    assert f"| auc | {evaluation['overall']['auc']:.4f} | none |" in card
    assert (
        f"| JFK | {int((test['origin'] == 'JFK').sum())} |" in card and "Trained on 2013 NYC flights." in card
    )
    assert "<table>" in Path(registered["model_card_html"]).read_text()

    from airflow_mlops.hooks.mlflow import MlflowHook

    with MlflowHook(mlflow_conn(trained["tracking"])).activated():  # models:/ resolved in that registry
        loaded = mlflow.pyfunc.load_model(registered["model_uri"])
    features = [*scorer.config["preprocessing"]["numeric"], *scorer.config["preprocessing"]["categorical"]]
    assert loaded.metadata.get_input_schema().input_names() == features
    predicted = loaded.predict(test[features].head(100))
    assert predicted == pytest.approx(scorer(test.head(100)), abs=1e-6)

    # The registered version, once champion, is evaluated through its alias: the registry's pyfunc
    # model resolves to the model folder logged inside it.
    from airflow_mlops.operators.evaluate import EvaluateModelOperator
    from airflow_mlops.registry.versions import model_folder

    client.set_registered_model_alias("flight_delay", "champion", registered["version"])
    try:  # the registry is shared by the session's tests: others expect no champion
        assert (model_folder("models:/flight_delay@champion", trained["tracking"]) / "config.json").is_file()
        summary = EvaluateModelOperator(
            task_id="evaluate",
            model_uri=str(trained["model"]),
            training_set=trained["training_set"],
            report_dir=str(trained["root"] / "report"),
            champion_uri="models:/flight_delay@champion",
            importance_rows=0,
            mlflow_conn_id=mlflow_conn(trained["tracking"]),
        ).execute({})  # type: ignore[arg-type]
    finally:
        client.delete_registered_model_alias("flight_delay", "champion")
    assert summary["champion_overall"]["auc"] == pytest.approx(summary["overall"]["auc"], abs=1e-9)


def test_a_model_uri_without_a_model_folder_is_named(tmp_path: Path) -> None:
    from airflow_mlops.registry.versions import model_folder

    with pytest.raises(FileNotFoundError, match=r"model '.*nowhere': expected model.pt and config.json"):
        model_folder(str(tmp_path / "nowhere"))
