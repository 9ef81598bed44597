"""Run a training spec: Lightning fit (DDP when launched by torchrun), evaluation, safe model files, MLflow.

No Airflow import here: ``python -m airflow_mlops.training spec.json`` runs on any machine with torch
and Lightning; MLflow is used when the spec names a tracking URI and the package is installed.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..artifacts import upload_folder, write_atomically  # noqa: TID252 (no "airflow" import line in the runtime)
from ..evaluation.report import finite  # noqa: TID252
from ..models.contract import call_network, constructor_arguments  # noqa: TID252
from ..models.package import package_code  # noqa: TID252
from ..models.tasks import check_task, metric_names  # noqa: TID252
from .spec import TrainingSpec, is_local, load_class, storage_path

log = logging.getLogger(__name__)
RESULT_FILE = "result.json"


def predict_split(model: Any, split: Mapping[str, Any], task: str, chunk_rows: int = 65536) -> Any:
    """The task's predictions (probabilities or values, as numpy) for a whole split, chunk by chunk."""
    import numpy as np
    import torch

    from .tabular import predictions

    model.eval()
    rows = len(split["label"])
    parts = []
    with torch.no_grad():
        for start in range(0, rows, chunk_rows):
            chunk = {k: v[start : start + chunk_rows] for k, v in split.items()}
            parts.append(predictions(task, call_network(model, chunk)).float().cpu().numpy())
    return np.concatenate(parts) if parts else np.empty(0)


def baseline_predictions(task: str, train_labels: Any, rows: int, classes: int = 0) -> Any:
    """The trivial model's predictions: the training split's rate, class frequencies or mean."""
    import numpy as np

    labels = np.asarray(train_labels)
    if task == "binary":
        return np.full(rows, min(max(float(labels.mean()), 1e-7), 1 - 1e-7))
    if task == "multiclass":
        frequencies = np.bincount(labels, minlength=classes) / len(labels)
        return np.tile(frequencies, (rows, 1))
    return np.full(rows, float(labels.mean()))


def evaluate(
    model: Any, split: Mapping[str, Any], task: str, train_labels: Any, classes: int = 0
) -> dict[str, float]:
    """The task's metrics of the model on a split and, as ``baseline_*``, of the trivial model
    (``classes``: how many a multiclass model predicts)."""
    from airflow_mlops.evaluation.metrics import task_metrics

    labels = split["label"].cpu().numpy()
    metrics = task_metrics(task, labels, predict_split(model, split, task))
    baseline = task_metrics(task, labels, baseline_predictions(task, train_labels, len(labels), classes))
    if task == "binary":
        baseline = {"auc": 0.5, "log_loss": baseline["log_loss"]}
    for name in metric_names(task):
        if name in baseline:
            metrics[f"baseline_{name}"] = baseline[name]
    metrics["rows"] = len(labels)
    return metrics


