"""The run folder template and the periods that have a partition."""

from __future__ import annotations

from pathlib import Path


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
