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
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import devtools  # noqa: E402  (the flights package on the path, as in Airflow)

devtools.export_python_path()


def paired_rounds(
    rounds: int, ours: Callable[[], object], raw: Callable[[], object]
) -> list[tuple[float, float]]:
    """``(ours_s, raw_s)`` of each round, the two run back to back (which goes first alternates).

    On a shared VM the CPU's speed drifts by tens of percent within seconds; two runs a few hundred
    milliseconds apart see the same speed, so each round's ratio is fair where the best times of
    each side, taken from different moments, are not."""
    times = []
    for round_ in range(rounds):
        pair = {}
        for name, fn in (("ours", ours), ("raw", raw))[:: 1 if round_ % 2 == 0 else -1]:
            started = time.perf_counter()
            fn()
            pair[name] = time.perf_counter() - started
        times.append((pair["ours"], pair["raw"]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=65536)
    parser.add_argument("--runs", type=int, default=15)
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

    scorer(frame)  # warm-up: the first call pays for allocations and imports
    raw()
    times = paired_rounds(args.runs, lambda: scorer(frame), raw)
    ratios = sorted(raw_s / ours_s for ours_s, raw_s in times)
    median_ratio = statistics.median(ratios)
    ours_s, raw_s = min(t[0] for t in times), min(t[1] for t in times)
    ours_rate, raw_rate = len(frame) / ours_s, len(frame) / raw_s
    print(
        f"{len(frame):,} rows, {args.runs} paired rounds: ours best {ours_s:.2f}s ({ours_rate:,.0f} rows/s), "
        f"raw forward best {raw_s:.2f}s ({raw_rate:,.0f} rows/s); ratio of the rounds' rates: median "
        f"{median_ratio:.3f}, quartiles {ratios[len(ratios) // 4]:.3f} to {ratios[3 * len(ratios) // 4]:.3f}; "
        f"of the best times {ours_rate / raw_rate:.3f}"
    )
    for key, value in {
        "score_rows_per_s_ratio": median_ratio,
        "score_best_times_ratio": ours_rate / raw_rate,
        "ours_rows_per_s": ours_rate,
        "raw_rows_per_s": raw_rate,
    }.items():
        print(f"RESULT {key}={value:.3f}")


if __name__ == "__main__":
    main()
