"""The model package: the files a trained model is, and what its ``config.json`` declares.

No heavy import at module level. A model folder holds ``model.pt`` (a ``state_dict``, loaded with
``weights_only=True``: never pickled code) and ``config.json``:

==================  ======================================================================
``format_version``  this layout's version (:data:`FORMAT_VERSION`); a newer one is refused
``model``           ``module:Class`` of the network, rebuilt as ``Class(**init)``
``init``            the network's constructor arguments (its hyperparameters and sizes)
``task``            ``binary``, ``multiclass`` or ``regression``
``features``        the :class:`~airflow_mlops.models.FeatureSpec` it was trained with
``preprocessing``   the statistics learnt on the training split (numeric means and spreads,
                    vocabularies, classes, the label's mean and spread)
``signature``       ``{"inputs": [{"name", "type"}], "outputs": [...]}``, MLflow's column types
``input_example``   a few rows of the test split, as JSON objects
``metrics``         the training run's metrics
``code``            the network's module as it travels in the package's ``code/`` folder
                    (absent when the network is the suite's own)
==================  ======================================================================

**The user's code travels with the model**: when the network's module is not part of
``airflow_mlops``, training copies its source file (and the ``__init__.py`` files of its packages)
into ``code/`` beside the weights, so a registered version loads on any machine that reaches the
registry, the model server included, without the user's project on its path. Keep a network in
one module (its imports of other modules of your project do not travel; libraries do, by name).

A folder written before the format had a version (``format_version`` absent) is read as a binary
model whose inputs are its preprocessing's columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_mlops.exceptions import ModelNotFoundError, SpecError
from airflow_mlops.storage import local_path

from .tasks import check_task

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"


def output_columns(task: str, classes: Sequence[Any] = ()) -> list[dict[str, str]]:
    """The prediction's columns: ``probability``; one ``probability_<class>`` per class; ``prediction``."""
    if task == "binary":
        return [{"name": "probability", "type": "double"}]
    if task == "multiclass":
        return [{"name": f"probability_{c}", "type": "double"} for c in classes]
    return [{"name": "prediction", "type": "double"}]


def prediction_columns(task: str, predictions: Any, classes: Sequence[Any] = ()) -> dict[str, Any]:
    """Batch predictions as named columns: ``probability`` (binary), ``probability_<class>`` and
    ``label`` (multiclass: the most probable class), or ``prediction`` (regression)."""
    import numpy as np

    values = np.asarray(predictions)
    if task == "binary":
        return {"probability": values}
    if task == "regression":
        return {"prediction": values}
    classes = list(classes)
    columns: dict[str, Any] = {f"probability_{c}": values[:, i] for i, c in enumerate(classes)}
    columns["label"] = np.asarray(classes, dtype=object)[values.argmax(axis=1)]
    return columns


