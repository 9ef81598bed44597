"""Benchmark: batch scoring rows/s of our path (``Scorer``: preprocessing from the model's stored
statistics + forward pass, chunked) vs a raw torch forward pass over the same, already built
tensors, in the same run. The rows are every 2013 flight with its features (the training set of
tests/training_sets.py, all splits), repeated to ``--rows``; the model is the reference network
(hidden 64, saved and loaded like a trained one; its weights do not change the speed). Our rows
are read from one Parquet file with ``read_rows``, as ``EvaluateModelOperator`` reads a split.

    .venv/bin/python benchmarks/evaluate.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import devtools  # noqa: E402  (the flights package on the path, as in Airflow)

devtools.export_python_path()


def best_of_interleaved(runs: int, *fns) -> list[float]:
    """The best wall time of each function over ``runs`` rounds, run in turn (a noisy neighbour
    then slows both sides alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(runs):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    import pandas as pd
    import torch

    from airflow_mlops.evaluation.scoring import Scorer, read_rows
    from flights.model import FlightDelayModel, fit_preprocessing, transform
    from tests.training_sets import write_training_set

    work = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    manifest_uri = write_training_set(work / "set", months=12)
    manifest = json.loads(Path(manifest_uri.removeprefix("file://")).read_text())
    frame = pd.concat(
        [pd.read_parquet(s["uri"].removeprefix("file://")) for s in manifest["splits"].values()]
    )
    frame = pd.concat([frame] * (args.rows // len(frame) + 1), ignore_index=True).iloc[: args.rows]
    frame.to_parquet(work / "rows.parquet")
    frame = read_rows(work / "rows.parquet")  # as EvaluateModelOperator reads a split
    preprocessing = fit_preprocessing(frame)
    cardinalities = [len(preprocessing["categorical"][c]) + 1 for c in preprocessing["categorical"]]
    torch.manual_seed(0)
    stats = preprocessing["numeric"]
    model = FlightDelayModel(
        num_numeric=len(stats),
        cardinalities=cardinalities,
        hidden=64,
        numeric_mean=[s["mean"] for s in stats.values()],
        numeric_std=[s["std"] for s in stats.values()],
    )
    folder = work / "model"
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
    scorer = Scorer(folder, chunk_rows=args.chunk_rows)
    numeric, categorical = transform(frame, preprocessing)  # the raw pass gets its tensors for free,
    numeric = numeric.contiguous()  # laid out row by row, its best case
    raw_model = scorer.model

    def raw() -> None:
        with torch.inference_mode():
            for start in range(0, len(frame), args.chunk_rows):
                torch.sigmoid(
                    raw_model(
                        numeric[start : start + args.chunk_rows], categorical[start : start + args.chunk_rows]
                    )
                )

    ours_s, raw_s = best_of_interleaved(args.runs, lambda: scorer(frame), raw)
    ours_rate, raw_rate = len(frame) / ours_s, len(frame) / raw_s
    print(
        f"{len(frame):,} rows: ours {ours_s:.2f}s ({ours_rate:,.0f} rows/s), raw forward {raw_s:.2f}s "
        f"({raw_rate:,.0f} rows/s); ratio {ours_rate / raw_rate:.3f}"
    )
    for key, value in {
        "score_rows_per_s_ratio": ours_rate / raw_rate,
        "ours_rows_per_s": ours_rate,
        "raw_rows_per_s": raw_rate,
    }.items():
        print(f"RESULT {key}={value:.3f}")


if __name__ == "__main__":
    main()
