"""Hyperparameter search with Optuna: search spaces, studies in RDB storage, pruning through Lightning.

No Airflow import: the pruning callback runs inside the training workers. The storage URL reaches
them through the :data:`STORAGE_ENV` environment variable, never the spec file, so a Postgres
password stays out of files and logs.

A search space is JSON, one entry per hyperparameter::

    {"hidden": {"type": "int", "low": 16, "high": 128, "log": true},
     "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
     "layers": {"type": "categorical", "choices": [1, 2, 3]}}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .spec import SpecError

STORAGE_ENV = "MLOPS_OPTUNA_STORAGE"
_KEYS = {
    "int": {"type", "low", "high", "log", "step"},
    "float": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
PRUNERS = ("median", "percentile", "threshold", "none")


def distributions(space: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna distributions of a search space; a bad entry is a :class:`SpecError` naming it and the rule."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not isinstance(space, Mapping) or not space:
        raise SpecError(
            f"search space: must be a non-empty mapping of hyperparameter -> distribution, got {space!r}"
        )
    result: dict[str, Any] = {}
    for name, entry in space.items():
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        if kind not in _KEYS:
            raise SpecError(f"search space: {name!r} needs a 'type' among {sorted(_KEYS)}, got {entry!r}")
        unknown = set(entry) - _KEYS[kind]
        if unknown:
            raise SpecError(
                f"search space: {name!r} ({kind}) has unknown keys {sorted(unknown)}; "
                f"allowed: {sorted(_KEYS[kind])}"
            )
        if kind == "categorical":
            choices = entry.get("choices")
            if not isinstance(choices, list) or not choices:
                raise SpecError(
                    f"search space: {name!r} needs a non-empty list of 'choices', got {choices!r}"
                )
            result[name] = CategoricalDistribution(choices)
            continue
        low, high = entry.get("low"), entry.get("high")
        number = int if kind == "int" else (int, float)
        if not isinstance(low, number) or not isinstance(high, number) or isinstance(low, bool) or low > high:
            raise SpecError(
                f"search space: {name!r} ({kind}) needs numbers low <= high, got low={low!r} high={high!r}"
            )
        if entry.get("log") and low <= 0:
            raise SpecError(f"search space: {name!r} has log=true, which needs low > 0, got low={low!r}")
        try:
            if kind == "int":
                result[name] = IntDistribution(
                    int(low), int(high), log=bool(entry.get("log")), step=entry.get("step", 1)
                )
            else:
                result[name] = FloatDistribution(
                    low, high, log=bool(entry.get("log")), step=entry.get("step")
                )
        except ValueError as err:
            raise SpecError(f"search space: {name!r}: {err}") from None
    return result


def make_pruner(options: Mapping[str, Any] | None) -> Any:
    """``{"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1}``; also percentile, threshold, none."""
    import optuna

    options = dict(options or {"type": "none"})
    kind = options.pop("type", None)
    classes = {
        "median": optuna.pruners.MedianPruner,
        "percentile": optuna.pruners.PercentilePruner,
        "threshold": optuna.pruners.ThresholdPruner,
        "none": optuna.pruners.NopPruner,
    }
    if kind not in classes:
        raise SpecError(f"pruner: 'type' must be one of {list(PRUNERS)}, got {kind!r}")
    try:
        return classes[kind](**options)
    except (TypeError, ValueError) as err:
        raise SpecError(f"pruner {kind!r}: bad options {options}: {err}") from None


def storage_url() -> str:
    url = os.environ.get(STORAGE_ENV, "")
    if not url:
        raise SpecError(f"tuning: the Optuna storage URL is not set (environment variable {STORAGE_ENV})")
    return url


def pruning_callback(tuning: Mapping[str, Any]) -> Any:
    """A Lightning callback that reports ``tuning['metric']`` to the trial after every validation and
    stops the fit (on every DDP process) when the study's pruner says so."""
    import optuna
    import pytorch_lightning as pl

    class OptunaPruning(pl.Callback):
        def __init__(self) -> None:
            self.metric = tuning.get("metric", "val_loss")
            self.pruned_at_epoch: int | None = None
            self._trial: optuna.trial.Trial | None = None

        def trial(self) -> optuna.trial.Trial:
            if self._trial is None:
                study = optuna.load_study(
                    study_name=tuning["study"],
                    storage=storage_url(),
                    pruner=make_pruner(tuning.get("pruner")),
                )
                self._trial = optuna.trial.Trial(study, int(tuning["trial_id"]))
            return self._trial

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            prune = False
            if trainer.global_rank == 0:
                value = trainer.callback_metrics.get(self.metric)
                if value is None:
                    raise SpecError(
                        f"tuning: metric {self.metric!r} was not logged; logged: "
                        f"{sorted(trainer.callback_metrics)}"
                    )
                self.trial().report(float(value), step=trainer.current_epoch)
                prune = self.trial().should_prune()
            if trainer.strategy.broadcast(prune):
                trainer.should_stop = True
                self.pruned_at_epoch = trainer.current_epoch

    return OptunaPruning()
