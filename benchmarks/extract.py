"""Benchmark: SqlExtractOperator vs pandas.read_sql + DataFrame.to_parquet on the full flights table.

Both paths run the same query on the same SQLite source in this run, alternating, best of N.
Peak memory is the peak RSS (VmHWM) of a fresh child process per path (RSS never shrinks, so
each path needs its own process); both children import the same libraries. Prints one `RESULT name=value` line per headline figure.

With ``--lake s3`` both write to an S3 bucket on moto's server (started in this process, on
loopback): ours through the ``aws`` connection (``storage_conn_id``), the baseline through
``to_parquet("s3://...")`` (s3fs), and the RESULT names carry ``_s3``.

    .venv/bin/python benchmarks/extract.py [--repeats 3] [--source /path/flights.db] [--lake s3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import devtools  # noqa: E402  (the flights package on the path, as in Airflow)

devtools.export_python_path()

QUERY = "SELECT * FROM flights ORDER BY flight_id"
TIME_TYPES = {"time_hour": "timestamp[us, tz=UTC]"}


def target_uri(out: Path) -> str:
    """Where a path writes: the local file, or the same name in the benchmark's bucket."""
    return f"s3://bench/{out.name}" if os.environ.get("BENCH_LAKE") == "s3" else out.as_uri()


def row_count(uri: str) -> int:
    import pyarrow.parquet as pq

    if uri.startswith("s3://"):
        import s3fs

        with s3fs.S3FileSystem().open(uri, "rb") as handle:
            return int(pq.read_metadata(handle).num_rows)
    return int(pq.read_metadata(uri.removeprefix("file://")).num_rows)


def ours(source: Path, out: Path) -> int:
    from airflow_mlops.operators.extract import SqlExtractOperator

    os.environ["AIRFLOW_CONN_BENCH_SOURCE"] = json.dumps({"conn_type": "sqlite", "host": str(source)})
    op = SqlExtractOperator(
        task_id="bench",
        source_conn_id="bench_source",
        sql=QUERY,
        target=target_uri(out),
        column_types=TIME_TYPES,
        enforce_schema=False,
        storage_conn_id="aws_default" if os.environ.get("BENCH_LAKE") == "s3" else None,
    )
    context = {
        "dag": SimpleNamespace(dag_id="bench"),
        "run_id": "bench",
        "logical_date": None,
        "outlet_events": {},
    }
    op.execute(context)  # type: ignore[arg-type]
    return row_count(target_uri(out))


def baseline(source: Path, out: Path) -> int:
    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{source}")
    frame = pd.read_sql(QUERY, engine)
    uri = target_uri(out)
    frame.to_parquet(uri if uri.startswith("s3://") else out, index=False)
    engine.dispose()
    return len(frame)


PATHS = {"ours": ours, "baseline": baseline}


def child(path: str, source: Path, out: Path) -> None:
    rows = PATHS[path](source, out)
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across exec.
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = int(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
    print(json.dumps({"rows": rows, "peak_kib": peak_kib}))


def ensure_source(source: Path | None, work: Path) -> Path:
    if source is not None:
        return source
    from sqlalchemy import create_engine

    from flights.source import seed_source_db

    path = work / "flights.db"
    engine = create_engine(f"sqlite:///{path}")
    seed_source_db(engine)
    engine.dispose()
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--child", choices=sorted(PATHS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--lake", choices=("local", "s3"), default="local")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.source, args.out)
        return

    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
    suffix = ""
    if args.lake == "s3":
        from moto_lake import start_moto_bucket  # benchmarks/moto_lake.py

        start_moto_bucket("bench")
        suffix = "_s3"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = ensure_source(args.source, work)
        best = {name: float("inf") for name in PATHS}
        rows = {}
        for _ in range(args.repeats):
            for name, run in PATHS.items():
                started = time.perf_counter()
                rows[name] = run(source, work / f"{name}.parquet")
                best[name] = min(best[name], time.perf_counter() - started)
        assert rows["ours"] == rows["baseline"], rows
        peaks = {}
        for name in PATHS:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    name,
                    "--source",
                    str(source),
                    "--out",
                    str(work / "m.parquet"),
                ],
                check=True,
                capture_output=True,
                text=True,
                env=os.environ.copy(),
            )
            peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])["peak_kib"] / 1024
    rate = {name: rows[name] / best[name] for name in PATHS}
    print(f"rows: {rows['ours']}")
    for name in PATHS:
        print(
            f"{name:>8}: {best[name]:.2f} s best of {args.repeats}, {rate[name]:,.0f} rows/s, peak RSS {peaks[name]:.0f} MiB"
        )
    print(f"RESULT extract_rows_per_s_ratio{suffix}={rate['ours'] / rate['baseline']:.2f}")
    print(f"RESULT extract_peak_rss_mib{suffix}={peaks['ours']:.0f}")
    print(f"RESULT baseline_peak_rss_mib{suffix}={peaks['baseline']:.0f}")
    print(f"RESULT extract_peak_rss_ratio{suffix}={peaks['ours'] / peaks['baseline']:.2f}")


if __name__ == "__main__":
    main()
