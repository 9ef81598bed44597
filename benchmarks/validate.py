"""Benchmark: the reference flights suite through Great Expectations vs the same checks written in pandas.

On one month (2013-01) and on the full year (336,776 rows as one partition), in the same run,
alternating, best of N. "Ours" is ``validate_partition`` end to end on the Parquet bytes: read,
the GX suite, the column profile and (with ``--drift``) the comparison with the reference
profile. The baseline reads the same bytes with pandas and evaluates each expectation of the same
suite file with plain pandas operations (a small interpreter over the suite, so both paths check
exactly the same rules). Importing GX is timed once, separately. Prints `RESULT name=value` lines.

With ``--lake s3`` the partition is an object in a bucket on moto's server (in this process, on
loopback) and each timed run reads it from there: ours as the operator does (``ObjectStoragePath``
with the ``aws`` connection, the whole object, then ``validate_partition``), the baseline with
``pandas.read_parquet("s3://...")`` (s3fs); the RESULT names carry ``_s3``.

    .venv/bin/python benchmarks/validate.py [--repeats 3] [--lake s3]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import devtools  # noqa: E402  (the flights package on the path, as in Airflow)

devtools.export_python_path()

SUITE = ROOT / "dags" / "suites" / "flights_raw.yaml"
PROFILE = ROOT / "dags" / "suites" / "flights_raw.profile.json"
DRIFT_COLUMNS = ["dep_delay", "arr_delay", "sched_dep_time", "distance", "carrier", "origin", "dest"]


def _resolve(value: Any, parameters: Mapping[str, Any]) -> Any:
    return parameters[value["$PARAMETER"]] if isinstance(value, dict) and "$PARAMETER" in value else value


def pandas_checks(data: Any, suite: Mapping[str, Any], parameters: Mapping[str, Any]) -> list[str]:
    """Every expectation of the suite in plain pandas; returns the failed ones. ``data``: the
    Parquet bytes, or an ``s3://`` URI pandas reads itself."""
    frame = pd.read_parquet(data if isinstance(data, str) else io.BytesIO(data))
    failed = []
    for expectation in suite["expectations"]:
        kind = expectation["type"]
        kwargs = {k: _resolve(v, parameters) for k, v in expectation["kwargs"].items()}
        column = frame[kwargs["column"]] if "column" in kwargs else None
        ok: bool
        if kind == "expect_table_columns_to_match_ordered_list":
            ok = list(frame.columns) == kwargs["column_list"]
        elif kind == "expect_table_row_count_to_be_between":
            ok = len(frame) >= kwargs["min_value"]
        elif kind == "expect_column_values_to_be_of_type":
            expected = kwargs["type_"]
            dtype = column.dtype
            ok = (
                isinstance(dtype, pd.DatetimeTZDtype)
                if expected == "Timestamp"
                else column.dropna().map(type).eq(str).all()
                if expected == "str"
                else str(dtype) == expected
            )
        elif kind == "expect_column_values_to_not_be_null":
            ok = column.notna().mean() >= kwargs.get("mostly", 1.0)
        elif kind == "expect_column_values_to_be_between":
            present = column.dropna()
            ok = bool(((present >= kwargs["min_value"]) & (present <= kwargs["max_value"])).all())
        elif kind == "expect_column_values_to_be_in_set":
            ok = bool(column.dropna().isin(kwargs["value_set"]).all())
        elif kind == "expect_column_values_to_be_unique":
            ok = not column.dropna().duplicated().any()
        elif kind == "expect_compound_columns_to_be_unique":
            ok = not frame.duplicated(kwargs["column_list"]).any()
        elif kind == "expect_column_values_to_match_regex":
            ok = bool(column.dropna().astype(str).str.match(re.compile(kwargs["regex"])).all())
        else:
            raise ValueError(f"no pandas equivalent written for {kind}")
        if not ok:
            failed.append(f"{kind}({kwargs.get('column', '')})")
    return failed


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lake", choices=("local", "s3"), default="local")
    args = parser.parse_args()
    suffix = "_s3" if args.lake == "s3" else ""
    if args.lake == "s3":
        import os
        import tempfile

        from moto_lake import start_moto_bucket  # benchmarks/moto_lake.py

        os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
        endpoint = start_moto_bucket("bench")

    started = time.perf_counter()
    import great_expectations  # noqa: F401

    gx_import_s = time.perf_counter() - started

    import yaml

    from airflow_mlops.data.suites import load_suite
    from airflow_mlops.data.validation import validate_partition
    from flights.source import read_table

    suite = load_suite(SUITE)
    suite_dict = yaml.safe_load(SUITE.read_text())
    reference = json.loads(PROFILE.read_text())
    flights = read_table("flights")
    flights["time_hour"] = pd.to_datetime(flights["time_hour"], utc=True).dt.as_unit("us")

    cases = {
        "month": (flights[flights["month"] == 1], {"year": 2013, "months": [1]}),
        "year": (flights, {"year": 2013, "months": list(range(1, 13))}),
    }
    print(f"GX import: {gx_import_s:.2f}s (once per task process; not in the timings below)")
    results: dict[str, float] = {}
    for name, (frame, parameters) in cases.items():
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        data = buffer.getvalue()
        source: Any = data
        if args.lake == "s3":
            import boto3

            key = f"raw/flights/{name}.parquet"
            boto3.client("s3", endpoint_url=endpoint).put_object(Bucket="bench", Key=key, Body=data)
            source = f"s3://bench/{key}"

        def read(source: Any = source) -> bytes:
            """The partition's bytes as the operator reads them (the object, through the connection)."""
            if isinstance(source, bytes):
                return source
            from airflow.sdk import ObjectStoragePath

            with ObjectStoragePath(source, conn_id="aws_default").open("rb") as handle:
                return bytes(handle.read())

        def ours(parameters: dict = parameters) -> list[str]:
            report = validate_partition(
                read(),
                "bench.parquet",
                suite,
                parameters=parameters,
                reference_profile=reference,
                drift_columns=DRIFT_COLUMNS,
            ).report
            return [f"{o.expectation}({o.column or ''})" for o in report.failures]

        def baseline(source: Any = source, parameters: dict = parameters) -> list[str]:
            return pandas_checks(source, suite_dict, parameters)

        # Warm both paths once (GX builds its registry and metric graph on first use).
        ours(), baseline()
        ours_s = baseline_s = 0.0
        ours_failed = baseline_failed = None
        for _ in range(args.repeats):  # alternate, best of N
            t, ours_failed = best_of(1, ours)
            ours_s = t if not ours_s else min(ours_s, t)
            t, baseline_failed = best_of(1, baseline)
            baseline_s = t if not baseline_s else min(baseline_s, t)
        assert sorted(ours_failed or []) == sorted(baseline_failed or []), (ours_failed, baseline_failed)
        print(
            f"{name}: {len(frame):,} rows, {len(suite.expectations)} expectations; GX path {ours_s:.3f}s, "
            f"pandas {baseline_s:.3f}s, ratio {ours_s / baseline_s:.1f}; both found {ours_failed or 'nothing'}"
        )
        results[f"validate_{name}_s{suffix}"] = ours_s
        results[f"pandas_{name}_s{suffix}"] = baseline_s
        results[f"validate_{name}_ratio{suffix}"] = ours_s / baseline_s
    results["gx_import_s"] = gx_import_s
    for key, value in results.items():
        print(f"RESULT {key}={value:.3f}")


if __name__ == "__main__":
    main()
