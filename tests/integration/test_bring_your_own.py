"""Bring your own model: the generic tabular data module trains a user's network for each task type,
the model package declares task, signature and example, and scoring reproduces the training metrics."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.evaluation.metrics import task_metrics
from airflow_mlops.evaluation.scoring import Scorer
from airflow_mlops.exceptions import SpecError
from airflow_mlops.registry.versions import record_digest
from airflow_mlops.training.runtime import run
from airflow_mlops.training.spec import TrainingSpec

pytestmark = pytest.mark.integration
DATA = "airflow_mlops.training.tabular:TabularDataModule"
LINEAR = "byo_linear:LinearNetwork"  # tests/byo/networks.py, as a module of the user's own project
MLP = "airflow_mlops.training.tabular:TabularMLP"


@pytest.fixture(scope="module", autouse=True)
def user_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user's project: a folder on this process's path (not on the model server's) holding
    the network's module."""
    folder = tmp_path_factory.mktemp("user-project")
    shutil.copyfile(Path(__file__).parents[1] / "byo" / "networks.py", folder / "byo_linear.py")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("byo_linear", None)


def synthetic(rows: int, seed: int) -> pd.DataFrame:
    """Two numeric features (one with gaps), a categorical one, and three labels derived from them."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(5, 2, rows), rng.normal(-1, 1, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    shift = pd.Series(colour).map({"red": 2.0, "green": 0.0, "blue": -2.0}).to_numpy()
    minutes = 10 * x1 - 5 * x2 + 8 * shift + rng.normal(0, 3, rows)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "minutes": minutes})
    frame.loc[::17, "x2"] = np.nan
    frame["late"] = (minutes > np.median(minutes)).astype("int64")
    frame["band"] = pd.cut(minutes, [-np.inf, 30, 60, np.inf], labels=["early", "on_time", "late"]).astype(
        str
    )
    frame["weight"] = np.where(colour == "red", 2.0, 1.0)
    return frame


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("byo-set")
    splits = {}
    for i, split in enumerate(("train", "validation", "test")):
        synthetic(3000 if split == "train" else 800, i).to_parquet(folder / f"{split}.parquet")
        splits[split] = {"uri": f"{split}.parquet"}  # relative to the manifest, as a relocated set
    (folder / "manifest.json").write_text(json.dumps({"splits": splits}))
    return str(folder / "manifest.json")


def make_spec(folder: Path, manifest: str, model: str, features: dict, **hyperparameters) -> TrainingSpec:
    return TrainingSpec(
        model=model,
        data=DATA,
        training_set=manifest,
        output_dir=str(folder / "out"),
        checkpoint_dir=str(folder / "ckpt"),
        hyperparameters=hyperparameters,
        features=features,
        batch_size=256,
        trainer={"max_epochs": 8},
    )


def train(folder: Path, manifest: str, model: str, features: dict, **hyperparameters) -> dict:
    spec = make_spec(folder, manifest, model, features, **hyperparameters)
    spec.validate()
    result = run(spec)
    assert result is not None
    return result


FEATURES = {"numeric": ["x1", "x2"], "categorical": ["colour"]}


@pytest.mark.parametrize(
    ("task", "label", "model", "primary", "better_than_baseline"),
    [
        ("regression", "minutes", LINEAR, "rmse", lambda m, b: m < 0.5 * b),
        ("multiclass", "band", LINEAR, "macro_f1", lambda m, b: m > 0.6),
        ("binary", "late", MLP, "auc", lambda m, b: m > 0.85),
    ],
)
def test_each_task_trains_scores_and_reports_its_metrics(
    tmp_path: Path, manifest: str, task: str, label: str, model: str, primary: str, better_than_baseline
) -> None:
    features = {
        **FEATURES,
        "label": label,
        "task": task,
        **({"weight": "weight"} if task == "binary" else {}),
    }
    result = train(tmp_path, manifest, model, features, **({"hidden": 16} if model == MLP else {}))
    metrics = result["metrics"]
    assert better_than_baseline(metrics[f"test_{primary}"], metrics.get(f"test_baseline_{primary}"))

    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["format_version"] == 1 and config["task"] == task and config["features"]["label"] == label
    assert [c["name"] for c in config["signature"]["inputs"]] == ["x1", "x2", "colour"]
    assert [c["type"] for c in config["signature"]["inputs"]] == ["double", "double", "string"]
    assert len(config["input_example"]) == 3 and set(config["input_example"][0]) == {"x1", "x2", "colour"}

    # Scoring the package reproduces the training run's test metrics (the same preprocessing and link).
    test = pd.read_parquet(Path(manifest).parent / "test.parquet")
    scores = Scorer(result["model_uri"])(test)
    if task == "multiclass":
        classes = config["preprocessing"]["classes"]
        assert scores.shape == (len(test), 3) and classes == ["early", "late", "on_time"]
        assert np.allclose(scores.sum(axis=1), 1, atol=1e-5)
        labels = test[label].map({c: i for i, c in enumerate(classes)}).to_numpy()
        assert [c["name"] for c in config["signature"]["outputs"]] == [f"probability_{c}" for c in classes]
    else:
        assert scores.shape == (len(test),)
        labels = test[label].to_numpy()
    rescored = task_metrics(task, labels, scores)
    assert rescored[primary] == pytest.approx(metrics[f"test_{primary}"], rel=1e-4)


def test_weights_change_the_fit(tmp_path: Path, manifest: str) -> None:
    """The weight column reaches the loss: the same run without it ends with different weights."""
    import torch

    features = {**FEATURES, "label": "late", "task": "binary"}
    a = train(tmp_path / "a", manifest, LINEAR, features)
    b = train(tmp_path / "b", manifest, LINEAR, {**features, "weight": "weight"})
    weights_a = torch.load(Path(a["model_uri"].removeprefix("file://")) / "model.pt", weights_only=True)
    weights_b = torch.load(Path(b["model_uri"].removeprefix("file://")) / "model.pt", weights_only=True)
    assert not torch.allclose(weights_a["linear.weight"], weights_b["linear.weight"])


@pytest.mark.parametrize(
    ("model", "features", "message"),
    [
        (
            "byo_linear:NoOptimiser",
            {"label": "late", "task": "binary", "numeric": ["x1"]},
            "must subclass LightningModule",
        ),
        (LINEAR, {}, r"TabularDataModule has no feature spec of its own; give features"),
        (LINEAR, {"label": "late", "task": "ranking", "numeric": ["x1"]}, r"task must be one of"),
        (LINEAR, {"label": "late", "task": "binary", "numerics": ["x1"]}, r"unknown keys \['numerics'\]"),
    ],
)
def test_a_bad_contract_fails_before_launch(
    tmp_path: Path, manifest: str, model: str, features: dict, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        make_spec(tmp_path, manifest, model, features).validate()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("column", "values", "task", "message"),
    [
        ("late", [2] * 3000, "binary", r"a binary label 'late' must be 0 or 1, got \[2.0\]"),
        ("minutes", [None] * 3000, "regression", r"label 'minutes' is null in 3000 row\(s\)"),
        ("x9", None, "binary", r"columns \['x9'\] of the feature spec are missing"),
    ],
)
def test_bad_data_is_named_when_the_data_is_read(
    tmp_path: Path, column: str, values: list | None, task: str, message: str
) -> None:
    from airflow_mlops.training.tabular import TabularDataModule

    frame = synthetic(3000, 0)
    if values is not None:
        frame[column] = values
    for split in ("train", "validation", "test"):
        frame.to_parquet(tmp_path / f"{split}.parquet")
    (tmp_path / "m.json").write_text(
        json.dumps({"splits": {s: {"uri": f"{s}.parquet"} for s in ("train", "validation", "test")}})
    )
    numeric = ["x1"] if column != "x9" else ["x1", "x9"]
    label = column if column != "x9" else "late"
    data = TabularDataModule(
        str(tmp_path / "m.json"), features={"label": label, "task": task, "numeric": numeric}
    )
    with pytest.raises(SpecError, match=message):
        data.prepare()


#: MLflow saves scikit-learn models with skops (no pickle); the types skops does not trust by
#: default are named when the model is logged (here: our own gradient-boosted trees).
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
#: Named, so MLflow does not load each model in a subprocess to infer them (seconds per model).
PIP = ["scikit-learn", "skops"]


def fit_sklearn(manifest: str) -> tuple[object, pd.DataFrame]:
    """The user's scikit-learn pipeline for the binary label ``late``, fitted on the train split."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.read_parquet(Path(manifest).parent / "train.parquet")
    inputs = frame[["x1", "x2", "colour"]]
    encode = ColumnTransformer(
        [("colour", OneHotEncoder(handle_unknown="ignore"), ["colour"])], remainder="passthrough"
    )
    pipeline = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=60, random_state=0))
    return pipeline.fit(inputs, frame["late"]), inputs


