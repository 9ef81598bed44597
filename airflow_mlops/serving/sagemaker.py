"""The model server's face inside a SageMaker endpoint container (no Airflow import).

SageMaker starts the container with ``serve`` and sends ``GET /ping`` and ``POST /invocations`` to
port 8080; the model version's files (``config.json``, ``model.pt``) are unpacked into
``/opt/ml/model``. The image's entry point is ``airflow-mlops serve-sagemaker``. Rows are checked
as by our own server (422 naming the field) and scored with the model's own preprocessing.
Routing between versions (canary, A/B, shadow) is SageMaker's: production variants with weights
and shadow variants, configured by ``SageMakerDeployModelOperator``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MODEL_DIR = "/opt/ml/model"


def create_inference_app(model_dir: str | Path = MODEL_DIR) -> FastAPI:
    # FastAPI reads the handlers' annotations from this module's globals: Request is imported above.
    from ..evaluation.scoring import load_scorer  # noqa: TID252
    from .models import RowError, ServedModel

    model = ServedModel(
        os.environ.get("MLOPS_MODEL_NAME", ""),
        os.environ.get("MLOPS_MODEL_VERSION", ""),
        Path(model_dir),
        load_scorer(model_dir),
    )
    app = FastAPI(title="airflow-mlops SageMaker inference")

    @app.exception_handler(RowError)
    async def row_error(request: Request, err: RowError) -> JSONResponse:
        return JSONResponse(
            {"detail": [{"loc": err.loc, "msg": err.msg, "input": err.value}]}, status_code=422
        )

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok", "model": model.name, "version": model.version}

    @app.post("/invocations")
    async def invocations(request: Request) -> dict[str, Any]:
        body = await request.json()
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows:
            raise RowError(["body", "rows"], "must be a non-empty list of rows", None)
        probabilities = model.predict(model.frame(rows))
        return {
            "model": model.name,
            "version": model.version,
            "variant": os.environ.get("SAGEMAKER_VARIANT_NAME", ""),  # hint only: SageMaker routes
            "predictions": model.answers(probabilities),  # as our server answers, per task
        }

    return app


def serve(model_dir: str = MODEL_DIR, host: str = "0.0.0.0", port: int = 8080) -> None:
    import uvicorn

    uvicorn.run(create_inference_app(model_dir), host=host, port=port, log_level="info", access_log=False)
