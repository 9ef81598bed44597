"""Batch prediction: a Parquet partition scored by a registry model, no server (no Airflow import).

The model is resolved to a version once (``models:/name@champion`` -> ``name`` version 3), its
folder downloaded, and the rows scored with ``load_scorer`` (in chunks with the model's own
preprocessing for a package of this suite; through ``predict`` for any other MLflow model).
The output keeps the rows' key columns and adds ``prediction_id`` (ground truth joins to it
later), ``probability``, ``model``, ``version`` and ``scored_at``; it is written whole or not at
all, with a manifest naming the input and the model as its parents.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_mlops.exceptions import BatchPredictionError

from ..artifacts import (  # noqa: TID252
    MANIFEST_SUFFIX,
    Artifact,
    download_folder,
    write_atomically,
    write_parquet_atomically,
)


def predict_partition(
    input_uri: Any,
    model_uri: Any,
    output_uri: Any,
    *,
    tracking_uri: str | None = None,
    key_columns: Sequence[str] = (),
    chunk_rows: int = 65536,
) -> dict[str, Any]:
    """Score every row of ``input_uri`` with ``model_uri``; returns the output's manifest as a dict.

    ``input_uri`` and ``output_uri`` are a path or URI, or a path object (``ObjectStoragePath``
    with its connection, ``UPath``); the input is streamed from an object store, the output put
    there whole. ``model_uri`` is a registry URI (``models:/...``, ``runs:/...``) or a model folder
    (a path, a URI or a path object; a folder in an object store is downloaded into a scratch
    folder first). A URI string of an object store is reached with fsspec's configuration in the
    environment (no Airflow here: the operator passes path objects with its connection).
    """
    from ..evaluation.scoring import features, load_scorer, read_rows  # noqa: TID252
    from ..models.package import prediction_columns  # noqa: TID252
    from ..registry.versions import in_registry, model_folder, registered_version  # noqa: TID252
    from ..storage import uri_of  # noqa: TID252

    source, target = as_path(input_uri), as_path(output_uri)
    name = uri_of(source) if not isinstance(input_uri, str) else input_uri
    if not source.is_file():
        raise BatchPredictionError(f"input {name!r} does not exist")
    try:
        frame = read_rows(source)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        raise BatchPredictionError(f"input {name!r} is not a readable Parquet file: {err}") from err
    missing_keys = [c for c in key_columns if c not in frame.columns]
    if missing_keys:
        raise BatchPredictionError(f"key_columns {missing_keys} are not columns of {name!r}")
    model = None if in_registry(model_uri) else as_path(model_uri)
    pinned = registered_version(model_uri, tracking_uri) if model is None else None
    model_name = (
        f"models:/{pinned[0]}/{pinned[1]}" if pinned else (model_uri if model is None else uri_of(model))
    )
    with tempfile.TemporaryDirectory(prefix="batch-model-") as download:
        if model is None:
            folder = model_folder(model_name, tracking_uri, dst=Path(download))
        elif isinstance(model, Path):
            folder = model_folder(str(model))
        else:
            download_folder(model, Path(download))
            folder = model_folder(download)
        scorer = load_scorer(folder, chunk_rows=chunk_rows)
        missing = [c for c in features(scorer) if c not in frame.columns]
        if missing:
            raise BatchPredictionError(f"input {name!r} lacks the model's feature columns {missing}")
        probabilities = scorer(frame)
    output = frame[list(key_columns)].copy()
    for column in key_columns:  # keys as plain values, not dictionary-encoded categories
        if hasattr(output[column], "cat"):
            output[column] = output[column].astype(object)
    output["prediction_id"] = [uuid.uuid4().hex for _ in range(len(frame))]
    for column, values in prediction_columns(scorer.task, probabilities, scorer.classes).items():
        output[column] = values
    output["model"] = pinned[0] if pinned else model_name
    output["version"] = pinned[1] if pinned else ""
    output["scored_at"] = datetime.now(UTC)
    sha256 = write_parquet_atomically(target, output)
    artifact = Artifact(
        uri=uri_of(target),
        sha256=sha256,
        kind="predictions",
        parents=(uri_of(source), model_name),
        metadata={
            "rows": len(output),
            "model": output["model"].iloc[0] if len(output) else "",
            "version": pinned[1] if pinned else "",
            "task": scorer.task,
            "mean_probability": float(probabilities.mean())
            if len(output) and scorer.task == "binary"
            else None,
        },
    )
    write_atomically(target.with_name(target.stem + MANIFEST_SUFFIX), artifact.to_json())
    return {"uri": artifact.uri, "sha256": sha256, "parents": list(artifact.parents), **artifact.metadata}


def as_path(location: Any) -> Any:
    """A path object as it is; a path or URI string as ``training.spec.storage_path`` reads it."""
    from ..training.spec import storage_path  # noqa: TID252

    return storage_path(location) if isinstance(location, str) else location
