"""Benchmark: LightningTrainOperator's path vs the same Trainer.fit in a plain script, on the year of 2013.

Both train the reference model (`FlightDelayModel`, hidden 64) on the same training set (every
landed flight of January to November (train/validation) and December (test) with its features,
built by tests/training_sets.py) for the same epochs,
each in a fresh process: ours is `LightningTrainOperator.execute` in a process that has imported
Airflow, as a task process has (spec checks, the training driver's process, checkpoints every
epoch, MLflow on SQLite, evaluation, safe model files), timed around `execute`; the baseline is a
plain script calling `Trainer.fit` on the same data module and model with nothing else, timed as
the whole process (its imports and data preparation included, as ours are). Samples/s of both
fits are printed. Then ours with 2 DDP processes (gloo, through torchrun) for 1 vs 2.

The operator's extra cost is mostly fixed (importing MLflow and opening its run, evaluation,
saving; plus one small checkpoint per epoch): it is printed in seconds, and the ratio falls as
the job grows. The MLflow store exists before the clock starts, as `airflow-mlops init-home`
creates it (a fresh SQLite store's tables take 5 to 10 s to create, once per home).

    .venv/bin/python benchmarks/train.py [--epochs 40] [--months 12]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import devtools  # noqa: E402  (the flights package on the path, as in Airflow)

devtools.export_python_path()

PLAIN = """
import json, sys, time
import pytorch_lightning as pl
from flights.model import FlightDataModule, FlightDelayModel
manifest, epochs = sys.argv[1], int(sys.argv[2])
pl.seed_everything(42, workers=True)
data = FlightDataModule(manifest=manifest, batch_size=1024, seed=42)
data.prepare()
model = FlightDelayModel(hidden=64, **data.model_inputs())
trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, deterministic=True)
started = time.perf_counter()
trainer.fit(model, datamodule=data)
print(json.dumps({"fit_s": time.perf_counter() - started, "samples": data.rows["train"] * epochs}))
"""


def ours(manifest: str, work: Path, devices: int, epochs: int) -> tuple[float, dict]:
    code = f"""
import json, os, sys, time
from types import SimpleNamespace
from airflow_mlops.operators.train import LightningTrainOperator
os.environ["AIRFLOW_CONN_BENCH_MLFLOW"] = json.dumps(
    {{"conn_type": "mlflow", "extra": {{"tracking_uri": {("sqlite:///" + str(work / "mlflow.db"))!r}}}}}
)
op = LightningTrainOperator(task_id="train", training_set={manifest!r}, output_dir={str(work / f"out{devices}")!r},
    checkpoint_root={str(work / f"ckpt{devices}")!r}, hyperparameters={{"hidden": 64}}, batch_size=1024,
    model="flights.model:FlightDelayModel", data="flights.model:FlightDataModule",
    devices={devices}, max_epochs={epochs}, mlflow_conn_id="bench_mlflow")
# The MLflow store exists, as `airflow-mlops init-home` makes it: creating a fresh store's tables
# (5 to 10 s here) is once per home, not a cost of each training.
from airflow_mlops.cli import create_mlflow_store
create_mlflow_store({("sqlite:///" + str(work / "mlflow.db"))!r})
started = time.perf_counter()
result = op.execute({{"dag": SimpleNamespace(dag_id="bench"), "run_id": "run{devices}"}})
result["execute_s"] = time.perf_counter() - started
print("RESULT_JSON " + json.dumps(result))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT_JSON "))
    result = json.loads(line.removeprefix("RESULT_JSON "))
    return result["execute_s"], result


def plain(manifest: str, epochs: int) -> tuple[float, dict]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PLAIN, manifest, str(epochs)], check=True, capture_output=True, text=True
    ).stdout
    wall = time.perf_counter() - started
    return wall, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument(
        "--months", type=int, default=12, help="months 1..N-1 train, month N is the test month"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    from tests.training_sets import write_training_set

    manifest = write_training_set(work / "set", months=args.months)
    rows = json.loads(Path(manifest.removeprefix("file://")).read_text())["splits"]["train"]["rows"]
    # A tracking store exists before any training in a deployment: create its tables outside the timing.
    import mlflow

    mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}").search_experiments()
    plain_wall, plain_fit = plain(manifest, args.epochs)
    ours_wall, ours_result = ours(manifest, work, 1, args.epochs)
    plain_rate = plain_fit["samples"] / plain_fit["fit_s"]
    print(
        f"{rows:,} training rows x {args.epochs} epochs: operator {ours_wall:.1f}s wall "
        f"({ours_result['samples_per_s']:.0f} samples/s), plain Trainer.fit {plain_wall:.1f}s wall "
        f"({plain_rate:.0f} samples/s); ratio {ours_wall / plain_wall:.3f}"
    )
    two_wall, two_result = ours(manifest, work, 2, args.epochs)
    print(
        f"2 DDP processes (gloo): {two_wall:.1f}s wall, {two_result['samples_per_s']:.0f} samples/s "
        f"(1 process: {ours_result['samples_per_s']:.0f}); test AUC {two_result['metrics']['test_auc']:.4f} "
        f"vs {ours_result['metrics']['test_auc']:.4f}"
    )
    print(f"fixed cost of the operator's path: {ours_wall - plain_wall:.1f}s")
    for key, value in {
        "train_wall_ratio": ours_wall / plain_wall,
        "operator_extra_s": ours_wall - plain_wall,
        "operator_wall_s": ours_wall,
        "plain_wall_s": plain_wall,
        "operator_samples_per_s": ours_result["samples_per_s"],
        "plain_samples_per_s": plain_rate,
        "ddp2_samples_per_s": two_result["samples_per_s"],
        "ddp2_wall_s": two_wall,
    }.items():
        print(f"RESULT {key}={value:.3f}")


if __name__ == "__main__":
    main()