def log_and_register_sklearn(client, tracking: str, experiment: str, manifest: str, root: Path) -> dict:
    """The pipeline logged as an MLflow model by the user, then evaluated and registered by the suite."""
    import mlflow
    from mlflow.models import infer_signature

    from airflow_mlops.evaluation.report import evaluate
    from airflow_mlops.evaluation.scoring import load_scorer
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.registry.versions import model_folder, register_version
    from tests.connections import mlflow_conn

    pipeline, inputs = fit_sklearn(manifest)
    with (
        MlflowHook(mlflow_conn(tracking)).activated("byo") as experiment_id,  # as the user's task would
        mlflow.start_run(experiment_id=experiment_id) as run,
    ):
        assert experiment_id == experiment
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(inputs, pipeline.predict_proba(inputs)),
            input_example=inputs.head(5),
            pyfunc_predict_fn="predict_proba",
            metadata={"mlops_task": "binary", "mlops_label": "late"},
            skops_trusted_types=TRUSTED,
            pip_requirements=PIP,
        )
    test = pd.read_parquet(Path(manifest).parent / "test.parquet")
    scorer = load_scorer(model_folder(info.model_uri, tracking))
    evaluation = {"split": "test", **evaluate(scorer(test), test, "late", slices=["colour"], task="binary")}
    registered = register_version(
        client,
        tracking,
        "late_sklearn",
        run.info.run_id,
        info.model_uri,
        None,
        evaluation,
        {"training_set": manifest, "dag_id": "byo", "run_id": "manual__1"},
        root / "late-card",
        intended_use="Predict late arrivals.",
        limitations="Synthetic.",
    )
    return {"pipeline": pipeline, "logged": info.model_uri, **registered}  # evaluation: the overall metrics


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, manifest: str):
    """A regression and a multiclass network trained here and a user's scikit-learn pipeline
    logged as an MLflow model, registered in an MLflow registry and deployed on a real model
    server on loopback."""
    import httpx
    from mlflow import MlflowClient

    from airflow_mlops.registry.versions import registry_client
    from tests.model_server import TOKEN, Server

    root = tmp_path_factory.mktemp("byo-served")
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking)
    experiment = client.create_experiment("byo", artifact_location=str(root / "artifacts"))
    models = {}
    for name, label, task in (("minutes", "minutes", "regression"), ("band", "band", "multiclass")):
        result = train(root / name, manifest, LINEAR, {**FEATURES, "label": label, "task": task})
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, result["model_uri"].removeprefix("file://"), "model")
        client.create_registered_model(name)
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        record_digest(client, tracking, name, "1")
        models[name] = result["model_uri"]
    sklearn = log_and_register_sklearn(registry_client(tracking), tracking, experiment, manifest, root)
    models["late_sklearn"] = sklearn["logged"]
    # The scikit-learn flavor's loader is trusted here, as [mlops] trusted_model_modules would say.
    server = Server(root / "state", tracking, args=("--trusted-model-modules", "mlflow.sklearn")).start()
    try:
        for name in models:
            response = httpx.put(
                f"{server.url}/v1/admin/deployments/{name}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=300,  # loads the model: seconds alone, a minute beside the scale-out stack
                json={"variants": {"main": {"name": name, "version": "1"}}, "policy": {"kind": "single"}},
            )
            assert response.status_code == 200, response.text
        yield {"server": server, "models": models, "tracking": tracking, "root": root, "sklearn": sklearn}
    finally:
        server.stop()


