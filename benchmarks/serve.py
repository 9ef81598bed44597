"""Benchmark: online serving latency and throughput of our model server vs a bare FastAPI endpoint
calling the same model, in the same run.

Both servers are uvicorn processes on loopback with one worker and no access log, serving the
reference network (hidden 64, saved like a trained one) with its preprocessing (``Scorer``; every
server scores JSON rows with ``Scorer.score_records``, without a DataFrame). The bare endpoint
parses ``{"rows": [...]}``, scores them and returns the probabilities: nothing else. Ours is ``airflow-mlops serve`` with the model deployed from an
MLflow registry: row checks, routing, prediction ids, Prometheus metrics, per-variant statistics
and the request log, scored through its dynamic batching (the default: the requests waiting for a
variant form one model call). Each request carries one real 2013 flight. Overheads are reported
separately: request logging (our server with and without ``--no-request-log``) and routing (a
canary over two variants of the same model vs a single variant).

The peer is LitServe wrapping the same Scorer (``benchmarks/litserve_peer.py``: an API process
decoding requests, an inference worker process scoring them), without batching and with its own
batching (64 requests, 1 ms); ``ours_vs_litserve`` compares with the better of the two.

    .venv/bin/python benchmarks/serve.py [--requests 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import devtools  # noqa: E402  (the flights package on the path, as in Airflow)

devtools.export_python_path()

TOKEN = "benchmark-token"
SERVERS = ("bare", "litserve", "litserve_batch", "ours", "ours_no_log", "ours_canary")


def bare_server(port: int, model_dir: str) -> None:
    """The baseline: FastAPI + the same Scorer (``score_records``, as ours), nothing else."""
    import torch
    import uvicorn
    from fastapi import Body, FastAPI

    from airflow_mlops.evaluation.scoring import Scorer

    torch.set_num_threads(1)  # as our server does by default: the same model, configured alike
    scorer = Scorer(model_dir)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008 (FastAPI's idiom)
        probabilities = scorer.score_records(body["rows"])
        return {"predictions": [float(p) for p in probabilities]}

    @app.get("/readyz")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def litserve_server(port: int, model_dir: str, max_batch_size: int) -> None:
    """The peer: LitServe wrapping the same Scorer (``benchmarks/litserve_peer.py``)."""
    from litserve_peer import run  # benchmarks/litserve_peer.py (LitServe pickles the API class by name)

    run(port, model_dir, max_batch_size)


def reference_models(work: Path, seeds: Sequence[int]) -> tuple[str, list[Path], Any]:
    """The reference network (hidden 64, its preprocessing fitted on a small real training set),
    saved like a trained one with ``torch.manual_seed(seed)`` for each seed and registered as
    versions 1, 2, ... of ``flight_delay`` in a SQLite MLflow registry under ``work``. Returns the
    tracking URI, the model folders and the training set's test split."""
    import pandas as pd
    import torch
    from mlflow import MlflowClient

    from airflow_mlops.registry.versions import record_digest
    from flights.model import FlightDelayModel, fit_preprocessing
    from tests.training_sets import write_training_set

    manifest = json.loads(Path(write_training_set(work / "set").removeprefix("file://")).read_text())
    train = pd.read_parquet(manifest["splits"]["train"]["uri"].removeprefix("file://"))
    test = pd.read_parquet(manifest["splits"]["test"]["uri"].removeprefix("file://"))
    preprocessing = fit_preprocessing(train)
    stats = preprocessing["numeric"]
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    client = MlflowClient(tracking)
    experiment = client.create_experiment("benchmark", artifact_location=str(work / "artifacts"))
    client.create_registered_model("flight_delay")
    folders = []
    for i, seed in enumerate(seeds):
        torch.manual_seed(seed)
        model = FlightDelayModel(
            num_numeric=len(stats),
            cardinalities=[len(v) + 1 for v in preprocessing["categorical"].values()],
            numeric_mean=[s["mean"] for s in stats.values()],
            numeric_std=[s["std"] for s in stats.values()],
            hidden=64,
        )
        folder = work / f"model{i}"
        folder.mkdir()
        torch.save(model.state_dict(), folder / "model.pt")
        (folder / "config.json").write_text(
            json.dumps(
                {
                    "model": "flights.model:FlightDelayModel",
                    "init": dict(model.hparams),
                    "preprocessing": preprocessing,
                }
            )
        )
        run = client.create_run(experiment)
        client.log_artifacts(run.info.run_id, str(folder), "model")
        version = client.create_model_version(
            "flight_delay", f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
        record_digest(client, tracking, "flight_delay", version.version)
        folders.append(folder)
    return tracking, folders, test


def start(
    command: list[str], port: int, env: dict[str, str] | None = None, ready: str = "/readyz"
) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"server {command} did not start")


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)


