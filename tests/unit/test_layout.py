"""The run folder template, the periods that have a partition, and where data may be read, written
and moved: inside the configured roots, however a path is spelt."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mlops.exceptions import TargetError
from airflow_mlops.layout import confine, within


@pytest.mark.parametrize(
    ("uri", "root", "inside"),
    [
        ("file:///srv/lake/raw/a.parquet", "file:///srv/lake", True),
        ("/srv/lake/raw/a.parquet", "file:///srv/lake/", True),
        ("file:///srv/lake", "file:///srv/lake", True),
        ("file:///srv/lake/raw/../../etc/passwd", "file:///srv/lake", False),
        ("file:///srv/lakehouse/a.parquet", "file:///srv/lake", False),
        ("s3://bucket/lake/raw/a.parquet", "s3://bucket/lake", True),
        ("s3://bucket/lake/../other/a.parquet", "s3://bucket/lake", False),
        ("s3://bucket/lakes/a.parquet", "s3://bucket/lake", False),
        ("s3://other/lake/a.parquet", "s3://bucket/lake", False),
        ("s3://landing/months/a.parquet", "s3://landing", True),
        ("s3://bucket/lake/a.parquet", "file:///srv/lake", False),
        ("/srv/lake/a.parquet", "s3://bucket/lake", False),
    ],
)
def test_within_resolves_dots_and_compares_whole_segments(uri: str, root: str, inside: bool) -> None:
    assert within(uri, root) is inside


def test_a_symbolic_link_out_of_the_root_is_outside(tmp_path: Path) -> None:
    (tmp_path / "lake").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "lake" / "link").symlink_to(tmp_path / "secret")
    assert not within(str(tmp_path / "lake" / "link" / "a.parquet"), str(tmp_path / "lake"))


def test_confine_names_what_the_uri_and_the_roots() -> None:
    confine("s3://landing/m.parquet", ["file:///srv/lake", "s3://landing"], "landing file")
    with pytest.raises(TargetError, match=r"partition '/etc/passwd': must lie inside \['file:///srv/lake'\]"):
        confine("/etc/passwd", ["file:///srv/lake"], "partition")


def test_partition_periods_lists_the_partitions_not_their_manifests(tmp_path: Path) -> None:
    from airflow_mlops.layout import partition_periods

    folder = tmp_path / "validated" / "flights"
    folder.mkdir(parents=True)
    for name in ("2013-02.parquet", "2013-01.parquet", "2013-01.parquet.manifest.json", "notes.txt"):
        (folder / name).write_text("x")
    assert partition_periods(folder.as_uri()) == ["2013-01", "2013-02"]
    assert partition_periods(f"{folder.as_uri()}/") == ["2013-01", "2013-02"]
    assert partition_periods((tmp_path / "missing").as_uri()) == []


def test_the_run_folder_has_no_characters_object_stores_refuse() -> None:
    from jinja2 import Template

    from airflow_mlops.layout import RUN_FOLDER

    assert (
        Template(RUN_FOLDER).render(run_id="manual__2013-03-01T00:00:00+00:00")
        == "manual__2013-03-01T00_00_00_00_00"
    )