def test_the_server_answers_each_task_in_its_own_terms(served: dict, manifest: str) -> None:
    import httpx

    from airflow_mlops.serving.models import json_rows

    test = pd.read_parquet(Path(manifest).parent / "test.parquet").head(20)
    body = {"rows": json_rows(test, ["x1", "x2", "colour"])}
    url = served["server"].url

    minutes = httpx.post(f"{url}/v1/models/minutes/predict", json=body, timeout=30).json()
    assert (Path(served["models"]["minutes"].removeprefix("file://")) / "code" / "byo_linear.py").is_file()
    expected = Scorer(served["models"]["minutes"])(test)
    assert [p["prediction"] for p in minutes["predictions"]] == pytest.approx(expected.tolist(), abs=1e-4)
    assert all(set(p) == {"prediction_id", "prediction"} for p in minutes["predictions"])

    band = httpx.post(f"{url}/v1/models/band/predict", json=body, timeout=30).json()
    probabilities = Scorer(served["models"]["band"])(test)
    classes = ["early", "late", "on_time"]
    assert [p["label"] for p in band["predictions"]] == [classes[i] for i in probabilities.argmax(1)]
    first = band["predictions"][0]["probabilities"]
    assert list(first) == classes and sum(first.values()) == pytest.approx(1.0, abs=1e-5)

    bad = httpx.post(
        f"{url}/v1/models/minutes/predict", json={"rows": [{"x1": 1.0, "colour": "red"}]}, timeout=30
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "rows", 0, "x2"]