async def load(url: str, rows: list[dict], concurrency: int, requests: int) -> dict[str, float]:
    """``requests`` one-row requests from ``concurrency`` clients; latency percentiles and requests/s."""
    import httpx
    import numpy as np

    latencies: list[float] = []
    counter: Any = iter(())

    async def client(session: httpx.AsyncClient) -> None:
        for i in counter:
            started = time.perf_counter()
            try:
                response = await session.post(url, json={"rows": [rows[i % len(rows)]]})
            except httpx.TransportError as err:
                raise SystemExit(
                    f"{url}: request {i} at concurrency {concurrency}: {type(err).__name__} {err}"
                ) from err
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code}: {response.text[:300]}")

    # One connection per client, as separate users (or a load balancer's upstream connections)
    # have. A shared httpx pool with 64 requests in flight spends more of the two cores assigning
    # requests to connections than the servers spend answering (its assignment loop walks every
    # queued request over every connection), hands requests to the first idle connection so the
    # others idle until they expire, and reopens them: against a server whose answers come in
    # bursts (a batch answers many requests at once) it opened 2 to 4 times as many connections
    # and measured the load generator instead of the server. Idle connections expire on the
    # client first (4 s; uvicorn's default keep-alive, which LitServe keeps, is 5 s).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=4.0)
    sessions = [httpx.AsyncClient(timeout=60, limits=limits) for _ in range(concurrency)]
    try:
        counter = iter(range(concurrency))  # the warm-up: each client opens its connection
        await asyncio.gather(*(client(session) for session in sessions))
        latencies.clear()
        counter = iter(range(requests))
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for session in sessions))
        elapsed = time.perf_counter() - started
    finally:
        for session in sessions:
            await session.aclose()
    ms = np.asarray(latencies) * 1000
    return {
        "rps": requests / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of the servers to run (default: all; the RESULT lines need their inputs)",
    )
    parser.add_argument("--bare-server", nargs=2, metavar=("PORT", "MODEL_DIR"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--litserve-server", nargs=3, metavar=("PORT", "MODEL_DIR", "BATCH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    chosen = args.servers.split(",")
    if unknown := sorted(set(chosen) - set(SERVERS)):
        parser.error(f"--servers: unknown {unknown} (servers: {', '.join(SERVERS)})")
    if args.bare_server:
        bare_server(int(args.bare_server[0]), args.bare_server[1])
        return
    if args.litserve_server:
        port, model_dir, batch = args.litserve_server
        litserve_server(int(port), model_dir, int(batch))
        return
    import httpx

    from airflow_mlops.serving.models import json_rows
    from tests.conftest import free_port

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    # Two versions of the same weights: a canary over them measures routing alone.
    tracking, (folder, _), test = reference_models(work, seeds=(0, 0))
    rows = json_rows(test.drop(columns=["is_delayed"]).head(2000))
    v1, v2 = {"name": "flight_delay", "version": "1"}, {"name": "flight_delay", "version": "2"}

    def ours(log: bool, policy: dict, variants: dict) -> tuple[subprocess.Popen, str]:
        port = free_port()
        command = [
            str(Path(sys.executable).with_name("airflow-mlops")),
            "serve",
            "--port",
            str(port),
            "--state-dir",
            str(work / f"state-{port}"),
            "--tracking-uri",
            tracking,
        ]
        process = start(command + ([] if log else ["--no-request-log"]), port, {"MLOPS_SERVER_TOKEN": TOKEN})
        httpx.put(
            f"http://127.0.0.1:{port}/v1/admin/deployments/flight_delay",
            timeout=120,
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"variants": variants, "policy": policy},
        ).raise_for_status()
        return process, f"http://127.0.0.1:{port}/v1/models/flight_delay/predict"

    def bare() -> tuple[subprocess.Popen, str]:
        port = free_port()
        return (
            start([sys.executable, __file__, "--bare-server", str(port), str(folder)], port),
            f"http://127.0.0.1:{port}/predict",
        )

    def litserve(batch: int) -> tuple[subprocess.Popen, str]:
        port = free_port()
        command = [sys.executable, __file__, "--litserve-server", str(port), str(folder), str(batch)]
        return start(command, port, ready="/health"), f"http://127.0.0.1:{port}/predict"

    servers = {
        "bare": bare,
        "litserve": lambda: litserve(1),
        "litserve_batch": lambda: litserve(64),
        "ours": lambda: ours(True, {"kind": "single"}, {"main": v1}),
        "ours_no_log": lambda: ours(False, {"kind": "single"}, {"main": v1}),
        "ours_canary": lambda: ours(
            True, {"kind": "canary", "primary": "a", "candidate": "b", "weight": 0.1}, {"a": v1, "b": v2}
        ),
    }
    results: dict[tuple[str, int], dict[str, float]] = {}
    running = {name: servers[name]() for name in SERVERS if name in chosen}
    # This process holds torch, pandas and MLflow from making the models: a full pass of the cyclic
    # collector over them would stall all 64 clients at once. What lives now is exempt.
    gc.collect()
    gc.freeze()
    try:
        for _ in range(args.rounds):  # rounds in turn: a noisy neighbour slows every server alike
            for concurrency in (1, 16, 64):
                for name, (_, url) in running.items():
                    requests = args.requests if concurrency > 1 else args.requests // 3
                    measured = asyncio.run(load(url, rows, concurrency, requests))
                    best = results.get((name, concurrency))
                    if best is None or measured["rps"] > best["rps"]:
                        results[(name, concurrency)] = measured
    finally:
        for process, _ in running.values():
            stop(process)

    report(results)


def report(results: dict[tuple[str, int], dict[str, float]]) -> None:
    """The table and the RESULT lines: against the bare endpoint, the overheads of the request log
    and of routing, and against LitServe (the better of its two configurations at each concurrency)."""
    print(f"{'server':<15} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for (name, concurrency), r in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        print(f"{name:<15} {concurrency:>4} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    for c in (1, 16, 64):
        rps = {name: r["rps"] for (name, concurrency), r in results.items() if concurrency == c}
        p99 = {name: r["p99"] for (name, concurrency), r in results.items() if concurrency == c}
        for name, value in figures(rps, p99).items():
            print(f"RESULT {name}_c{c}={value:.3f}")


def figures(rps: dict[str, float], p99: dict[str, float]) -> dict[str, float]:
    """The headline figures at one concurrency, each where the servers it needs were run."""

    def litserve() -> float:  # the better of LitServe's two configurations
        return max(rps[n] for n in ("litserve", "litserve_batch") if n in rps)

    formulas = {
        "serve_rps_ratio": lambda: rps["ours"] / rps["bare"],
        "logging_overhead": lambda: 1 - rps["ours"] / rps["ours_no_log"],
        "routing_overhead": lambda: 1 - rps["ours_canary"] / rps["ours"],
        "ours_vs_litserve": lambda: rps["ours"] / litserve(),
        "ours_canary_vs_litserve": lambda: rps["ours_canary"] / litserve(),
        "ours_p99_ms": lambda: p99["ours"],
        "litserve_p99_ms": lambda: p99["litserve"],
    }
    values = {}
    for name, formula in formulas.items():
        try:
            values[name] = formula()
        except (KeyError, ValueError):  # a server this run left out (max() of nothing: ValueError)
            continue
    return values


if __name__ == "__main__":
    main()
