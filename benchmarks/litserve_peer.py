"""LitServe serving the reference network through the same ``Scorer`` as our server (rows scored
with ``Scorer.score_records``, as ours scores them), for
``benchmarks/serve.py``: its API process decodes requests, one inference worker process scores
them (with ``max_batch_size`` > 1, LitServe's own dynamic batching, 1 ms timeout). A module of its
own because LitServe starts the worker by pickling the API class by name."""

from __future__ import annotations

from typing import Any

import litserve as ls


class ScorerAPI(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, model_dir: str, max_batch_size: int) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=0.001 if max_batch_size > 1 else 0.0)
        self.model_dir = model_dir

    def setup(self, device: str) -> None:
        import torch

        from airflow_mlops.evaluation.scoring import Scorer

        torch.set_num_threads(1)  # as our server and the bare endpoint
        self.scorer = Scorer(self.model_dir)

    def decode_request(self, request):  # type: ignore[no-untyped-def]
        # (no annotation: LitServe builds the route from it, and takes the JSON body for none)
        return list(request["rows"])

    def predict(self, rows: Any) -> Any:
        return [float(p) for p in self.scorer.score_records(rows)]  # as our server scores rows

    def encode_response(self, output: list[float]) -> dict[str, Any]:
        return {"predictions": output}


class BatchedScorerAPI(ScorerAPI):
    """The same with LitServe's batching: one scorer call for the requests of a batch."""

    def batch(self, inputs: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
        return inputs

    def predict(self, requests: Any) -> Any:
        rows = [row for request in requests for row in request]
        scores = [float(p) for p in self.scorer.score_records(rows)]
        out, start = [], 0
        for request in requests:
            out.append(scores[start : start + len(request)])
            start += len(request)
        return out

    def unbatch(self, output: Any) -> Any:
        return output


def run(port: int, model_dir: str, max_batch_size: int) -> None:
    api = (BatchedScorerAPI if max_batch_size > 1 else ScorerAPI)(model_dir, max_batch_size)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, timeout=60)
    server.run(port=port, num_api_servers=1, log_level="warning", generate_client_file=False)
