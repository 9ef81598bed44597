"""Where data may be read, written and moved: inside the configured roots, however a path is spelt."""

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
