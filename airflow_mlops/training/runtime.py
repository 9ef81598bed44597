"""Run a training spec: Lightning fit (DDP when launched by torchrun), evaluation, safe model files, MLflow.

No Airflow import here: ``python -m airflow_mlops.training spec.json`` runs on any machine with torch
and Lightning; MLflow is used when the spec names a tracking URI and the package is installed.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..artifacts import write_atomically  # noqa: TID252 (no "airflow" import line in the runtime)
from .spec import TrainingSpec, load_class

log = logging.getLogger(__name__)
RESULT_FILE = "result.json"


def evaluate(model: Any, split: tuple[Any, ...], base_rate: float) -> dict[str, float]:
    """ROC AUC and log loss of the model and of the trivial baseline (always the training rate)."""
    import torch
    from torchmetrics.functional.classification import binary_auroc

    numeric, categorical, label = split
    model.eval()
    with torch.no_grad():
        probability = torch.sigmoid(model(numeric, categorical)).clamp(1e-7, 1 - 1e-7)
    constant = torch.full_like(label, min(max(base_rate, 1e-7), 1 - 1e-7))
    bce = torch.nn.functional.binary_cross_entropy
    return {
        "auc": float(binary_auroc(probability, label.long())),
        "log_loss": float(bce(probability, label)),
        "baseline_auc": 0.5,
        "baseline_log_loss": float(bce(constant, label)),
        "positive_rate": float(label.mean()),
        "rows": len(label),
    }


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
    data = load_class(spec.data, "data")(
        manifest=spec.training_set, batch_size=spec.batch_size, seed=options["seed"]
    )
    data.prepare()
    model = load_class(spec.model, "model")(**spec.hyperparameters, **data.model_inputs())

    checkpoints = Path(spec.checkpoint_dir)
    checkpoints.mkdir(parents=True, exist_ok=True)
    last = checkpoints / "last.ckpt"
    resume = str(last) if last.exists() else None
    logger: Any = False
    if use_mlflow:
        from pytorch_lightning.loggers import MLFlowLogger

        prefetch.join()
        logger = MLFlowLogger(
            experiment_name=spec.mlflow.get("experiment", "flights"),
            tracking_uri=spec.mlflow["tracking_uri"],
            tags=spec.tags or None,
            artifact_location=spec.mlflow.get("artifact_location"),
            run_id=_previous_run_id(spec) if resume else None,
        )
    callbacks: list[Any] = [
        ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=1, every_n_epochs=1)
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
    base_rate = float(data.splits["train"][2].mean())
    metrics = {f"test_{k}": v for k, v in evaluate(model, data.splits["test"], base_rate).items()}
    metrics.update(
        {f"validation_{k}": v for k, v in evaluate(model, data.splits["validation"], base_rate).items()}
    )
    if "val_loss" in trainer.callback_metrics:  # a model class that logs no val_loss has none (never a NaN)
        metrics["val_loss"] = float(trainer.callback_metrics["val_loss"])
    metrics["samples_per_s"] = samples / elapsed if elapsed > 0 else 0.0

    output = Path(spec.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    write_atomically(output / "model.pt", weights.getvalue())
    init = {k: v for k, v in model.hparams.items()}
    config = {
        "model": spec.model,
        "init": init,
        "preprocessing": data.preprocessing,
        "training_set": spec.training_set,
        "metrics": metrics,
    }
    write_atomically(output / "config.json", json.dumps(config, indent=2, default=list))
    run_id = None
    if logger:
        run_id = logger.run_id
        client = logger.experiment
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        client.log_param(run_id, "training_set", spec.training_set)
        client.log_param(run_id, "world_size", trainer.world_size)
        client.log_artifact(run_id, str(output / "model.pt"), "model")
        client.log_artifact(run_id, str(output / "config.json"), "model")
        (checkpoints / "mlflow_run_id").write_text(run_id)
    result = {
        "mlflow_run_id": run_id,
        "model_uri": (output.resolve()).as_uri(),
        "model_artifact_uri": f"runs:/{run_id}/model" if run_id else None,
        "metrics": metrics,
        "samples_per_s": metrics["samples_per_s"],
        "epochs": trainer.current_epoch,
        "world_size": trainer.world_size,
        "resumed_from": resume,
        "seconds": elapsed,
        "hyperparameters": spec.hyperparameters,
        "pruned_at_epoch": pruning.pruned_at_epoch if pruning is not None else None,
    }
    write_atomically(output / RESULT_FILE, json.dumps(result, indent=2))
    return result


def _checkpoint_epoch(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True).get("epoch", -1)) + 1


def _previous_run_id(spec: TrainingSpec) -> str | None:
    marker = Path(spec.checkpoint_dir) / "mlflow_run_id"
    return marker.read_text().strip() if marker.exists() else None
