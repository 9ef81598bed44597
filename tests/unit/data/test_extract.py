"""Streaming a query into one Parquet partition: chunks, types, atomicity, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import ObjectStoragePath
from sqlalchemy import create_engine, text

from airflow_mlops.data.extract import MAX_BUFFERED_CHUNKS, parse_arrow_type, stream_query_to_parquet
from airflow_mlops.exceptions import EmptyResultError, SchemaError, SourceQueryError, TargetError


@pytest.fixture
def engine(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'src.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER, x REAL, name TEXT, note TEXT)"))
        conn.execute(
            text("INSERT INTO t VALUES (:id, :x, :name, :note)"),
            [
                {"id": i, "x": i / 2, "name": f"n{i}", "note": None if i < 250 else "late"}
                for i in range(1000)
            ],
        )
    yield engine
    engine.dispose()


def lake_files(tmp_path: Path) -> list[str]:
    lake = tmp_path / "lake"
    return sorted(p.name for p in lake.iterdir()) if lake.exists() else []


def target(tmp_path: Path, name: str = "part.parquet") -> ObjectStoragePath:
    return ObjectStoragePath((tmp_path / "lake" / name).as_uri())


def test_rows_and_schema_round_trip_in_chunks(engine, tmp_path: Path) -> None:
    out = target(tmp_path)
    with engine.connect() as conn:
        result = stream_query_to_parquet(
            conn, "SELECT * FROM t WHERE id < :n ORDER BY id", out, parameters={"n": 700}, chunk_size=100
        )
    table = pq.read_table(out.path)
    assert result.rows == 700 == table.num_rows
    assert table.column("id").to_pylist() == list(range(700))
    assert table.column("x").to_pylist()[3] == 1.5
    assert pq.ParquetFile(out.path).metadata.num_row_groups == 7
    assert result.sha256 == hashlib.sha256(Path(out.path).read_bytes()).hexdigest()
    assert [c["type"] for c in result.schema] == ["int64", "double", "string", "string"]


def test_column_null_in_first_chunks_gets_its_type_from_later_rows(engine, tmp_path: Path) -> None:
    out = target(tmp_path)
    with engine.connect() as conn:
        result = stream_query_to_parquet(conn, "SELECT id, note FROM t ORDER BY id", out, chunk_size=100)
    assert result.schema[1] == {"name": "note", "type": "string"}
    notes = pq.read_table(out.path).column("note").to_pylist()
    assert notes[:250] == [None] * 250 and notes[250:] == ["late"] * 750


def test_too_many_null_chunks_is_an_error_unless_typed(engine, tmp_path: Path) -> None:
    out = target(tmp_path)
    size = 250 // MAX_BUFFERED_CHUNKS - 1
    with engine.connect() as conn, pytest.raises(SchemaError, match=r"\['note'\] are NULL.*column_types"):
        stream_query_to_parquet(conn, "SELECT id, note FROM t ORDER BY id", out, chunk_size=size)
    assert lake_files(tmp_path) == []
    with engine.connect() as conn:
        result = stream_query_to_parquet(
            conn, "SELECT id, note FROM t ORDER BY id", out, chunk_size=size, column_types={"note": "string"}
        )
    assert result.rows == 1000


def test_bind_parameters_are_never_formatted_into_sql(engine, tmp_path: Path) -> None:
    out = target(tmp_path)
    hostile = "n1' OR '1'='1"
    with engine.connect() as conn, pytest.raises(EmptyResultError, match="no rows"):
        stream_query_to_parquet(conn, "SELECT * FROM t WHERE name = :name", out, parameters={"name": hostile})
    with engine.connect() as conn:
        result = stream_query_to_parquet(
            conn, "SELECT * FROM t WHERE name = :name", out, parameters={"name": "n1"}
        )
    assert result.rows == 1


def test_empty_result_fails_by_default_and_leaves_nothing(engine, tmp_path: Path) -> None:
    out = target(tmp_path)
    with engine.connect() as conn, pytest.raises(EmptyResultError, match="allow_empty"):
        stream_query_to_parquet(conn, "SELECT * FROM t WHERE id < 0", out)
    assert lake_files(tmp_path) == []
    with engine.connect() as conn:
        result = stream_query_to_parquet(conn, "SELECT * FROM t WHERE id < 0", out, allow_empty=True)
    assert result.rows == 0 and pq.read_table(out.path).num_rows == 0


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC * FROM t", "syntax error"),
        ("SELECT * FROM no_such_table", "no such table: no_such_table"),
        ("SELECT * FROM t WHERE id = :missing", "missing"),
    ],
)
def test_bad_sql_is_a_clear_error_with_no_output(engine, tmp_path: Path, sql: str, message: str) -> None:
    out = target(tmp_path)
    with engine.connect() as conn, pytest.raises(SourceQueryError, match=message) as info:
        stream_query_to_parquet(conn, sql, out)
    assert "sql=" in str(info.value)
    assert lake_files(tmp_path) == []


def test_a_failed_query_names_its_bind_parameters_but_never_their_values(engine, tmp_path: Path) -> None:
    import traceback

    out = target(tmp_path)
    secret = "s3cret-customer-email@example.com"
    with engine.connect() as conn, pytest.raises(SourceQueryError) as info:
        stream_query_to_parquet(
            conn, "SELECT * FROM no_such_table WHERE x = :email", out, parameters={"email": secret}
        )
    shown = "".join(traceback.format_exception(info.value))  # what a task log prints, causes included
    assert "bind parameters ['email'] (values not shown)" in str(info.value)
    assert "no such table" in shown and secret not in shown
    assert lake_files(tmp_path) == []


def test_changed_type_against_recorded_schema_fails_before_writing(engine, tmp_path: Path) -> None:
    out = target(tmp_path)
    recorded = [{"name": "id", "type": "int64"}, {"name": "x", "type": "string"}]
    with engine.connect() as conn, pytest.raises(SchemaError, match=r"'x'.*string.*double"):
        stream_query_to_parquet(conn, "SELECT id, x FROM t", out, expected_schema=recorded)
    assert lake_files(tmp_path) == []
    recorded_cols = [{"name": "id", "type": "int64"}]
    with engine.connect() as conn, pytest.raises(SchemaError, match=r"columns changed.*new=\['x'\]"):
        stream_query_to_parquet(conn, "SELECT id, x FROM t", out, expected_schema=recorded_cols)


def test_mixed_types_within_a_column_name_the_values(engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES ('oops', 1.0, 'n', NULL)"))
    with engine.connect() as conn, pytest.raises(SchemaError, match=r"'id'.*mixed types.*'oops'"):
        stream_query_to_parquet(conn, "SELECT id FROM t", target(tmp_path), chunk_size=5000)


def test_value_that_cannot_be_cast_to_the_partition_type_fails(engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2000, 'abc', 'n', NULL)"))
    with engine.connect() as conn, pytest.raises(SchemaError, match=r"'x'.*cannot be cast"):
        stream_query_to_parquet(conn, "SELECT x FROM t ORDER BY id", target(tmp_path), chunk_size=100)
    assert lake_files(tmp_path) == []


def test_rerun_replaces_the_partition(engine, tmp_path: Path) -> None:
    out = target(tmp_path)
    with engine.connect() as conn:
        stream_query_to_parquet(conn, "SELECT * FROM t", out)
        stream_query_to_parquet(conn, "SELECT * FROM t WHERE id < 10", out)
    assert pq.read_table(out.path).num_rows == 10
    assert lake_files(tmp_path) == ["part.parquet"]


def test_failure_midway_keeps_the_previous_partition(engine, tmp_path: Path) -> None:
    out = target(tmp_path)
    with engine.connect() as conn:
        stream_query_to_parquet(conn, "SELECT id, x FROM t", out)
    before = Path(out.path).read_bytes()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (5000, 'abc', 'n', NULL)"))
    with engine.connect() as conn, pytest.raises(SchemaError):
        stream_query_to_parquet(conn, "SELECT id, x FROM t ORDER BY id", out, chunk_size=100)
    assert Path(out.path).read_bytes() == before
    assert lake_files(tmp_path) == ["part.parquet"]


def test_unwritable_target_is_a_target_error(engine, tmp_path: Path) -> None:
    blocker = tmp_path / "lake"
    blocker.write_text("a file where a folder must be")
    with engine.connect() as conn, pytest.raises(TargetError, match="cannot create its folder"):
        stream_query_to_parquet(conn, "SELECT * FROM t", ObjectStoragePath((blocker / "p.parquet").as_uri()))


def test_timestamp_strings_are_read_in_the_target_zone(tmp_path: Path) -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        result = stream_query_to_parquet(
            conn,
            "SELECT '2013-01-01 10:00:00.000000' AS t",
            target(tmp_path),
            column_types={"t": "timestamp[us, tz=UTC]"},
        )
    assert result.schema == [{"name": "t", "type": "timestamp[us, tz=UTC]"}]
    value = pq.read_table(target(tmp_path).path).column("t")[0].as_py()
    assert value.isoformat() == "2013-01-01T10:00:00+00:00"


def test_unknown_type_names_and_columns_are_rejected(engine, tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"column_types\['x'\]: unknown Arrow type name 'decimal'"):
        parse_arrow_type("decimal", "x")
    assert parse_arrow_type("timestamp[ms]", "x") == pa.timestamp("ms")
    with engine.connect() as conn, pytest.raises(SchemaError, match=r"does not return: \['nope'\]"):
        stream_query_to_parquet(conn, "SELECT id FROM t", target(tmp_path), column_types={"nope": "int64"})


def test_chunk_size_must_be_positive(engine, tmp_path: Path) -> None:
    with engine.connect() as conn, pytest.raises(ValueError, match="chunk_size must be a positive"):
        stream_query_to_parquet(conn, "SELECT id FROM t", target(tmp_path), chunk_size=0)
