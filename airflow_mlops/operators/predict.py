"""Score a Parquet partition with a registry model, in the worker: batch prediction without a server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from airflow.sdk import BaseOperator

from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.xcom import PredictionResult

if TYPE_CHECKING:
    from airflow.sdk import Context


class BatchPredictionOperator(MlflowOperatorMixin, BaseOperator):
    """Score every row of a Parquet partition with a registered model, chunk by chunk.

    The model (``models:/name@alias``, ``models:/name/3`` or a model folder, local or in an object
    store; a model package of ours or any MLflow model with a signature, see ``evaluation.scoring``)
    is resolved to one version before scoring; a package's own stored preprocessing is applied. The
    output Parquet holds ``key_columns``, ``prediction_id``, the task's columns (``probability`` for a binary
    model, ``prediction`` for a regression one, ``label`` and ``probability_<class>`` for a
    multiclass one), ``model``, ``version`` and ``scored_at``, written atomically with a manifest
    (parents: the input and the model version).

    :param input_uri: the partition (templated; a path, ``file://`` or an object store URI such as
        ``s3://lake/flights/2013-06.parquet``, streamed, not copied to disk).
    :param model_uri: the model (templated).
    :param output_uri: where the predictions go (templated; local or object store, put whole).
    :param key_columns: columns copied to the output to identify rows, e.g. ``["flight_id"]``.
    :param mlflow_conn_id: the ``mlflow`` connection of the registry (None: a local folder only).
    :param chunk_rows: rows per forward pass.
    :param storage_conn_id: the connection of the object store (an ``aws`` connection for ``s3://``)
        that ``input_uri``, ``output_uri`` or a model folder there are reached through; None: the
        environment's credentials.

    XCom: ``{"uri", "sha256", "parents", "rows", "model", "version", "task", "mean_probability"}``
    (``mean_probability`` None unless binary); the same
    goes into the ``extra`` of every outlet's Asset event.
    """

    required_extra: ClassVar[str | None] = "serving"

    template_fields: Sequence[str] = ("input_uri", "model_uri", "output_uri")
    ui_color = "#e8eaf6"

    def __init__(
        self,
        *,
        input_uri: str,
        model_uri: str,
        output_uri: str,
        key_columns: Sequence[str] = (),
        mlflow_conn_id: str | None = MlflowHook.default_conn_name,
        chunk_rows: int = 65536,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_uri, self.model_uri, self.output_uri = input_uri, model_uri, output_uri
        self.storage_conn_id = storage_conn_id
        self.key_columns, self.mlflow_conn_id, self.chunk_rows = list(key_columns), mlflow_conn_id, chunk_rows

    def execute(self, context: Context) -> PredictionResult:
        from airflow_mlops.registry.versions import in_registry
        from airflow_mlops.serving.batch import predict_partition
        from airflow_mlops.storage import object_path

        result = predict_partition(
            object_path(self.input_uri, self.storage_conn_id),
            self.model_uri
            if in_registry(self.model_uri)
            else object_path(self.model_uri, self.storage_conn_id),
            object_path(self.output_uri, self.storage_conn_id),
            tracking_uri=self.mlflow_store_uri,
            key_columns=self.key_columns,
            chunk_rows=self.chunk_rows,
        )
        self.log.info(
            "Scored %d rows of %s with %s v%s -> %s",
            result["rows"],
            self.input_uri,
            result["model"],
            result["version"],
            result["uri"],
        )
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = result
        return cast(PredictionResult, result)
