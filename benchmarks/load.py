"""Benchmark: the model server under load, as the scale-out stack runs it (issue 10).

Two ``airflow-mlops serve`` replicas behind nginx (``devtools.stack.serving_up``, the same
processes and configuration as ``python -m devtools stack up``), the reference network deployed from an
MLflow registry through ``ModelServerHook`` (which writes each deployment to both replicas).

1. **ours**: 64 concurrent clients for 60 s through nginx, one real 2013 flight a request. At 20 s a
   canary starts (version 2 gets 10 % of the traffic, on both replicas), 20 s after that version 2
   is rolled out to all of it. Every failed request (an HTTP status other than 200, a transport error) counts.
2. **baseline**: the same 64 clients for 30 s straight at one replica (no nginx, no switches).
3. **replica lost**: 64 clients for 30 s through nginx; at 10 s one replica is SIGKILLed, 10 s later
   it is started again (it restores its deployment from its own store).

Each client sends its next request when the previous one is answered. On a 2-core machine the
load generator, nginx and both replicas share the cores: compare the ratio, not the absolute rates.

    .venv/bin/python benchmarks/load.py [--clients 64] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import devtools  # noqa: E402  (the flights package on the path, as in Airflow)

devtools.export_python_path()


async def _drive(
    url: str,
    rows: Sequence[dict],
    clients: int,
    seconds: float,
    events: Sequence[tuple[float, Callable[[], Any]]],
) -> dict[str, Any]:
    import httpx
    import numpy as np

    latencies: list[float] = []
    failures: list[str] = []
    begun = time.monotonic()
    stop_at = begun + seconds
    pending = asyncio.Event()  # set once every event ran (and 2 s more passed): the load may end then
    if not events:
        pending.set()

    async def client(session: httpx.AsyncClient, n: int) -> None:
        i = n
        while time.monotonic() < stop_at or not pending.is_set():
            started = time.perf_counter()
            try:
                answer = await session.post(url, json={"rows": [rows[i % len(rows)]]})
                if answer.status_code != 200:
                    failures.append(
                        f"{time.monotonic() - begun:.1f}s HTTP {answer.status_code}: {answer.text[:200]}"
                    )
            except httpx.TransportError as err:
                failures.append(f"{time.monotonic() - begun:.1f}s {type(err).__name__}: {err}")
            latencies.append(time.perf_counter() - started)
            i += clients

    async def scheduled() -> None:
        for delay, action in events:
            await asyncio.sleep(delay)
            await asyncio.to_thread(action)  # deployments and restarts block: off the clients' loop
        if events:
            await asyncio.sleep(2)
            pending.set()

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as session:
        await asyncio.gather(scheduled(), *(client(session, n) for n in range(clients)))
    elapsed = time.monotonic() - begun
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "failures": failures,
        "rps": len(latencies) / elapsed,
        "seconds": elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


def run_load(
    url: str,
    rows: Sequence[dict],
    clients: int,
    seconds: float,
    events: Sequence[tuple[float, Callable[[], Any]]] = (),
) -> dict[str, Any]:
    """``clients`` concurrent clients posting one row each to ``url`` for ``seconds``, and longer
    until ``events`` ran: each ``(delay, function)`` runs in a thread ``delay`` seconds after the
    previous one finished (a restart or a deployment takes its time). Returns requests, failures
    (each described), requests/s and latency percentiles."""
    return asyncio.run(_drive(url, rows, clients, seconds, events))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--port-offset", type=int, default=3000, help="added to the stack's default ports")
    args = parser.parse_args()

    from airflow_mlops.serving.models import json_rows
    from benchmarks.serve import reference_models
    from devtools.stack import down, serving_up, start_service, stop_service

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    tracking, _, test = reference_models(
        work, seeds=(0, 1)
    )  # two versions (different weights) for the canary
    rows = json_rows(test.drop(columns=["is_delayed"]).head(2000))

    root = work / "stack"
    token = "load-benchmark-token"
    record = serving_up(root, tracking, token, offset=args.port_offset)
    port = record["ports"]
    os.environ["AIRFLOW_CONN_MLOPS_MODEL_SERVER"] = json.dumps(
        {
            "conn_type": "mlopsmodelserver",
            "host": "127.0.0.1",
            "port": port["model_server"],
            "password": token,
            "extra": {"replicas": [f"127.0.0.1:{port['replica1']}", f"127.0.0.1:{port['replica2']}"]},
        }
    )
    from airflow_mlops.hooks.model_server import ModelServerHook

    hook = ModelServerHook()
    v1, v2 = {"name": "flight_delay", "version": "1"}, {"name": "flight_delay", "version": "2"}
    hook.deploy("flight_delay", {"main": v1}, {"kind": "single"}, who="benchmark", why="load")
    canary: dict[str, Any] = {}

    def start_canary() -> None:
        hook.deploy(
            "flight_delay",
            {"primary": v1, "candidate": v2},
            {"kind": "canary", "primary": "primary", "candidate": "candidate", "weight": 0.1},
            who="benchmark",
            why="canary under load",
        )

    def roll_out() -> None:
        canary.update(hook.stats("flight_delay"))
        hook.deploy(
            "flight_delay", {"main": v2}, {"kind": "single"}, who="benchmark", why="rollout under load"
        )

    lb = f"http://127.0.0.1:{port['model_server']}/v1/models/flight_delay/predict"
    direct = f"http://127.0.0.1:{port['replica1']}/v1/models/flight_delay/predict"
    try:
        run_load(lb, rows, 8, 3)  # warm-up: models loaded, connections open
        third = args.seconds / 3
        ours = run_load(lb, rows, args.clients, args.seconds, [(third, start_canary), (third, roll_out)])
        baseline = run_load(direct, rows, args.clients, args.seconds / 2)
        lost = run_load(
            lb,
            rows,
            args.clients,
            args.seconds / 2,
            [
                (args.seconds / 6, lambda: stop_service(root, "replica2", kill=True)),
                (args.seconds / 6, lambda: start_service(root, "replica2")),
            ],
        )
    finally:
        down(root)

    print(
        f"{'phase':<34} {'requests':>9} {'failed':>7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    )
    for name, r in (
        ("ours: nginx + 2 replicas, canary", ours),
        ("baseline: 1 replica direct", baseline),
        ("replica killed and restarted", lost),
    ):
        print(
            f"{name:<34} {r['requests']:>9} {len(r['failures']):>7} {r['rps']:>7.0f} {r['p50_ms']:>7.1f} "
            f"{r['p99_ms']:>7.1f} {r['max_ms']:>7.0f}"
        )
        for failure in r["failures"][:5]:
            print(f"    {failure}")
    candidate = canary.get("variants", {}).get("candidate", {})
    print(
        f"canary before the rollout: {candidate.get('requests')} of "
        f"{sum(v['requests'] for v in canary.get('variants', {}).values())} requests to version 2 "
        f"on {canary.get('replicas')} replicas"
    )
    print(f"RESULT load_errors={len(ours['failures'])}")
    print(f"RESULT load_p99_ms={ours['p99_ms']:.1f}")
    print(f"RESULT load_rps={ours['rps']:.0f}")
    print(f"RESULT load_rps_ratio={ours['rps'] / baseline['rps']:.3f}")
    print(f"RESULT replica_lost_errors={len(lost['failures'])}")
    print(f"RESULT replica_lost_p99_ms={lost['p99_ms']:.1f}")


if __name__ == "__main__":
    main()
