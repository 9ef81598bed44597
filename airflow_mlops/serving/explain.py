"""Feature attributions for one row, with Captum, for any model the server holds (no Airflow import).

Two methods, chosen by the model:

- **KernelSHAP over the model's predictions** (``method: kernel_shap``) for every model: a
  network of your own, a scikit-learn pipeline or any other MLflow pyfunc model. A coalition of
  features keeps the row's values for its members and the model's baseline row for the others
  (the training means and unseen categories of a package of this suite; the mean or most frequent
  value of an MLflow model's input example); Captum's ``KernelShap`` fits the Shapley values of
  the task's output (P(1); the predicted class's probability; the predicted value) from ``steps``
  x 8 sampled coalitions (at least 256), scored in one batch. They add up to ``value -
  baseline_value`` exactly for an additive model, approximately otherwise: the difference is
  reported as ``convergence_delta``.
- **Integrated gradients on the logit** (``method: integrated_gradients``) for a network shaped
  like the reference ``TabularMLP`` (``standardise``, ``embeddings``, ``mlp``):

The reference network standardises its numeric features, embeds its categorical ones and feeds
both to an MLP. Integrated gradients run on the raw numeric features and the embeddings: the
baseline is the training mean for every numeric feature (a missing value counts as the mean, as
in the model) and the "unseen" embedding (index 0) for every categorical one, so an attribution says how much a
feature's value moved the logit away from an average flight with unknown carrier and airports.
A categorical feature's attribution is the sum over its embedding dimensions. The attributions
add up to ``logit - baseline_logit`` up to the integration error, which is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .models import ServedModel
from .server import ModelServer

#: The parts of a network that integrated gradients on its logit need (the reference TabularMLP's).
GRADIENT_PARTS = ("embeddings", "mlp", "standardise", "numeric_mean")


def explain_row(
    server: ModelServer, endpoint: str, row: Mapping[str, Any], steps: int = 32
) -> dict[str, Any]:
    """Attributions of one row on the endpoint's primary variant (the variant a canary starts from)."""
    live = server.serving(endpoint)
    variant = live.policy.primary or next(iter(live.models))
    model = live.models[variant]
    network = getattr(model.scorer, "model", None)
    explained = (
        integrated_gradients(model, row, steps)
        if model.task == "binary" and all(hasattr(network, part) for part in GRADIENT_PARTS)
        else kernel_shap(model, row, steps)
    )
    return {
        "endpoint": endpoint,
        "variant": variant,
        "model": model.name,
        "version": model.version,
        **explained,
    }


def kernel_shap(model: ServedModel, row: Mapping[str, Any], steps: int = 32) -> dict[str, Any]:
    """Captum's KernelSHAP over ``model``'s predictions (see the module docstring)."""
    import pandas as pd
    import torch
    from captum.attr import KernelShap

    frame = model.frame([row])  # checked against the signature first (422 naming the field)
    names = list(model.features)
    values, baseline = frame.iloc[0].to_dict(), model.scorer.baseline()
    first = np.asarray(model.predict(frame))
    target = int(first[0].argmax()) if model.task == "multiclass" else None

    def output(predictions: np.ndarray) -> np.ndarray:
        return predictions[:, target] if target is not None else predictions

    def predict(coalitions: torch.Tensor) -> torch.Tensor:
        keep = coalitions.detach().numpy().astype(bool)
        mixed = pd.DataFrame.from_records(
            [
                {n: values[n] if k else baseline.get(n) for n, k in zip(names, kept, strict=True)}
                for kept in keep
            ],
            columns=names,
        )
        return torch.as_tensor(output(np.asarray(model.predict(mixed), dtype="float64")))

    samples = max(steps * 8, 256)
    ones = torch.ones(1, len(names), dtype=torch.float64)
    attributions = KernelShap(predict).attribute(
        ones, baselines=torch.zeros_like(ones), n_samples=samples, perturbations_per_eval=samples
    )[0]
    value, base = float(predict(ones)[0]), float(predict(torch.zeros_like(ones))[0])
    named = dict(zip(names, (float(a) for a in attributions), strict=True))
    if model.task == "binary":
        what = "probability"
    elif model.task == "multiclass":
        what = f"probability_{model.scorer.classes[target]}"
    else:
        what = "prediction"
    return {
        "method": "kernel_shap",
        "output": what,
        "value": value,
        "baseline_value": base,
        "baseline": {n: baseline.get(n) for n in names},
        "samples": samples,
        "convergence_delta": value - base - sum(named.values()),
        "attributions": dict(sorted(named.items(), key=lambda item: -abs(item[1]))),
    }