def run(spec: TrainingSpec) -> dict[str, Any] | None:
    """Fit, then on the first process save the model and write ``result.json``; returns the result there."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint

    options = spec.trainer_options()
    # Only the first process talks to MLflow (all of them creating its tables at once would race);
    # its import (seconds) overlaps reading the data.
    use_mlflow = bool(spec.mlflow.get("tracking_uri")) and int(os.environ.get("RANK", "0")) == 0
    prefetch = threading.Thread(target=importlib.import_module, args=("mlflow",), daemon=True)
    if use_mlflow:
        prefetch.start()
    pl.seed_everything(options["seed"], workers=True)
    data = load_class(spec.data, "data")(**spec.data_arguments())
    data.prepare()
    task = check_task(getattr(data, "task", "binary"), f"data module {spec.data}: task")
    model_cls = load_class(spec.model, "model")
    model = model_cls(
        **constructor_arguments(model_cls, spec.model, spec.hyperparameters, data.model_inputs())
    )

    checkpoints = storage_path(spec.checkpoint_dir)  # a folder or an object store prefix (fsspec)
    if is_local(checkpoints):
        checkpoints.mkdir(parents=True, exist_ok=True)
    last = checkpoints / "last.ckpt"
    resume = str(last) if last.exists() else None
    logger: Any = False
    if use_mlflow:
        from pytorch_lightning.loggers import MLFlowLogger

        prefetch.join()
        logger = MLFlowLogger(
            experiment_name=spec.mlflow.get("experiment", "Default"),
            tracking_uri=spec.mlflow["tracking_uri"],
            tags=spec.tags or None,
            artifact_location=spec.mlflow.get("artifact_location"),
            run_id=_previous_run_id(spec) if resume else None,
            # Step metrics go through MLflow's async queue instead of one store transaction each
            # (on SQLite about 40 ms apiece, 6 per epoch: 10 s of a 40-epoch fit on two cores). The
            # queue is drained when Lightning ends the run; the final metrics are logged after it.
            synchronous=False,
        )
    callbacks: list[Any] = [
        ModelCheckpoint(dirpath=str(checkpoints), save_last=True, save_top_k=1, every_n_epochs=1)
    ]
    pruning = None
    if spec.tuning:
        from .tuning import pruning_callback

        pruning = pruning_callback(spec.tuning)
        callbacks.append(pruning)
    trainer = pl.Trainer(
        accelerator=options["accelerator"],
        devices=options["devices"],
        num_nodes=options["num_nodes"],
        strategy=options["strategy"],
        precision=options["precision"],
        max_epochs=options["max_epochs"],
        limit_train_batches=options["limit_train_batches"],
        deterministic=True,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(checkpoints),
        callbacks=callbacks,
    )
    if resume:
        log.warning("Resuming from checkpoint %s", resume)
    if logger:
        log.info(
            "MLflow run %s in %s", logger.run_id, spec.mlflow["tracking_uri"]
        )  # opened before the clock starts
    started = time.perf_counter()
    start_epoch = _checkpoint_epoch(last) if resume else 0
    trainer.fit(model, datamodule=data, ckpt_path=resume)
    elapsed = time.perf_counter() - started
    if resume and "val_loss" not in trainer.callback_metrics:
        # Resumed from the last epoch's checkpoint (the attempt before died after it): nothing was left
        # to fit, the weights are the checkpoint's; validate once so the result has its val_loss.
        trainer.validate(model, datamodule=data, verbose=False)
    if trainer.global_rank != 0:
        return None

    epochs_run = trainer.current_epoch - start_epoch
    samples = data.rows["train"] // trainer.world_size * trainer.world_size * epochs_run
    metrics = final_metrics(model, data, task, trainer.callback_metrics)
    metrics["samples_per_s"] = samples / elapsed if elapsed > 0 else 0.0

    output = storage_path(spec.output_dir)
    with tempfile.TemporaryDirectory(prefix="airflow-mlops-model-") as scratch:
        # The package is made in a local folder (MLflow logs files, the user's code is copied as
        # files); a model in an object store is uploaded from it, result.json last.
        package = output if is_local(output) else Path(scratch)
        package.mkdir(parents=True, exist_ok=True)
        weights = io.BytesIO()
        torch.save(model.state_dict(), weights)
        write_atomically(package / "model.pt", weights.getvalue())
        init = {k: v for k, v in model.hparams.items()}
        config = package_config(spec, data, task, init, metrics)
        config["code"] = package_code(spec.model.partition(":")[0], package)
        write_atomically(
            package / "config.json", json.dumps(finite(config), indent=2, default=list, allow_nan=False)
        )
        run_id = None
        if logger:
            run_id = logger.run_id
            _log_run(logger.experiment, run_id, spec, metrics, trainer.world_size, package)
            (checkpoints / "mlflow_run_id").write_text(run_id)
        if not is_local(output):
            upload_folder(package, output)
    result = {
        "mlflow_run_id": run_id,
        "model_uri": output.resolve().as_uri() if is_local(output) else str(output),
        "model_artifact_uri": f"runs:/{run_id}/model" if run_id else None,
        "task": task,
        "metrics": metrics,
        "samples_per_s": metrics["samples_per_s"],
        "epochs": trainer.current_epoch,
        "world_size": trainer.world_size,
        "resumed_from": resume,
        "seconds": elapsed,
        "hyperparameters": spec.hyperparameters,
        "pruned_at_epoch": pruning.pruned_at_epoch if pruning is not None else None,
    }
    write_atomically(output / RESULT_FILE, json.dumps(finite(result), indent=2, allow_nan=False))
    return result


def final_metrics(model: Any, data: Any, task: str, logged: Mapping[str, Any]) -> dict[str, float]:
    """The task's metrics on the test and validation splits (``test_*``, ``validation_*``, with the
    trivial model's as ``*_baseline_*``) and the last ``val_loss`` the model logged."""
    train_labels = data.splits["train"]["label"].cpu().numpy()
    classes = len(data.preprocessing.get("classes", ()))
    metrics: dict[str, float] = {}
    for split in ("test", "validation"):
        scores = evaluate(model, data.splits[split], task, train_labels, classes)
        metrics.update({f"{split}_{k}": v for k, v in scores.items()})
    if "val_loss" in logged:  # a model class that logs no val_loss has none (never a NaN)
        metrics["val_loss"] = float(logged["val_loss"])
    return metrics


def _log_run(
    client: Any, run_id: str, spec: TrainingSpec, metrics: Mapping[str, float], world: int, output: Path
) -> None:
    for key, value in metrics.items():
        if math.isfinite(value):  # an undefined metric (NaN) is null in result.json, absent here
            client.log_metric(run_id, key, value)
    client.log_param(run_id, "training_set", spec.training_set)
    client.log_param(run_id, "world_size", world)
    client.log_artifact(run_id, str(output / "model.pt"), "model")
    client.log_artifact(run_id, str(output / "config.json"), "model")
    if (output / "code").is_dir():  # the user's network travels with the model (models.package)
        client.log_artifacts(run_id, str(output / "code"), "model/code")


def package_config(
    spec: TrainingSpec, data: Any, task: str, init: Mapping[str, Any], metrics: Mapping[str, Any]
) -> dict[str, Any]:
    """The model package's ``config.json``: how to rebuild the network (``model``, ``init``), the
    preprocessing, the task, the signature of its inputs and output, an input example, the format."""
    from airflow_mlops.models.package import FORMAT_VERSION, signature

    features = getattr(data, "spec", None)
    return {
        "format_version": FORMAT_VERSION,
        "model": spec.model,
        "init": dict(init),
        "task": task,
        "features": features.to_dict() if features is not None else None,
        "preprocessing": data.preprocessing,
        "signature": signature(task, data.preprocessing, getattr(data, "column_types", None)),
        "input_example": getattr(data, "example", []),
        "training_set": spec.training_set,
        "metrics": dict(metrics),
    }


def _checkpoint_epoch(path: Any) -> int:
    import torch

    with path.open("rb") as handle:  # a local file or an object (fsspec streams it)
        return int(torch.load(handle, map_location="cpu", weights_only=True).get("epoch", -1)) + 1


def _previous_run_id(spec: TrainingSpec) -> str | None:
    marker = storage_path(spec.checkpoint_dir) / "mlflow_run_id"
    return marker.read_text().strip() if marker.exists() else None
