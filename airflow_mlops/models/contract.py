"""What a trainable network and its data module must provide, checked before training starts.

No torch import at module level: the checks read classes and signatures, they build nothing.

**The data module** (a ``LightningDataModule``; the generic one is
:class:`airflow_mlops.training.tabular.TabularDataModule`) is built as
``DataModule(manifest=..., batch_size=..., seed=...)`` (plus ``features=`` when the spec gives a
feature spec) and provides:

- ``prepare()``: read the training set and learn the preprocessing (the training split only);
- ``inputs``: the names of the tensors a batch holds for the network (e.g. ``("numeric", "categorical")``);
- batches that are mappings of named tensors: the ``inputs``, ``"label"`` and, when weighted, ``"weight"``;
- ``splits``: ``{"train" | "validation" | "test": batch of the whole split}``, ``rows``: rows per split;
- ``model_inputs()``: what the network's constructor may take from the data (sizes, statistics);
- ``preprocessing``: JSON-able statistics saved with the model, so scoring transforms identically;
- ``task``: ``binary``, ``multiclass`` or ``regression``.

**The network** (a ``LightningModule``) provides ``forward``, ``training_step`` and
``configure_optimizers`` of its own (:class:`airflow_mlops.training.tabular.TabularNetwork` gives
the last two for any task). ``forward`` takes either one argument named ``batch`` (the mapping)
or arguments named after the data module's ``inputs``, and returns the task's raw output (see
:mod:`.tasks`). Its constructor takes its hyperparameters and any of ``model_inputs()``' keys;
every argument without a default must come from one or the other.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_mlops.exceptions import SpecError

#: Methods a network must define itself (not inherit from ``LightningModule``'s placeholders).
NETWORK_METHODS = ("forward", "training_step", "configure_optimizers")
#: What a data module must provide (attributes are checked after ``prepare()``).
DATA_METHODS = ("prepare", "model_inputs", "train_dataloader", "val_dataloader")


def _own(cls: type, method: str, base_names: Iterable[str]) -> bool:
    """Whether ``cls`` defines ``method`` below the framework base classes named ``base_names``."""
    for klass in cls.__mro__:
        if klass.__name__ in base_names and klass.__module__.split(".")[0] in {
            "pytorch_lightning",
            "lightning",
            "torch",
        }:
            return False
        if method in vars(klass):
            return True
    return False


def check_network(cls: Any, path: str) -> None:
    """A ``SpecError`` naming what ``cls`` (given as ``path``) lacks to be trained by the runtime."""
    if not isinstance(cls, type):
        raise SpecError(f"training spec: model {path!r} must be a class, got {type(cls).__name__}")
    bases = {k.__name__ for k in cls.__mro__}
    if "LightningModule" not in bases:
        raise SpecError(
            f"training spec: model {path!r} must subclass LightningModule (its bases: {sorted(bases)})"
        )
    missing = [m for m in NETWORK_METHODS if not _own(cls, m, ("LightningModule", "Module"))]
    if missing:
        raise SpecError(
            f"training spec: model {path!r} does not define {missing} (a network defines "
            f"{list(NETWORK_METHODS)}; subclass airflow_mlops.training.tabular.TabularNetwork for the last two)"
        )


def check_data_module(cls: Any, path: str) -> None:
    """A ``SpecError`` naming what the data module class lacks."""
    if not isinstance(cls, type):
        raise SpecError(f"training spec: data {path!r} must be a class, got {type(cls).__name__}")
    missing = [m for m in DATA_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise SpecError(f"training spec: data module {path!r} does not define {missing}")


def forward_arguments(model: Any) -> tuple[str, ...]:
    """The names ``forward`` takes: ``("batch",)`` for the mapping form, else the tensors' names."""
    parameters = inspect.signature(model.forward).parameters.values()
    return tuple(
        p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def check_forward(model_cls: Any, path: str, inputs: Iterable[str]) -> None:
    """``forward`` must take ``batch`` or only tensors the data module declares as ``inputs``."""
    parameters = inspect.signature(model_cls.forward).parameters
    names = [n for n in parameters if n != "self"]
    if names == ["batch"]:
        return
    declared = tuple(inputs)
    unknown = [n for n in names if n not in declared and parameters[n].default is inspect.Parameter.empty]
    if unknown or not names:
        raise SpecError(
            f"training spec: {path}.forward takes {names}; it must take 'batch' (a mapping of named "
            f"tensors) or tensors the data module provides: {list(declared)} (not provided: {unknown})"
        )


def call_network(model: Any, batch: Mapping[str, Any]) -> Any:
    """The network's raw output for a batch mapping, in whichever form its ``forward`` takes."""
    names = forward_arguments(model)
    if names == ("batch",):
        return model(batch)
    return model(**{n: batch[n] for n in names if n in batch})


def constructor_arguments(
    model_cls: Any, path: str, hyperparameters: Mapping[str, Any], data_inputs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The network's keyword arguments: its hyperparameters and the data's ``model_inputs()`` it takes.

    With ``data_inputs=None`` (before the data is read) only the hyperparameters are checked: each
    must be an argument. With them, every argument without a default must be given.
    """
    parameters = inspect.signature(model_cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    allowed = [
        n for n, p in parameters.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    bad = [n for n in hyperparameters if n not in allowed]
    if bad and not takes_any:
        raise SpecError(
            f"training spec: hyperparameters {bad} are not arguments of {path} (its arguments: {allowed})"
        )
    if data_inputs is None:
        return dict(hyperparameters)
    overlap = sorted(set(hyperparameters) & set(data_inputs))
    if overlap:
        raise SpecError(
            f"training spec: hyperparameters {overlap} of {path} are learnt from the data; remove them from the spec"
        )
    given = {**{k: v for k, v in data_inputs.items() if takes_any or k in allowed}, **hyperparameters}
    missing = [n for n in allowed if n not in given and parameters[n].default is inspect.Parameter.empty]
    if missing:
        raise SpecError(
            f"training spec: {path} needs arguments {missing}, given by neither the hyperparameters "
            f"({sorted(hyperparameters)}) nor the data module's model_inputs() ({sorted(data_inputs)})"
        )
    return given