def test_batch_scoring_writes_each_tasks_columns(served: dict, manifest: str, tmp_path: Path) -> None:
    from airflow_mlops.serving.batch import predict_partition

    partition = Path(manifest).parent / "test.parquet"
    test = pd.read_parquet(partition)
    for name, columns in (
        ("minutes", {"prediction"}),
        ("band", {"probability_early", "probability_late", "probability_on_time", "label"}),
    ):
        target = tmp_path / f"{name}.parquet"
        predict_partition(
            input_uri=partition.as_uri(),
            model_uri=f"models:/{name}/1",
            output_uri=str(target),
            key_columns=["colour"],
            tracking_uri=served["tracking"],
        )
        written = pd.read_parquet(target)
        assert columns <= set(written.columns) and len(written) == len(test)
        assert "probability" not in written.columns
    assert set(pd.read_parquet(tmp_path / "band.parquet")["label"]) <= {"early", "late", "on_time"}


def test_a_scikit_learn_model_is_registered_served_explained_and_batch_scored(
    served: dict, manifest: str, tmp_path: Path
) -> None:
    import httpx

    from airflow_mlops.serving.batch import predict_partition
    from airflow_mlops.serving.models import json_rows

    sklearn, url = served["sklearn"], served["server"].url
    test = pd.read_parquet(Path(manifest).parent / "test.parquet")
    expected = sklearn["pipeline"].predict_proba(test[["x1", "x2", "colour"]])[:, 1]
    # Registered as the user logged it (no package of ours), with the lineage and a card of its metrics.
    assert sklearn["source"] == sklearn["logged"] and sklearn["version"] == "1"
    assert sklearn["evaluation"]["auc"] > 0.85
    assert f"| auc | {sklearn['evaluation']['auc']:.4f} | none |" in Path(sklearn["model_card"]).read_text()

    answer = httpx.post(
        f"{url}/v1/models/late_sklearn/predict",
        json={"rows": json_rows(test.head(20), ["x1", "x2", "colour"])},
    ).json()
    assert [p["probability"] for p in answer["predictions"]] == pytest.approx(
        expected[:20].tolist(), abs=1e-6
    )
    for row, field, message in (
        ({"x1": 1.0, "x2": None}, "colour", "field required"),
        ({"x1": 1.0, "x2": None, "colour": 3}, "colour", "must be a string or null"),
        ({"x1": "one", "x2": None, "colour": "red"}, "x1", "must be a finite number or null"),
    ):
        bad = httpx.post(f"{url}/v1/models/late_sklearn/predict", json={"rows": [row]})
        assert bad.status_code == 422, bad.text
        assert bad.json()["detail"][0]["loc"] == ["body", "rows", 0, field]
        assert bad.json()["detail"][0]["msg"] == message

    # KernelSHAP over the pipeline's predict_proba: the attributions explain the row's probability
    # against the input example's typical row.
    row = json_rows(test.head(1), ["x1", "x2", "colour"])[0]
    explained = httpx.post(f"{url}/v1/models/late_sklearn/explain", json={"row": row}, timeout=60).json()
    assert explained["method"] == "kernel_shap" and explained["output"] == "probability"
    assert explained["value"] == pytest.approx(expected[0], abs=1e-6)
    assert set(explained["attributions"]) == {"x1", "x2", "colour"}
    total = explained["value"] - explained["baseline_value"]
    assert sum(explained["attributions"].values()) + explained["convergence_delta"] == pytest.approx(total)
    assert abs(explained["convergence_delta"]) < 0.05 + 0.2 * abs(total)

    target = tmp_path / "late.parquet"
    manifest_out = predict_partition(
        input_uri=(Path(manifest).parent / "test.parquet").as_uri(),
        model_uri="models:/late_sklearn@challenger",
        output_uri=str(target),
        key_columns=["colour"],
        tracking_uri=served["tracking"],
    )
    written = pd.read_parquet(target)
    assert written["probability"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert manifest_out["version"] == "1" and manifest_out["task"] == "binary"


def test_a_scikit_learn_model_is_monitored_for_drift_and_performance(
    served: dict, manifest: str, tmp_path: Path
) -> None:
    """The drift monitor reads the MLflow model's features from its signature and scores the
    registered version's training set for prediction drift; the performance monitor judges it on labels."""
    from airflow_mlops.evaluation.metrics import task_metrics
    from airflow_mlops.operators.monitor import DriftMonitorOperator, PerformanceMonitorOperator
    from tests.connections import mlflow_conn

    test = pd.read_parquet(Path(manifest).parent / "test.parquet").head(400)
    shifted = test.assign(x1=test["x1"] + 4.0)  # a window whose x1 moved two spreads
    window = served_window(served, "late_sklearn", shifted)
    context = {"ti": None, "data_interval_start": None, "data_interval_end": None}
    drift = DriftMonitorOperator(
        task_id="drift",
        endpoint="late_sklearn",
        request_log=str(window["requests"]),
        report_dir=str(tmp_path / "drift"),
        model_name="late_sklearn",
        mlflow_conn_id=mlflow_conn(served["tracking"]),
        start=window["start"],
        end=window["end"],
        reference_sample=2000,
    ).execute(context)  # type: ignore[arg-type]
    assert drift["version"] == "1" and drift["rows"] == 400
    assert drift["drifted"] == ["x1"] and drift["breached"]
    assert drift["prediction_psi"] is not None and drift["prediction_psi"] > 0.2  # more rows predicted late

    pd.DataFrame({"prediction_id": window["ids"], "late": shifted["late"].to_numpy()}).to_parquet(
        tmp_path / "labels.parquet"
    )
    performance = PerformanceMonitorOperator(
        task_id="performance",
        endpoint="late_sklearn",
        request_log=str(window["requests"]),
        report_dir=str(tmp_path / "performance"),
        labels=str(tmp_path / "labels.parquet"),
        label_column="late",
        start=window["start"],
        end=window["end"],
        mlflow_conn_id=None,
        bounds={"auc": {"min": 0.99}},
    ).execute(context)  # type: ignore[arg-type]
    served_probability = np.array([p["probability"] for p in window["answer"]["predictions"]])
    expected = task_metrics("binary", shifted["late"].to_numpy(), served_probability)
    assert performance["overall"]["auc"] == pytest.approx(expected["auc"], rel=1e-6)
    assert performance["breached"] == (expected["auc"] < 0.99)


def test_explanations_of_a_network_of_ones_own_add_up_to_its_prediction(served: dict, manifest: str) -> None:
    """KernelSHAP on a network that is not TabularMLP-shaped: for the (additive) linear network
    the attributions are its Shapley values exactly, and the categorical feature moves it most."""
    import httpx

    from airflow_mlops.serving.models import json_rows

    test = pd.read_parquet(Path(manifest).parent / "test.parquet")
    row = json_rows(test.head(1), ["x1", "x2", "colour"])[0]
    explained = httpx.post(
        f"{served['server'].url}/v1/models/minutes/explain", json={"row": row, "steps": 64}, timeout=60
    ).json()
    assert explained["method"] == "kernel_shap" and explained["output"] == "prediction"
    assert explained["value"] == pytest.approx(
        float(Scorer(served["models"]["minutes"])(test.head(1))[0]), abs=1e-4
    )
    total = explained["value"] - explained["baseline_value"]
    assert sum(explained["attributions"].values()) == pytest.approx(total, abs=1e-3 * max(1.0, abs(total)))
    assert explained["baseline"]["colour"] is None and explained["baseline"]["x1"] == pytest.approx(
        5.0, abs=0.2
    )
    # One numeric feature moved by one of its units moves the prediction by its coefficient (x1's is 10).
    moved = {**row, "x1": row["x1"] + 1.0}
    again = httpx.post(
        f"{served['server'].url}/v1/models/minutes/explain", json={"row": moved}, timeout=60
    ).json()
    assert again["attributions"]["x1"] - explained["attributions"]["x1"] == pytest.approx(10.0, abs=1.0)

    band = httpx.post(f"{served['server'].url}/v1/models/band/explain", json={"row": row}, timeout=60).json()
    assert band["method"] == "kernel_shap" and band["output"].startswith("probability_")


def test_the_server_imports_what_a_network_imports_from_its_code_path(served: dict, tmp_path: Path) -> None:
    """A package carries its network's module, not the modules that one imports from the user's
    project: ``airflow-mlops serve --code-path`` puts the project on the server's path. Without it
    the deployment fails naming the module, and the server keeps serving."""
    import httpx
    from mlflow import MlflowClient

    from tests.model_server import TOKEN, Server

    package = tmp_path / "package"
    shutil.copytree(Path(served["models"]["minutes"].removeprefix("file://")), package)
    # The same network under a module name of its own (a server imports a module name once).
    (package / "code" / "byo_linear.py").rename(package / "code" / "byo_helped.py")
    network = package / "code" / "byo_helped.py"
    network.write_text(
        network.read_text() + "\nfrom byo_helpers import SCALE  # a module of the user's project\n"
    )
    config = json.loads((package / "config.json").read_text())
    config.update(model="byo_helped:LinearNetwork", code="byo_helped.py")
    (package / "config.json").write_text(json.dumps(config))
    project = tmp_path / "project"
    project.mkdir()
    (project / "byo_helpers.py").write_text("SCALE = 1.0\n")
    client = MlflowClient(served["tracking"])
    run = client.create_run(client.get_experiment_by_name("byo").experiment_id)
    client.log_artifacts(run.info.run_id, str(package), "model")
    client.create_registered_model("helped")
    client.create_model_version("helped", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    record_digest(client, served["tracking"], "helped", "1")
    body = {"variants": {"main": {"name": "helped", "version": "1"}}, "policy": {"kind": "single"}}
    headers = {"Authorization": f"Bearer {TOKEN}"}

    without = httpx.put(
        f"{served['server'].url}/v1/admin/deployments/helped", headers=headers, json=body, timeout=300
    )
    assert without.status_code >= 400 and "byo_helpers" in without.text, without.text
    assert httpx.get(f"{served['server'].url}/readyz", timeout=10).status_code == 200

    server = Server(tmp_path / "state", served["tracking"], args=("--code-path", str(project))).start()
    try:
        deployed = httpx.put(
            f"{server.url}/v1/admin/deployments/helped", headers=headers, json=body, timeout=300
        )
        assert deployed.status_code == 200, deployed.text
        row = {"x1": 5.0, "x2": -1.0, "colour": "red"}
        answer = httpx.post(f"{server.url}/v1/models/helped/predict", json={"rows": [row]}, timeout=30).json()
        expected = Scorer(served["models"]["minutes"])(pd.DataFrame([row]))
        assert answer["predictions"][0]["prediction"] == pytest.approx(float(expected[0]), abs=1e-4)
    finally:
        server.stop()


def test_two_versions_of_a_network_module_load_side_by_side(
    served: dict, tmp_path: Path, manifest: str
) -> None:
    """A retrained version whose network's code changed, loaded in the process that holds the
    first (a canary, an evaluation against the champion), runs its own code, not the first one's."""
    first = Path(served["models"]["minutes"].removeprefix("file://"))
    second = tmp_path / "second"
    shutil.copytree(first, second)
    network = second / "code" / "byo_linear.py"
    source = network.read_text()
    assert "return self.task_output(" in source
    network.write_text(source.replace("return self.task_output(", "return 2 * self.task_output("))
    rows = pd.read_parquet(Path(manifest).parent / "test.parquet").head(50)

    before, after = Scorer(first)(rows), Scorer(second)(rows)
    assert after == pytest.approx(2 * before, rel=1e-5)
    assert Scorer(first)(rows) == pytest.approx(before)  # the first version still runs its own code


def test_a_model_the_suite_cannot_read_is_refused_with_what_it_lacks(tmp_path: Path, manifest: str) -> None:
    import mlflow
    from mlflow.models import infer_signature

    from airflow_mlops.evaluation.scoring import PyfuncScorer
    from airflow_mlops.exceptions import MLOpsError

    pipeline, inputs = fit_sklearn(manifest)
    signature = infer_signature(inputs, pipeline.predict_proba(inputs))
    cases = [
        ({}, signature, "its MLflow metadata lacks 'mlops_task'"),
        ({"mlops_task": "ranking"}, signature, r"metadata mlops_task must be one of .*got 'ranking'"),
        ({"mlops_task": "multiclass"}, signature, "needs metadata 'mlops_classes'"),
        ({"mlops_task": "binary"}, None, "has no signature"),
    ]
    for i, (metadata, declared, message) in enumerate(cases):
        folder = tmp_path / f"model{i}"
        mlflow.sklearn.save_model(
            pipeline,
            str(folder),
            signature=declared,
            metadata=metadata or None,
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=TRUSTED,
            pip_requirements=PIP,
        )
        with pytest.raises(MLOpsError, match=message):  # SpecError; MLOpsConfigError for the task
            PyfuncScorer(folder)
    # A scikit-learn classifier logged without pyfunc_predict_fn="predict_proba" predicts labels
    # (0 and 1 would pass for probabilities): refused before it loads.
    folder = tmp_path / "labels"
    mlflow.sklearn.save_model(
        pipeline,
        str(folder),
        signature=signature,
        metadata={"mlops_task": "binary"},
        skops_trusted_types=TRUSTED,
        pip_requirements=PIP,
    )
    with pytest.raises(SpecError, match=r"predicts with 'predict'.*pyfunc_predict_fn='predict_proba'"):
        PyfuncScorer(folder)
    # A model whose output does not fit its task is named when it predicts.
    folder = tmp_path / "two-classes-as-three"
    mlflow.sklearn.save_model(
        pipeline,
        str(folder),
        signature=signature,
        metadata={"mlops_task": "multiclass", "mlops_classes": ["a", "b", "c"]},
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=TRUSTED,
        pip_requirements=PIP,
    )
    with pytest.raises(
        SpecError, match=r"one probability per class \(3 columns, mlops_classes\), got shape \(3, 2\)"
    ):
        PyfuncScorer(folder)(inputs.head(3))


def served_window(served: dict, endpoint: str, rows: pd.DataFrame) -> dict:
    """``rows`` sent to ``endpoint`` in one request; returns the answer, its prediction ids, the
    window's ``start``/``end`` and the request log's folder, once the log holds every prediction."""
    import time
    from datetime import UTC, datetime

    import httpx

    from airflow_mlops.serving.models import json_rows
    from airflow_mlops.serving.requestlog import read_log

    start = datetime.now(UTC).isoformat()
    answer = httpx.post(
        f"{served['server'].url}/v1/models/{endpoint}/predict",
        json={"rows": json_rows(rows, ["x1", "x2", "colour"])},
        timeout=30,
    ).json()
    end = datetime.now(UTC).isoformat()
    ids = [p["prediction_id"] for p in answer["predictions"]]
    requests = served["root"] / "state" / "requests"
    deadline = time.monotonic() + 30  # the request log flushes every 2 s
    while not set(ids) <= set(read_log(requests)["prediction_id"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    return {"answer": answer, "ids": ids, "start": start, "end": end, "requests": requests}


def test_the_performance_monitor_judges_a_regression_model_on_its_labels(
    served: dict, manifest: str, tmp_path: Path
) -> None:
    from airflow_mlops.exceptions import MonitoringError
    from airflow_mlops.operators.monitor import PerformanceMonitorOperator

    test = pd.read_parquet(Path(manifest).parent / "test.parquet").head(200)
    window = served_window(served, "minutes", test)
    answer, ids, start, end, requests = (window[k] for k in ("answer", "ids", "start", "end", "requests"))
    pd.DataFrame({"prediction_id": ids, "minutes": test["minutes"].to_numpy()}).to_parquet(
        tmp_path / "labels.parquet"
    )

    def monitor(**arguments) -> PerformanceMonitorOperator:
        return PerformanceMonitorOperator(
            task_id="performance",
            endpoint="minutes",
            request_log=str(requests),
            report_dir=str(tmp_path / "reports"),
            labels=str(tmp_path / "labels.parquet"),
            label_column="minutes",
            start=start,
            end=end,
            mlflow_conn_id=None,
            **arguments,
        )

    context = {"ti": None, "data_interval_start": None, "data_interval_end": None}
    result = monitor(task="regression", bounds={"rmse": {"max": 1.0}, "r2": {"min": 0.5}}).execute(context)  # type: ignore[arg-type]
    expected = task_metrics(
        "regression", test["minutes"].to_numpy(), np.array([p["prediction"] for p in answer["predictions"]])
    )
    assert result["overall"]["rmse"] == pytest.approx(expected["rmse"], rel=1e-6)
    assert result["labelled"] == 200 and result["breached"]
    assert result["reasons"] == [f"rmse {expected['rmse']:.4f} > 1.0 on 200 labelled predictions"]  # r2 holds

    with pytest.raises(MonitoringError, match=r"'auc' is not a metric of a regression model"):
        monitor(task="regression", bounds={"auc": {"min": 0.7}})
    with pytest.raises(ValueError, match=r"min_auc and max_calibration_error are for binary models"):
        monitor(task="regression", min_auc=0.7)
    with pytest.raises(MonitoringError, match=r"'rmse' is not a metric of a multiclass model"):
        monitor(task="multiclass", bounds={"rmse": {"max": 1.0}})


def test_the_performance_monitor_judges_a_multiclass_model_from_the_classes_it_served(
    served: dict, manifest: str, tmp_path: Path
) -> None:
    from airflow_mlops.exceptions import MonitoringError
    from airflow_mlops.operators.monitor import PerformanceMonitorOperator
    from airflow_mlops.serving.requestlog import read_log

    test = pd.read_parquet(Path(manifest).parent / "test.parquet").head(300)
    window = served_window(served, "band", test)
    answer, ids, start, end, requests = (window[k] for k in ("answer", "ids", "start", "end", "requests"))
    logged = read_log(requests).set_index("prediction_id").loc[ids]
    assert [json.loads(o)["label"] for o in logged["output"]] == [p["label"] for p in answer["predictions"]]

    def monitor(labels: pd.Series, **arguments) -> dict:
        pd.DataFrame({"prediction_id": ids, "band": labels.to_numpy()}).to_parquet(
            tmp_path / "labels.parquet"
        )
        return PerformanceMonitorOperator(
            task_id="performance",
            endpoint="band",
            request_log=str(requests),
            report_dir=str(tmp_path / "reports"),
            labels=str(tmp_path / "labels.parquet"),
            label_column="band",
            start=start,
            end=end,
            mlflow_conn_id=None,
            task="multiclass",
            **arguments,
        ).execute({"ti": None, "data_interval_start": None, "data_interval_end": None})  # type: ignore[arg-type]

    result = monitor(test["band"], bounds={"macro_f1": {"min": 0.99}})
    classes = list(answer["predictions"][0]["probabilities"])
    probabilities = np.array([[p["probabilities"][c] for c in classes] for p in answer["predictions"]])
    expected = task_metrics("multiclass", test["band"].map(classes.index).to_numpy(), probabilities)
    assert result["overall"]["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-6)
    assert result["overall"]["macro_f1"] == pytest.approx(expected["macro_f1"], rel=1e-6)
    assert result["overall"]["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-5)
    assert result["labelled"] == 300 and result["breached"] == (expected["macro_f1"] < 0.99)

    with pytest.raises(MonitoringError, match=r"labels: band has \['storm'\], not classes of the model"):
        monitor(test["band"].where(test.index != test.index[0], "storm"))


def test_a_regression_version_registers_with_its_declared_signature_and_card(
    served: dict, manifest: str, tmp_path: Path
) -> None:
    import mlflow

    from airflow_mlops.evaluation.report import evaluate
    from airflow_mlops.registry.versions import register_version, registry_client

    folder = Path(served["models"]["minutes"].removeprefix("file://"))
    test = pd.read_parquet(Path(manifest).parent / "test.parquet")
    scorer = Scorer(folder)
    evaluation = {
        "split": "test",
        **evaluate(scorer(test), test, "minutes", slices=["colour"], task="regression"),
    }
    run = mlflow.MlflowClient(served["tracking"]).create_run(
        mlflow.MlflowClient(served["tracking"]).get_experiment_by_name("byo").experiment_id
    )
    registered = register_version(
        registry_client(served["tracking"]),
        served["tracking"],
        "minutes_registered",
        run.info.run_id,
        folder,
        test.drop(columns=["minutes"]).head(5),
        evaluation,
        {"training_set": manifest, "dag_id": "byo", "run_id": "manual__1"},
        tmp_path / "card",
        intended_use="Predict minutes.",
        limitations="Synthetic.",
    )
    card = Path(registered["model_card"]).read_text()
    assert f"| rmse | {evaluation['overall']['rmse']:.4f} | none |" in card
    assert "| colour | rows | RMSE | MAE | R² |" in card and "| slice | mae gap |" in card

    from airflow_mlops.hooks.mlflow import MlflowHook
    from tests.connections import mlflow_conn

    with MlflowHook(mlflow_conn(served["tracking"])).activated():
        loaded = mlflow.pyfunc.load_model(registered["model_uri"])
    inputs = loaded.metadata.get_input_schema().to_dict()
    assert [(c["name"], c["type"]) for c in inputs] == [
        ("x1", "double"),
        ("x2", "double"),
        ("colour", "string"),
    ]
    assert [c["name"] for c in loaded.metadata.get_output_schema().to_dict()] == ["prediction"]
    predicted = loaded.predict(test[["x1", "x2", "colour"]].head(50))
    assert predicted == pytest.approx(scorer(test.head(50)), abs=1e-5)
