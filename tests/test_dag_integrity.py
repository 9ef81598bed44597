"""Every reference DAG file imports cleanly, is documented and owned, and parses without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
HEAVY = (
    "torch",
    "pytorch_lightning",
    "lightning",
    "pandas",
    "pyarrow",
    "feast",
    "great_expectations",
    "mlflow",
    "sklearn",
    "optuna",
)


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dag_files_exist() -> None:
    assert DAG_FILES, "dags/ holds no DAG file"


def test_every_dag_file_imports_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert {
        "flights_seed",
        "flights_monthly",
        "flights_ingest",
        "flights_ingest_s3",
        "flights_validate",
        "flights_dataset",
        "flights_features",
        "flights_training",
        "flights_tuning",
        "flights_batch_scoring",
        "flights_arrival_delay",
        "flights_arrival_delay_monitoring",
        "flights_monitoring",
        "flights_experiment",
    } <= set(dagbag.dag_ids)


def test_the_experiment_ends_with_the_champion_serving_alone_whatever_happened(dagbag) -> None:
    """conclude is a teardown of deploy: it runs after a failed analysis or a skipped promotion,
    and the run still fails when the analysis did; the challenger is required to trigger it."""
    dag = dagbag.get_dag("flights_experiment")
    conclude, deploy = dag.get_task("conclude"), dag.get_task("deploy")
    assert conclude.is_teardown and deploy.is_setup and conclude.alias == "champion"
    assert dag.get_task("analysis").upstream_task_ids == {"enough_traffic", "labels"}
    assert dag.get_task("promote").upstream_task_ids == {"analysis"}
    assert deploy.require_infra_blessing is True and deploy.policy["kind"] == "ab"
    challenger = dag.params.get_param("challenger")
    with pytest.raises(ValueError, match="No value passed"):  # a trigger without it is refused
        challenger.resolve()
    with pytest.raises(ValueError, match="'' should be non-empty"):
        challenger.resolve("")
    assert dag.params.get_param("samples_per_variant").resolve() == 2000


def test_training_starts_on_new_features_or_on_drift(dagbag) -> None:
    condition = dagbag.get_dag("flights_training").timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"
    assert {asset.name for asset in condition.objects} == {"flight_features", "model_drift"}
    monitoring = dagbag.get_dag("flights_monitoring")
    (alert,) = [t for t in monitoring.tasks if t.outlets]
    assert alert.task_id == "model_drift" and [a.name for a in alert.outlets] == ["model_drift"]
    assert alert.trigger_rule == "none_failed" and set(alert.upstream_task_ids) == {"drift", "performance"}


def test_the_second_pipelines_monitoring_waits_paused_for_its_endpoints(dagbag) -> None:
    monitoring = dagbag.get_dag("flights_arrival_delay_monitoring")
    assert (
        monitoring.is_paused_upon_creation is True
        and dagbag.get_dag("flights_arrival_delay").schedule is None
    )
    groups = {t.task_id.split(".")[0] for t in monitoring.tasks if "." in t.task_id}
    assert groups == {"arrival_delay", "arrival_delay_gbm"}
    alerts = [t for t in monitoring.tasks if t.outlets]
    assert {a.task_id for a in alerts} == {"arrival_delay.model_drift", "arrival_delay_gbm.model_drift"}
    for alert in alerts:
        model = alert.task_id.split(".")[0]
        assert alert.upstream_task_ids == {f"{model}.drift", f"{model}.performance"}


def test_every_dag_has_docs_owner_retries_and_tags(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and len(dag.doc_md.strip()) > 80, f"{dag_id}: doc_md missing or too short"
        assert dag.tags, f"{dag_id}: no tags"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id}: no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id}: retries={task.retries}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_nothing_heavy_at_parse_time(dag_file: Path) -> None:
    probe = (  # the DAG folder on the path, as Airflow's bundle puts it (the flights package beside the DAGs)
        "import json, os, runpy, sys; sys.path.append(os.path.dirname(sys.argv[1])); runpy.run_path(sys.argv[1]); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(dag_file)], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_task_instances_link_to_their_runs_versions_and_reports(dagbag) -> None:
    def links(dag_id: str, task_id: str) -> list[str]:
        return [link.name for link in dagbag.get_dag(dag_id).get_task(task_id).operator_extra_links]

    assert links("flights_training", "train") == ["MLflow run"]
    assert links("flights_training", "evaluate") == ["Evaluation report", "MLflow run"]
    assert links("flights_training", "register") == ["Model version", "MLflow run"]
    assert links("flights_validate", "validate_flights") == ["Validation report"]
    assert (
        links("flights_monitoring", "drift")
        == links("flights_monitoring", "performance")
        == ["Monitoring report"]
    )


def test_the_daily_monitoring_run_covers_the_day_before(dagbag) -> None:
    """A scheduled run's data interval is its window: a whole day, not Airflow 3's zero-length "@daily"."""
    from datetime import UTC, datetime

    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = decode_timetable(
        encode_timetable(dagbag.get_dag("flights_monitoring").timetable)
    )  # the scheduler's
    run = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=datetime(2013, 3, 1, tzinfo=UTC), latest=None, catchup=True),
    )
    assert (run.data_interval.start, run.data_interval.end) == (
        datetime(2013, 3, 1, tzinfo=UTC),
        datetime(2013, 3, 2, tzinfo=UTC),
    )


def test_the_tuning_study_and_its_trials_log_to_one_experiment(dagbag) -> None:
    """The trials are nested runs of the study's MLflow run: both must name the same experiment
    (the stack test found them apart once, after a default changed)."""
    dag = dagbag.get_dag("flights_tuning")
    study, trial = dag.get_task("create_study"), dag.get_task("trial")
    assert study.mlflow_experiment == trial.partial_kwargs["mlflow_experiment"] == "flights-tuning"
