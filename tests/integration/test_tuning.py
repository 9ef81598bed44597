"""Optuna tuning for real: flights_tuning's mapped trials on SQLite storage, pruning, Postgres storage."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.connections import optuna_conn
from tests.integration.test_flights_ingest import load_dag
from tests.training_sets import write_training_set

pytestmark = pytest.mark.integration
MODEL = "flights.model:FlightDelayModel"
DATA = "flights.model:FlightDataModule"
SPACE = {
    "hidden": {"type": "int", "low": 8, "high": 32},
    "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
}


@pytest.fixture(scope="module")
def training_set(tmp_path_factory) -> str:
    return write_training_set(tmp_path_factory.mktemp("training-set"))


# flights_tuning itself runs under the real scheduler in test_event_ingest.py (four mapped trials, two
# at a time; the best trial's event, study and MLflow runs are checked there).


def test_training_reads_the_newest_best_parameters_through_its_inlets(airflow_db) -> None:
    training = load_dag("flights_training", "flights_training.py")
    task = training.get_task("hyperparameters")
    assert task.inlets and task.inlets[0].name == "flight_delay_hyperparameters"


def context(map_index: int = -1, try_number: int = 1) -> dict:
    return {
        "dag": SimpleNamespace(dag_id="tune"),
        "run_id": "r1",
        "ti": SimpleNamespace(map_index=map_index, try_number=try_number),
    }


def run_study(
    training_set: str, folder: Path, *, n_trials: int, pruner: dict | None = None, **storage_args
) -> list[dict]:
    from airflow_mlops.operators.tune import CreateStudyOperator, TuneTrialOperator

    slots = CreateStudyOperator(
        task_id="create",
        study_name="s",
        search_space=SPACE,
        n_trials=n_trials,
        mlflow_conn_id=None,
        **storage_args,
    ).execute(context())  # type: ignore[arg-type]
    trials = [
        TuneTrialOperator(
            task_id="trial",
            study_name="s",
            slot=slot,
            training_set=training_set,
            output_dir=str(folder / "out"),
            checkpoint_root=str(folder / "ckpt"),
            model=MODEL,
            data=DATA,
            max_epochs=3,
            pruner=pruner,
            mlflow_conn_id=None,
            **storage_args,
        ).execute(context(slot))  # type: ignore[arg-type]
        for slot in slots
    ]
    return trials


def test_a_pruned_trial_stops_early_and_a_study_without_a_complete_trial_fails(
    training_set: str, tmp_path: Path
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.operators.tune import BestTrialOperator

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # Every validation loss is above 0: the threshold pruner stops each trial after its first epoch.
    trials = run_study(
        training_set,
        tmp_path,
        n_trials=1,
        optuna_conn_id=optuna_conn(storage),
        pruner={"type": "threshold", "upper": 0.0},
    )

    assert [t["state"] for t in trials] == ["PRUNED"]
    assert [t["pruned_at_epoch"] for t in trials] == [0]
    for trial in trials:
        result = json.loads((tmp_path / "out" / f"trial-{trial['trial']}" / "result.json").read_text())
        assert result["epochs"] == 1 and result["hyperparameters"]["hidden"] == trial["params"]["hidden"]
    with pytest.raises(AirflowFailException, match=r"no trial completed.*'PRUNED': 1"):
        BestTrialOperator(
            task_id="best", study_name="s", optuna_conn_id=optuna_conn(storage), mlflow_conn_id=None
        ).execute(context())  # type: ignore[arg-type]


def test_a_study_in_postgres_storage_from_an_airflow_connection(
    postgres_url: str, training_set: str, tmp_path: Path, monkeypatch
) -> None:
    import sqlalchemy

    from airflow_mlops.operators.tune import BestTrialOperator

    engine = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("DROP DATABASE IF EXISTS optuna"))
        connection.execute(sqlalchemy.text("CREATE DATABASE optuna"))
    database = postgres_url.rsplit("/", 1)[0].replace("postgresql+psycopg2://", "postgres://") + "/optuna"
    monkeypatch.setenv("AIRFLOW_CONN_OPTUNA_DB", database)

    trials = run_study(
        training_set, tmp_path, n_trials=2, optuna_conn_id="optuna_db", pruner={"type": "none"}
    )

    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    with sqlalchemy.create_engine(postgres_url.rsplit("/", 1)[0] + "/optuna").connect() as connection:
        stored = connection.execute(sqlalchemy.text("SELECT number, state FROM trials ORDER BY number")).all()
    assert [tuple(row) for row in stored] == [(0, "COMPLETE"), (1, "COMPLETE")]
    best = BestTrialOperator(
        task_id="best", study_name="s", optuna_conn_id="optuna_db", mlflow_conn_id=None
    ).execute(context())  # type: ignore[arg-type]
    assert best["best_value"] == min(t["value"] for t in trials)


def test_a_retried_trial_resumes_the_same_trial(training_set: str, tmp_path: Path) -> None:
    import optuna

    from airflow_mlops.operators.tune import CreateStudyOperator, TuneTrialOperator

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    CreateStudyOperator(
        task_id="create",
        study_name="s",
        search_space=SPACE,
        n_trials=1,
        optuna_conn_id=optuna_conn(storage),
        mlflow_conn_id=None,
    ).execute(context())  # type: ignore[arg-type]
    arguments = {
        "task_id": "trial",
        "study_name": "s",
        "training_set": training_set,
        "optuna_conn_id": optuna_conn(storage),
        "output_dir": str(tmp_path / "out"),
        "checkpoint_root": str(tmp_path / "ckpt"),
        "model": MODEL,
        "max_epochs": 2,
        "retries": 1,
        "mlflow_conn_id": None,
    }
    failing = TuneTrialOperator(data="tests.failing_training:DataThatFailsOnRankOne", devices=2, **arguments)
    with pytest.raises(Exception, match="exited with code"):
        failing.execute(context(0, try_number=1))  # type: ignore[arg-type]
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state.name for t in study.trials] == ["RUNNING"]  # a retry is left: the trial stays open

    again = TuneTrialOperator(data=DATA, **arguments).execute(context(0, try_number=2))  # type: ignore[arg-type]
    study = optuna.load_study(study_name="s", storage=storage)
    assert again["trial"] == 0 and [t.state.name for t in study.trials] == ["COMPLETE"]
    assert again["params"] == study.trials[0].params
