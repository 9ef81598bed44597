"""Reference DAGs: validate every raw flights and weather partition, and materialize the flights dataset from the validated months."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from airflow.sdk import DAG, Asset, task

from airflow_mlops import settings
from airflow_mlops.layout import partition_periods
from airflow_mlops.operators.dataset import MaterializeDatasetOperator
from airflow_mlops.operators.validate import DataValidationOperator

LAKE = settings.lake_uri()
SUITES = Path(__file__).parent / "suites"

# The same Assets flights_ingest.py emits (an Asset is identified by its name).
FLIGHTS_RAW = Asset(name="flights_raw", group="flights")
WEATHER_RAW = Asset(name="weather_raw", group="flights")
#: Emitted once per validated month; ``extra`` has uri, rows, sha256, suite, report_uri, statistics.
FLIGHTS_VALIDATED = Asset(name="flights_validated", group="flights")
WEATHER_VALIDATED = Asset(name="weather_validated", group="flights")

#: table -> (raw Asset, validated Asset, row-level bound or None, columns compared with the reference)
TABLES: dict[str, tuple[Asset, Asset, float | None, list[str]]] = {
    "flights": (
        FLIGHTS_RAW,
        FLIGHTS_VALIDATED,
        None,
        ["dep_delay", "arr_delay", "sched_dep_time", "distance", "carrier", "origin", "dest"],
    ),
    # Weather has real sensor glitches (one hour of 1048 mph wind in February 2013): row-level mode
    # quarantines such rows and passes the month when they are under 1 %.
    "weather": (
        WEATHER_RAW,
        WEATHER_VALIDATED,
        0.01,
        ["temp", "dewp", "humid", "wind_speed", "precip", "pressure", "visib"],
    ),
}


def validation_kwargs(table: str, uri: str) -> dict[str, Any]:
    """Where a raw partition ``.../raw/<table>/YYYY-MM.parquet`` is validated to, and for which month."""
    period = PurePosixPath(uri).stem
    year, month = (int(part) for part in period.split("-"))
    return {
        "partition": uri,
        "suite_parameters": {"year": year, "months": [month]},
        "validated_target": f"{LAKE}/validated/{table}/{period}.parquet",
        "quarantine_dir": f"{LAKE}/quarantine/{table}/{period}",
    }


with DAG(
    dag_id="flights_validate",
    schedule=(FLIGHTS_RAW | WEATHER_RAW),
    start_date=datetime(2013, 1, 1),
    catchup=False,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["mlops", "flights", "validation", "event-driven"],
    doc_md="""
### Validate every raw partition (Great Expectations)
Starts whenever a month of flights or weather is extracted (the `flights_raw` or `weather_raw`
Asset, from `flights_monthly`, `flights_ingest` or `flights_ingest_s3`). Each partition named
in the triggering events is checked against its suite, kept in the repository at
`dags/suites/<table>_raw.yaml` (types, NULLs, ranges, carrier and airport sets, unique keys, the
partition's month), and its distributions are compared with the January reference profile
(`dags/suites/<table>_raw.profile.json`: PSI for numbers, Jensen-Shannon for categories; drift is
reported, not failed).

- **Pass**: the partition is copied to `lake/validated/<table>/YYYY-MM.parquet` with a manifest and
  a report (`.report.json` and a readable `.report.html`) and `flights_validated` /
  `weather_validated` is emitted; feature engineering schedules on those.
- **Fail**: the task fails, listing each failed expectation with its column, rule, unexpected count
  and sample values; the partition moves to `lake/quarantine/<table>/YYYY-MM/<sha>/` beside its
  report, and nothing downstream runs. Fix the source and re-extract the month.
- Weather is validated row by row: when under 1 % of the rows fail, they go to quarantine as
  `YYYY-MM.invalid.parquet` and the rest passes.

In the UI each `validate_*` task's **Validation report** link opens its report (passed or
quarantined); **MLOps → Data** lists every validated and quarantined partition. The OpenLineage
event of each validation carries the suite's results as data-quality facets.

Trigger by hand with conf `{"flights": ["<uri>", ...], "weather": ["<uri>", ...]}`.
""",
):

    @task
    def raw_partitions(table: str, **context: Any) -> list[dict[str, Any]]:
        """One validation per distinct partition in the triggering events (and in the run's conf)."""
        raw_asset = TABLES[table][0]
        events = context["triggering_asset_events"].get(raw_asset, [])
        uris = {event.extra["uri"] for event in events if event.extra.get("uri")}
        uris |= set((context["dag_run"].conf or {}).get(table, []))
        return [validation_kwargs(table, uri) for uri in sorted(uris)]

    for table, (_raw, validated, max_invalid_fraction, drift_columns) in TABLES.items():
        partitions = raw_partitions.override(task_id=f"{table}_partitions")(table)
        DataValidationOperator.partial(
            task_id=f"validate_{table}",
            suite=str(SUITES / f"{table}_raw.yaml"),
            storage_conn_id=settings.lake_conn_id(),
            reference_profile=(SUITES / f"{table}_raw.profile.json").as_uri(),
            drift_columns=drift_columns,
            max_invalid_fraction=max_invalid_fraction,
            outlets=[validated],
            map_index_template="{{ task.partition.rsplit('/', 1)[-1] }}",
        ).expand_kwargs(partitions)


#: Emitted once per materialized version; ``extra`` has name, version, manifest_uri, splits.
FLIGHTS_DELAY_DATASET = Asset(name="flights_delay_dataset", group="flights")

with DAG(
    dag_id="flights_dataset",
    schedule=[FLIGHTS_VALIDATED],
    start_date=datetime(2013, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["mlops", "flights", "datasets", "event-driven"],
    doc_md="""
### Materialize the flights delay dataset from every validated month
Runs when a month of flights is validated (`flights_validated`). The dataset is defined once in
`dags/datasets/flights_delay.yaml`: source partitions (`lake/validated/flights/YYYY-MM.parquet`),
filters (cancelled flights out), the label (`is_delayed`: arrival more than 15 minutes late) and
the split (by a hash of `flight_id`: 80/10/10, so a flight keeps its split as months are added).
`materialize` reads every validated month (only files whose manifest hash matches), writes
`lake/datasets/flights_delay/<version>/{train,validation,test}.parquet`, a profile of the training
split (the drift reference) and `manifest.json` (sources with hashes, rows per split, rows each
filter removed, code version), and emits `flights_delay_dataset`. The same months give the same
version and the same rows anywhere.
""",
):

    @task
    def validated_periods() -> list[str]:
        """Every month of flights that has passed validation (``YYYY-MM``)."""
        return partition_periods(f"{LAKE}/validated/flights", settings.lake_conn_id())

    MaterializeDatasetOperator(
        task_id="materialize",
        definition=str(Path(__file__).parent / "datasets" / "flights_delay.yaml"),
        output_uri=f"{LAKE}/datasets",
        periods=validated_periods(),
        variables={"lake": LAKE},
        storage_conn_id=settings.lake_conn_id(),
        outlets=[FLIGHTS_DELAY_DATASET],
    )
