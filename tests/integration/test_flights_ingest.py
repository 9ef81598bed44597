"""The reference ingestion DAGs run for real (dag.test on a migrated metadata DB) on the seeded source."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from airflow_mlops.artifacts import MANIFEST_SUFFIX, Artifact
from flights.source import write_landing_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def load_dag(dag_id: str, dag_file: str = "flights_ingest.py"):
    """A reference DAG parsed from its file in dags/ (dag.test needs the DAG in a bundle)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / dag_file))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def task_states(dag_run) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {ti.task_id: str(ti.state) for ti in tis}


def asset_events(name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == name)
            .order_by(AssetEvent.id)
            .all()
        )
        return [dict(r.extra) for r in rows]


def source_month(source_db: Path, table: str, month: int, order: str) -> pd.DataFrame:
    with sqlite3.connect(source_db) as conn:
        return pd.read_sql(
            f"SELECT * FROM {table} WHERE year = 2013 AND month = ? ORDER BY {order}", conn, params=(month,)
        )


def test_monthly_extracts_january_row_by_row(airflow_db, source_conn, source_db, lake) -> None:
    from datetime import datetime

    dag = load_dag("flights_monthly")
    run = dag.test(logical_date=datetime(2013, 1, 1, tzinfo=UTC))
    assert str(run.state) == "success", task_states(run)

    partition = lake / "raw" / "flights" / "2013-01.parquet"
    extracted = pq.read_table(partition).to_pandas()
    expected = source_month(source_db, "flights", 1, "flight_id")
    assert len(extracted) == len(expected) == 27004
    expected["time_hour"] = pd.to_datetime(expected["time_hour"], utc=True)
    extracted["time_hour"] = extracted["time_hour"].dt.as_unit("ns")
    pd.testing.assert_frame_equal(extracted, expected, check_dtype=False)

    manifest = Artifact.from_json(Path(str(partition) + MANIFEST_SUFFIX).read_text())
    assert manifest.metadata["rows"] == 27004 and manifest.parents == ("conn://flights_source",)
    assert manifest.metadata["parameters"] == {"year": "2013", "month": "1"}
    event = asset_events("flights_raw")[-1]
    assert event["uri"] == partition.as_uri() and event["rows"] == 27004
    assert event["sha256"] == manifest.sha256
    weather = pq.read_table(lake / "raw" / "weather" / "2013-01.parquet")
    assert weather.num_rows == len(source_month(source_db, "weather", 1, "origin, time_hour"))

    # A re-run of the logical date replaces the partition: same content, one file.
    rerun = dag.test(logical_date=datetime(2013, 1, 1, tzinfo=UTC))
    assert str(rerun.state) == "success"
    again = Artifact.from_json(Path(str(partition) + MANIFEST_SUFFIX).read_text())
    assert again.sha256 == manifest.sha256
    assert sorted(p.name for p in partition.parent.iterdir()) == [
        "2013-01.parquet",
        "2013-01.parquet.manifest.json",
        "_schema.json",
    ]


def test_empty_month_fails_with_a_clear_message_and_no_partition(airflow_db, source_conn, lake) -> None:
    from datetime import datetime

    dag = load_dag("flights_monthly")
    run = dag.test(logical_date=datetime(2013, 7, 1, tzinfo=UTC))  # the seed holds Jan and Feb only
    states = task_states(run)
    assert str(run.state) == "failed" and states["extract_flights"] == "failed"
    assert not (lake / "raw" / "flights").exists() or not list((lake / "raw" / "flights").glob("*.parquet"))


def test_ingest_loads_a_landed_month_and_extracts_it(
    airflow_db, source_conn, source_db, lake, tmp_path
) -> None:
    from datetime import datetime

    # Remove February from the source so the landing file is what brings it.
    with sqlite3.connect(source_db) as conn:
        conn.execute("DELETE FROM flights WHERE month = 2")
    landed = write_landing_file(2, tmp_path / "landing")
    dag = load_dag("flights_ingest")
    run = dag.test(logical_date=datetime(2013, 2, 1, tzinfo=UTC), run_conf={"uri": landed.as_uri()})
    assert str(run.state) == "success", task_states(run)

    assert not landed.exists() and (tmp_path / "landing" / "_loaded" / landed.name).exists()
    expected = pd.read_parquet(tmp_path / "landing" / "_loaded" / landed.name)
    extracted = pq.read_table(lake / "raw" / "flights" / "2013-02.parquet").to_pandas()
    assert extracted["flight_id"].tolist() == sorted(expected["flight_id"].tolist())
    assert len(source_month(source_db, "flights", 2, "flight_id")) == len(expected) == 24951

    # Landing the same month again replaces it in the source instead of duplicating it.
    again = write_landing_file(2, tmp_path / "landing")
    run = dag.test(logical_date=datetime(2013, 2, 2, tzinfo=UTC), run_conf={"uri": again.as_uri()})
    assert str(run.state) == "success", task_states(run)
    assert len(source_month(source_db, "flights", 2, "flight_id")) == 24951


def test_ingest_rejects_a_file_spanning_two_months(airflow_db, source_conn, lake, tmp_path) -> None:
    from datetime import datetime

    from flights.source import read_table

    bad = tmp_path / "landing" / "mixed.parquet"
    flights = read_table("flights")
    flights[flights["day"] == 1].head(2000).to_parquet(bad)  # Jan 1st and Feb 1st
    run = load_dag("flights_ingest").test(
        logical_date=datetime(2013, 3, 3, tzinfo=UTC), run_conf={"uri": bad.as_uri()}
    )
    assert str(run.state) == "failed"
    assert task_states(run)["load_landing_file"] == "failed"  # at once: a bad file is not retried
    assert bad.exists(), "a rejected landing file must stay where it is"
    # A good month file outside the landing folder (and the lake): refused before it is read or moved.
    elsewhere = write_landing_file(2, tmp_path / "elsewhere")
    for day, uri in enumerate(
        (elsewhere.as_uri(), f"{(tmp_path / 'landing').as_uri()}/../elsewhere/{elsewhere.name}")
    ):
        run = load_dag("flights_ingest").test(
            logical_date=datetime(2013, 3, 4 + day, tzinfo=UTC), run_conf={"uri": uri}
        )
        assert task_states(run)["load_landing_file"] == "failed"
    assert elsewhere.exists() and not (tmp_path / "elsewhere" / "_loaded").exists()


def test_seed_dag_loads_the_source_once(airflow_db, tmp_path, monkeypatch) -> None:
    from datetime import datetime

    db = tmp_path / "seeded.db"
    monkeypatch.setenv("AIRFLOW_CONN_FLIGHTS_SOURCE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    dag = load_dag("flights_seed")
    for day in (1, 2):
        run = dag.test(logical_date=datetime(2013, 1, day, tzinfo=UTC))
        assert str(run.state) == "success", task_states(run)
    with sqlite3.connect(db) as conn:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("flights", "weather", "planes", "airlines", "airports")
        }
    assert counts["flights"] == 336_776 and counts["airlines"] == 16 and counts["planes"] == 3322