def prediction_records(task: str, predictions: Any, classes: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """One JSON object per row: ``{"probability"}`` (binary), ``{"label", "probabilities": {class:
    p}}`` (multiclass) or ``{"prediction"}`` (regression)."""
    if task == "binary":
        return [{"probability": float(p)} for p in predictions]
    if task == "regression":
        return [{"prediction": float(p)} for p in predictions]
    names = [str(c) for c in classes]
    return [
        {
            "label": names[int(row.argmax())],
            "probabilities": {c: float(p) for c, p in zip(names, row, strict=True)},
        }
        for row in predictions
    ]


def logged_value(task: str, prediction: Any) -> float:
    """The number the request log keeps per row in ``probability``: P(1) (binary), the top class's
    probability (multiclass) or the predicted value (regression)."""
    import numpy as np

    return float(np.max(prediction)) if task == "multiclass" else float(prediction)


def logged_output(task: str, prediction: Any, classes: Sequence[Any] = ()) -> str | None:
    """What the request log keeps in ``output`` beside the one number: for a multiclass model the
    answer as JSON (``{"label", "probabilities": {class: p}}``, which its performance needs); None
    for the others (``probability`` says it all)."""
    import json

    if task != "multiclass":
        return None
    return json.dumps(prediction_records(task, [prediction], classes)[0])


def column_types(frame: Any, numeric: Sequence[str]) -> dict[str, str]:
    """MLflow's type of each numeric column as the training data has it: integers ``long``, the
    rest ``double`` (MLflow refuses int64 data for a double column, and floats for a long one)."""
    import pandas as pd

    return {c: "long" if pd.api.types.is_integer_dtype(frame[c]) else "double" for c in numeric}


def signature(
    task: str, preprocessing: Mapping[str, Any], types: Mapping[str, str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Inputs (numeric columns ``long`` or ``double`` as ``types`` says, else ``double``;
    categorical ``string``; all may be null) and outputs."""
    check_task(task)
    types = types or {}
    inputs = [
        {"name": c, "type": types.get(c, "double"), "required": False} for c in preprocessing["numeric"]
    ]
    inputs += [{"name": c, "type": "string", "required": False} for c in preprocessing["categorical"]]
    return {"inputs": inputs, "outputs": output_columns(task, preprocessing.get("classes", ()))}


def mlflow_signature(declared: Mapping[str, Any]) -> Any:
    """The declared signature as MLflow's ``ModelSignature`` (for ``log_model``)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    def schema(columns: Sequence[Mapping[str, Any]]) -> Schema:
        return Schema([ColSpec(c["type"], c["name"], required=c.get("required", True)) for c in columns])

    return ModelSignature(inputs=schema(declared["inputs"]), outputs=schema(declared["outputs"]))


CODE_DIR = "code"


def package_code(module_name: str, output: Path) -> str | None:
    """Copy the network's module (and its packages' ``__init__.py``) into ``output/code``; returns
    the module's path there, or None for a module of this suite or one without a source file."""
    import importlib.util
    import shutil

    top = module_name.split(".")[0]
    if top == "airflow_mlops":
        return None
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    source = Path(spec.origin)
    parts = module_name.split(".")
    relative = Path(*parts[:-1], source.name) if source.name != "__init__.py" else Path(*parts, "__init__.py")
    target = output / CODE_DIR / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    root = source.parents[len(parts) - (0 if source.name == "__init__.py" else 1)]
    for depth in range(1, len(parts)):
        init = root.joinpath(*parts[:depth], "__init__.py")
        if init.is_file():
            shutil.copyfile(init, output / CODE_DIR / Path(*parts[:depth], "__init__.py"))
    return str(relative)


#: The module prefix a model server trusts whatever it is configured with: this suite's own networks.
OWN_MODULES = ("airflow_mlops",)
#: The model version tag holding the package's digest (:func:`package_digest`), set at registration.
DIGEST_TAG = "package_sha256"


def package_digest(folder: Path) -> str:
    """SHA-256 of a model folder as a whole: of every file's relative path and content, in path
    order, so a changed, added or removed file changes it. A symbolic link in the folder is
    refused (``SpecError``): it could make the loaded file one the digest never saw."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        if path.is_symlink():
            raise SpecError(f"model {str(folder)!r}: {path.relative_to(folder)} is a symbolic link")
        if not path.is_file():
            continue
        content = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                content.update(block)
        digest.update(f"{path.relative_to(folder).as_posix()}\0{content.hexdigest()}\n".encode())
    return digest.hexdigest()


def is_trusted(module: str, trusted: Sequence[str]) -> bool:
    """Whether ``module`` is one of ``trusted`` or inside one of them (``mlflow.sklearn`` trusts
    ``mlflow.sklearn.utils``; ``mlflow`` trusts every MLflow module)."""
    return any(module == t or module.startswith(f"{t}.") for t in (*OWN_MODULES, *trusted))


def import_network(config: Mapping[str, Any], folder: Path, trusted: Sequence[str] | None = None) -> Any:
    """The network class ``config["model"]`` names, for the package in ``folder``.

    With ``trusted`` (a model server's ``[mlops] trusted_model_modules``), a module the package
    does not carry is imported only when it lies in :data:`OWN_MODULES` or in ``trusted``: a
    ``config.json`` naming ``subprocess:run`` is a ``SpecError``, and nothing is imported. (The
    module a package carries is checked by the package's digest before this runs.) Without it
    (a pipeline's tasks loading their own training output) any module on the path is imported.

    When the package carries its network's module (``config["code"]``), that file is imported
    under a name of its own, derived from its content (``mlops_code_<sha256>_<module>``), not by
    its module name: a process that loads two versions whose code differs (a server running a
    canary of a retrained network, an evaluation against the champion) gets each version's own
    class, never the first one imported. The module's imports of libraries and of modules on the
    path work as usual. Otherwise (the suite's own networks, a package without code) the module
    is imported by name from the path.
    """
    import hashlib
    import importlib.util
    import sys

    from airflow_mlops.training.spec import load_class

    module_name, _, class_name = str(config["model"]).partition(":")
    source = folder / CODE_DIR / str(config["code"]) if config.get("code") else None
    if source is not None:
        if not source.resolve().is_relative_to((folder / CODE_DIR).resolve()):
            raise SpecError(
                f"model {str(folder)!r}: {CONFIG_FILE} code {str(config['code'])!r} must be a file inside {CODE_DIR}/"
            )
        own = module_name.replace(".", "/")
        if str(config["code"]) not in (f"{own}.py", f"{own}/__init__.py"):
            raise SpecError(
                f"model {str(folder)!r}: {CONFIG_FILE} code {str(config['code'])!r} is not the file of the "
                f"network's module {module_name!r} ({own}.py)"
            )
    if source is None or not source.is_file():
        if trusted is not None and not is_trusted(module_name, trusted):
            raise SpecError(
                f"model {str(folder)!r}: its network's module {module_name!r} is neither carried in the "
                f"package nor trusted ([mlops] trusted_model_modules: {list((*OWN_MODULES, *trusted))}); "
                "the server imports nothing else"
            )
        return load_class(str(config["model"]), "model")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    unique = f"mlops_code_{digest}_{module_name.replace('.', '_')}"
    if unique not in sys.modules:
        spec = importlib.util.spec_from_file_location(unique, source)
        if spec is None or spec.loader is None:
            raise SpecError(f"model {str(folder)!r}: {source} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[unique]
            raise SpecError(
                f"model {str(folder)!r}: its network's module {module_name} ({source.name}) failed to import: "
                f"{type(err).__name__}: {err}"
            ) from err
    network = getattr(sys.modules[unique], class_name, None)
    if network is None:
        raise SpecError(f"model {str(folder)!r}: its module {module_name} has no {class_name!r}")
    return network


#: The network of every format-0 package (the reference MLP, same parameters and state dict).
LEGACY_NETWORK = "airflow_mlops.training.tabular:TabularMLP"


def read_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a model folder, checked and completed for a folder of the unversioned format."""
    path = local_path(folder, "model folder")
    config_path = path / CONFIG_FILE
    if not config_path.is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ModelNotFoundError(
            f"model {str(folder)!r}: expected {WEIGHTS_FILE} and {CONFIG_FILE} in the folder"
        )
    try:
        config = json.loads(config_path.read_text())
    except ValueError as err:
        raise SpecError(f"model {str(folder)!r}: {CONFIG_FILE} is not JSON ({err})") from None
    if not isinstance(config, dict):
        raise SpecError(
            f"model {str(folder)!r}: {CONFIG_FILE} must hold an object, got {type(config).__name__}"
        )
    version = config.get("format_version", 0)
    if not isinstance(version, int) or not 0 <= version <= FORMAT_VERSION:
        raise SpecError(
            f"model {str(folder)!r}: format_version {version!r} is not one this suite reads (0..{FORMAT_VERSION}); "
            "upgrade airflow-mlops"
        )
    missing = [k for k in ("model", "init", "preprocessing") if k not in config]
    if missing:
        raise SpecError(f"model {str(folder)!r}: {CONFIG_FILE} lacks {missing}")
    if version == 0:
        # Before format 1 every package held the reference MLP under a class path of the provider
        # that has since moved out of it; its weights are TabularMLP's.
        config["model"] = LEGACY_NETWORK
    config.setdefault("task", "binary")
    check_task(config["task"], f"model {str(folder)!r}: task")
    config.setdefault("signature", signature(config["task"], config["preprocessing"]))
    config.setdefault("input_example", [])
    return config


#: MLflow model metadata keys an MLflow model (not a package of this suite) declares its task with.
PYFUNC_TASK, PYFUNC_CLASSES, PYFUNC_LABEL = "mlops_task", "mlops_classes", "mlops_label"
#: MLflow column types the suite reads; a signature with any other input type is refused.
PYFUNC_INPUT_TYPES = ("double", "float", "long", "integer", "string", "boolean")


def check_loader(flavors: Mapping[str, Any], where: str, trusted: Sequence[str] | None) -> None:
    """``SpecError`` unless an MLflow model has a ``python_function`` flavor whose loader module is
    trusted (any loader when ``trusted`` is None)."""
    if "python_function" not in flavors:
        raise SpecError(f"{where}: has no python_function flavor (flavors: {sorted(flavors)})")
    loader = str(flavors["python_function"].get("loader_module", ""))
    if trusted is not None and not is_trusted(loader, trusted):
        raise SpecError(
            f"{where}: its loader {loader!r} is not trusted ([mlops] trusted_model_modules: "
            f"{list((*OWN_MODULES, *trusted))}); an MLflow flavor's loader may run code the model carries, "
            f"so the server loads it only when trusted (add {loader!r} to load models of that flavor)"
        )


def pyfunc_contract(folder: Path, trusted: Sequence[str] | None = None) -> dict[str, Any]:
    """What an MLflow model (``MLmodel``) declares to be served by the suite, checked without
    loading it: a ``python_function`` flavor, a column-based **signature** whose inputs are of
    :data:`PYFUNC_INPUT_TYPES`, and the **task** in the model's metadata::

        mlflow.sklearn.log_model(
            pipeline, name="model", signature=infer_signature(X, y), input_example=X.head(5),
            pyfunc_predict_fn="predict_proba",           # classifiers: probabilities, not labels
            metadata={"mlops_task": "binary",            # binary | multiclass | regression
                      "mlops_classes": ["a", "b", "c"],  # multiclass: predict_proba's column order
                      "mlops_label": "is_delayed"},      # optional: the label column
        )

    With ``trusted`` (a model server's ``[mlops] trusted_model_modules``), the flavor's loader
    module (``mlflow.sklearn``; ``mlflow.pyfunc.model`` for a Python model, which runs the code it
    carries) must be trusted, else ``SpecError`` before anything is loaded.

    Returns ``{"task", "classes", "label", "signature", "input_example"}``; raises ``SpecError``
    naming the model and what it lacks.
    """
    from mlflow.models import Model

    where = f"model {str(folder)!r}"
    try:
        logged = Model.load(str(folder / "MLmodel"))
    except Exception as err:  # MLflow raises several types for a malformed MLmodel
        raise SpecError(f"{where}: MLmodel cannot be read ({err})") from None
    check_loader(logged.flavors, where, trusted)
    metadata = logged.metadata or {}
    task = metadata.get(PYFUNC_TASK)
    if task is None:
        raise SpecError(
            f"{where}: its MLflow metadata lacks {PYFUNC_TASK!r}; log it with "
            f"metadata={{{PYFUNC_TASK!r}: 'binary' | 'multiclass' | 'regression'}}"
        )
    check_task(task, f"{where}: metadata {PYFUNC_TASK}")
    classes = metadata.get(PYFUNC_CLASSES) or []
    if task == "multiclass" and (not isinstance(classes, list) or len(classes) < 2):
        raise SpecError(
            f"{where}: a multiclass model needs metadata {PYFUNC_CLASSES!r}, the classes in the "
            f"order of its probability columns (at least 2), got {classes!r}"
        )
    predict_fn = logged.flavors["python_function"].get("predict_fn", "predict")
    if "sklearn" in logged.flavors and task != "regression" and predict_fn != "predict_proba":
        raise SpecError(
            f"{where}: a {task} scikit-learn model that predicts with {predict_fn!r} answers labels, "
            "not probabilities; log it with pyfunc_predict_fn='predict_proba'"
        )
    if logged.signature is None or logged.signature.inputs is None:
        raise SpecError(f"{where}: has no signature; log it with signature=infer_signature(inputs, outputs)")
    if logged.signature.inputs.is_tensor_spec() or not logged.signature.inputs.has_input_names():
        raise SpecError(
            f"{where}: its signature's inputs must be named columns (a tensor signature is not supported)"
        )
    inputs = []
    for column in logged.signature.inputs.inputs:
        kind = getattr(column.type, "name", str(column.type))
        if kind not in PYFUNC_INPUT_TYPES:
            raise SpecError(
                f"{where}: input column {column.name!r} has type {kind!r}; the suite reads {list(PYFUNC_INPUT_TYPES)}"
            )
        inputs.append({"name": column.name, "type": kind, "required": bool(column.required)})
    example: list[dict[str, Any]] = []
    try:
        loaded = logged.load_input_example(str(folder))
    except Exception:  # an example that no longer loads leaves the baseline at None values
        loaded = None
    if loaded is not None and hasattr(loaded, "to_dict"):
        example = loaded.to_dict(orient="records")
    return {
        "task": task,
        "classes": list(classes),
        "label": metadata.get(PYFUNC_LABEL),
        "signature": {"inputs": inputs, "outputs": output_columns(task, classes)},
        "input_example": example,
    }


def input_columns(folder: Path) -> list[str]:
    """The input columns of the model in ``folder`` (a package of this suite or an MLflow model),
    read from its declared signature without loading the model."""
    if (folder / CONFIG_FILE).is_file():
        return [c["name"] for c in read_config(folder)["signature"]["inputs"]]
    return [c["name"] for c in pyfunc_contract(folder)["signature"]["inputs"]]
