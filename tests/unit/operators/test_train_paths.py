"""The training driver imports the project's own modules: the DAG file's folder, ``[mlops] code_path``
and the DAG folder are on its PYTHONPATH, ahead of what the environment had."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_the_driver_path_has_the_dag_folder_the_code_path_and_the_old_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import DAG

    from airflow_mlops.operators.train import LightningTrainOperator

    src, dags, old = tmp_path / "src", tmp_path / "dags", tmp_path / "old"
    monkeypatch.setenv("AIRFLOW__MLOPS__CODE_PATH", f"{src}{os.pathsep}{src}")
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    monkeypatch.setenv("PYTHONPATH", str(old))
    arguments = {"training_set": "m.json", "output_dir": "o", "checkpoint_root": "c", "model": "my.net:Net"}
    alone = LightningTrainOperator(task_id="train", **arguments)
    assert alone.python_path().split(os.pathsep) == [str(src), str(dags), str(old)]

    with DAG("project", schedule=None) as dag:
        placed = LightningTrainOperator(task_id="train", **arguments)
    dag.fileloc = str(tmp_path / "project" / "dags" / "training.py")
    assert placed.python_path().split(os.pathsep) == [
        str(tmp_path / "project" / "dags"),
        str(src),
        str(dags),
        str(old),
    ]