def integrated_gradients(model: ServedModel, row: Mapping[str, Any], steps: int = 32) -> dict[str, Any]:
    """Integrated gradients on a TabularMLP-shaped network's logit (see the module docstring)."""
    import torch

    values, logits, baselines, deltas = _integrated_gradients(model, model.frame([row]), steps)
    first = {column: float(v[0]) for column, v in values.items()}
    return {
        "method": "integrated_gradients",
        "output": "logit",
        "logit": float(logits[0]),
        "baseline_logit": float(baselines[0]),
        "probability": float(torch.sigmoid(torch.tensor(float(logits[0])))),
        "convergence_delta": float(deltas[0]),
        "attributions": dict(sorted(first.items(), key=lambda item: -abs(item[1]))),
    }


def attribution_frame(model: ServedModel, frame: Any, steps: int = 32) -> Any:
    """Attributions of many rows (a DataFrame of the model's features): one row of attributions
    per row, one column per feature, by the method :func:`explain_row` would choose: integrated
    gradients in one batch for a TabularMLP-shaped network, KernelSHAP row by row otherwise
    (each row checked against the signature first, as a request would be)."""
    import pandas as pd

    from .models import json_rows

    network = getattr(model.scorer, "model", None)
    if model.task == "binary" and all(hasattr(network, part) for part in GRADIENT_PARTS):
        values, *_ = _integrated_gradients(model, model.frame(json_rows(frame, list(model.features))), steps)
        return pd.DataFrame({column: np.asarray(v, dtype="float64") for column, v in values.items()})
    rows = json_rows(frame, list(model.features))
    return pd.DataFrame(
        [kernel_shap(model, row, steps)["attributions"] for row in rows], columns=list(model.features)
    ).astype("float64")


def _integrated_gradients(
    model: ServedModel, frame: Any, steps: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Per-feature attributions of every row of ``frame`` (checked rows), with each row's logit,
    baseline logit and convergence delta."""
    import torch
    from captum.attr import IntegratedGradients

    network = model.scorer.model
    numeric_columns = list(model.scorer.config["preprocessing"]["numeric"])
    categorical_columns = list(model.scorer.config["preprocessing"]["categorical"])
    inputs = model.scorer.inputs(frame)
    numeric, categorical = inputs["numeric"], inputs["categorical"]
    mean = network.numeric_mean.expand_as(numeric)
    numeric = torch.where(torch.isnan(numeric), mean, numeric)

    def logit(numeric: torch.Tensor, *embedded: torch.Tensor) -> torch.Tensor:
        return network.mlp(torch.cat([network.standardise(numeric), *embedded], dim=1)).squeeze(1)

    with torch.no_grad():
        embedded = tuple(e(categorical[:, i]) for i, e in enumerate(network.embeddings))
        unseen = tuple(e(torch.zeros_like(categorical[:, i])) for i, e in enumerate(network.embeddings))
    inputs = (numeric, *embedded)
    baselines = (mean.clone(), *unseen)
    attributions, delta = IntegratedGradients(logit).attribute(
        inputs, baselines=baselines, n_steps=steps, return_convergence_delta=True
    )
    values = {c: attributions[0][:, i].detach().numpy() for i, c in enumerate(numeric_columns)}
    values.update(
        {c: a.sum(dim=1).detach().numpy() for c, a in zip(categorical_columns, attributions[1:], strict=True)}
    )
    with torch.no_grad():
        logits, base = logit(*inputs).numpy(), logit(*baselines).numpy()
    return values, logits, base, delta.detach().numpy()
