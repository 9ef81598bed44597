"""Feature attributions for one row: Captum's integrated gradients (no Airflow import).

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

from .models import RowError
from .server import ModelServer


def explain_row(
    server: ModelServer, endpoint: str, row: Mapping[str, Any], steps: int = 32
) -> dict[str, Any]:
    """Attributions of one row on the endpoint's primary variant (the variant a canary starts from)."""
    import torch
    from captum.attr import IntegratedGradients

    live = server.serving(endpoint)
    variant = live.policy.primary or next(iter(live.models))
    model = live.models[variant]
    network = model.scorer.model
    if not all(hasattr(network, part) for part in ("embeddings", "mlp", "standardise", "numeric_mean")):
        raise RowError(
            ["path", "endpoint"],
            f"model {model.name} v{model.version} does not support explanations "
            "(it needs standardise, embeddings and an mlp, like TabularMLP)",
        )
    inputs = model.scorer.inputs(model.frame([row]))
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
    values = dict(zip(model.numeric, attributions[0][0].tolist(), strict=True))
    values.update(
        {column: float(a[0].sum()) for column, a in zip(model.categorical, attributions[1:], strict=True)}
    )
    with torch.no_grad():
        value, base = float(logit(*inputs)[0]), float(logit(*baselines)[0])
    return {
        "endpoint": endpoint,
        "variant": variant,
        "model": model.name,
        "version": model.version,
        "method": "integrated_gradients",
        "output": "logit",
        "logit": value,
        "baseline_logit": base,
        "probability": float(torch.sigmoid(torch.tensor(value))),
        "convergence_delta": float(delta[0]),
        "attributions": dict(sorted(values.items(), key=lambda item: -abs(item[1]))),
    }
