"""The labels a monitoring DAG joins the request log with: written once per dataset version."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def test_labels_of_every_split_are_written_once_per_version_and_reused(tmp_path: Path) -> None:
    from airflow_mlops.operators.monitor import write_dataset_labels

    data = tmp_path / "dataset"
    data.mkdir()
    for name, ids in {"train": [1, 2], "test": [3]}.items():
        pd.DataFrame({"flight_id": ids, "is_delayed": [0] * len(ids), "x": 1.0}).to_parquet(
            data / f"{name}.parquet"
        )
    manifest = data / "manifest.json"  # split URIs relative to the manifest, as datasets write them
    manifest.write_text(
        json.dumps({"version": "v7", "splits": {s: {"uri": f"{s}.parquet"} for s in ("train", "test")}})
    )

    uri = write_dataset_labels(manifest.as_uri(), ["flight_id", "is_delayed"], str(tmp_path / "labels"), None)
    assert uri == (tmp_path / "labels" / "v7.parquet").as_uri()
    labels = pd.read_parquet(tmp_path / "labels" / "v7.parquet")
    assert list(labels.columns) == ["flight_id", "is_delayed"] and sorted(labels["flight_id"]) == [1, 2, 3]
    for split in data.glob("*.parquet"):
        split.unlink()  # a version never changes: the second call reads nothing
    assert (
        write_dataset_labels(manifest.as_uri(), ["flight_id", "is_delayed"], str(tmp_path / "labels"), None)
        == uri
    )


def test_a_hooks_duckdb_name_for_s3_tables_reads_as_s3_elsewhere() -> None:
    from airflow_mlops.hooks.feast import table_uri

    assert (
        table_uri("s3a://lake/features/carrier_stats/*.parquet")
        == "s3://lake/features/carrier_stats/*.parquet"
    )
    assert table_uri("/srv/lake/features/x/*.parquet") == "/srv/lake/features/x/*.parquet"
