"""The training runtime and LightningTrainOperator for real: torchrun DDP on CPU, resume, failures, two nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_mlops.training.spec import TrainingSpec
from tests.conftest import free_port
from tests.training_sets import write_training_set

pytestmark = pytest.mark.integration
MODEL = "flights.model:FlightDelayModel"
DATA = "flights.model:FlightDataModule"


def driver_env() -> dict[str, str]:
    """For drivers started here by hand: the flights package importable, as the operator makes it for
    its drivers (it puts the DAG folder on their PYTHONPATH; the operator tests rely on that)."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "dags")}


@pytest.fixture(scope="module")
def training_set(tmp_path_factory) -> str:
    return write_training_set(tmp_path_factory.mktemp("training-set"))


def make_spec(
    folder: Path,
    training_set: str,
    *,
    devices: int = 1,
    epochs: int = 2,
    mlflow: bool = False,
    data: str = DATA,
    **trainer,
) -> Path:
    spec = TrainingSpec(
        model=MODEL,
        data=data,
        training_set=training_set,
        output_dir=str(folder / "out"),
        checkpoint_dir=str(folder / "ckpt"),
        hyperparameters={"hidden": 32},
        batch_size=512,
        trainer={
            "devices": devices,
            "strategy": "ddp" if devices > 1 else "auto",
            "max_epochs": epochs,
            **trainer,
        },
        mlflow={
            "tracking_uri": f"sqlite:///{folder / 'mlflow.db'}",
            "experiment": "test",
            "artifact_location": str(folder / "artifacts"),
        }
        if mlflow
        else {},
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(spec.to_json())
    return folder / "spec.json"


def torchrun(spec: Path, devices: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(devices),
        *(extra or ["--standalone"]),
        "-m",
        "airflow_mlops.training",
        str(spec),
    ]


def result(spec: Path) -> dict:
    return json.loads((spec.parent / "out" / "result.json").read_text())


def test_the_runtime_runs_without_airflow_and_logs_to_mlflow(tmp_path: Path, training_set: str) -> None:
    spec = make_spec(tmp_path / "solo", training_set, mlflow=True)
    probe = (
        "import sys; from airflow_mlops.training.launch import main; code = main([sys.argv[1]]); "
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')); "
        "assert not loaded, loaded; sys.exit(code)"
    )
    subprocess.run(
        [sys.executable, "-c", probe, str(spec)],
        check=True,
        capture_output=True,
        timeout=300,
        env=driver_env(),
    )

    outcome = result(spec)
    metrics = outcome["metrics"]
    # A held-out month (February), against always predicting January's delay rate.
    assert metrics["test_auc"] > 0.6 and metrics["test_log_loss"] < metrics["test_baseline_log_loss"] - 0.01
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'solo' / 'mlflow.db'}")
    run = client.get_run(outcome["mlflow_run_id"])
    assert run.data.metrics["test_auc"] == pytest.approx(metrics["test_auc"])
    assert run.data.params["hidden"] == "32"
    # Every epoch's val_loss, logged through MLflow's async queue, is in the store when the run ends.
    history = client.get_metric_history(outcome["mlflow_run_id"], "val_loss")
    last = max(history, key=lambda m: m.step)
    assert len({m.step for m in history}) >= 2 and last.value == pytest.approx(metrics["val_loss"])
    assert run.info.status == "FINISHED"

    from flights.model import load_model

    model, config = load_model(spec.parent / "out")  # weights_only=True: no pickled code runs
    assert config["preprocessing"]["categorical"]["origin"] == ["EWR", "JFK", "LGA"]
    assert config["init"]["hidden"] == 32 and not model.training


def test_two_ddp_processes_match_one_and_a_seed_repeats(tmp_path: Path, training_set: str) -> None:
    one = make_spec(tmp_path / "one", training_set)
    two_a, two_b = (make_spec(tmp_path / name, training_set, devices=2) for name in ("two_a", "two_b"))
    for spec, devices in ((one, 1), (two_a, 2), (two_b, 2)):
        subprocess.run(
            torchrun(spec, devices), check=True, capture_output=True, timeout=300, env=driver_env()
        )

    assert result(two_a)["world_size"] == 2 and result(one)["world_size"] == 1
    assert result(two_a)["metrics"]["test_auc"] == pytest.approx(result(one)["metrics"]["test_auc"], abs=0.02)
    assert result(two_a)["metrics"] == {
        **result(two_b)["metrics"],
        "samples_per_s": result(two_a)["samples_per_s"],
    }


def test_a_killed_training_resumes_from_its_checkpoint(tmp_path: Path, training_set: str) -> None:
    import time

    spec = make_spec(tmp_path / "killed", training_set, devices=2, epochs=20)
    checkpoint = spec.parent / "ckpt" / "last.ckpt"
    process = subprocess.Popen(
        torchrun(spec, 2),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=driver_env(),
    )
    deadline = time.monotonic() + 240
    while not checkpoint.exists():  # the first epoch's checkpoint, then kill every process
        assert process.poll() is None and time.monotonic() < deadline, (
            "training ended before its first checkpoint"
        )
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert checkpoint.exists() and not (spec.parent / "out" / "result.json").exists()

    subprocess.run(torchrun(spec, 2), check=True, capture_output=True, timeout=300, env=driver_env())
    outcome = result(spec)
    assert outcome["resumed_from"] == str(checkpoint) and outcome["epochs"] == 20


def test_a_retry_after_the_last_epochs_checkpoint_validates_and_gives_the_same_model(
    tmp_path: Path, training_set: str
) -> None:
    """The attempt before died after its last checkpoint (in the test evaluation, say): the retry
    has no epoch left to fit; its result is the finished model's, with a finite val_loss (a NaN
    would not go through XCom's JSON)."""
    spec = make_spec(tmp_path / "done", training_set, epochs=2)
    subprocess.run(torchrun(spec, 1), check=True, capture_output=True, timeout=300, env=driver_env())
    first = result(spec)
    (spec.parent / "out" / "result.json").unlink()
    subprocess.run(torchrun(spec, 1), check=True, capture_output=True, timeout=300, env=driver_env())
    retried = result(spec)
    assert retried["resumed_from"] == str(spec.parent / "ckpt" / "last.ckpt") and retried["epochs"] == 2
    json.dumps(retried, allow_nan=False)
    for key in ("test_auc", "test_log_loss", "validation_auc"):
        assert retried["metrics"][key] == pytest.approx(first["metrics"][key], abs=1e-9), key
    assert retried["metrics"]["val_loss"] == pytest.approx(first["metrics"]["val_loss"], abs=1e-6)


def context(dag_id: str = "dag", run_id: str = "run") -> dict:
    return {"dag": SimpleNamespace(dag_id=dag_id), "run_id": run_id}


def test_a_worker_that_raises_fails_the_task_with_its_traceback_and_leaves_no_process(
    tmp_path: Path, training_set: str, caplog
) -> None:
    from airflow_mlops.exceptions import TrainingError
    from airflow_mlops.operators.train import LightningTrainOperator

    operator = LightningTrainOperator(
        task_id="train",
        training_set=training_set,
        output_dir=str(tmp_path / "out"),
        checkpoint_root=str(tmp_path / "ckpt"),
        mlflow_conn_id=None,
        model=MODEL,
        data="tests.failing_training:DataThatFailsOnRankOne",
        devices=2,
        max_epochs=1,
        master_port=free_port(),
    )
    with pytest.raises(TrainingError, match="exited with code") as failure:
        operator.execute(context())  # type: ignore[arg-type]
    assert "RuntimeError: rank 1 cannot read its shard" in str(failure.value)
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "ckpt")], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"hyperparameters": {"width": 3}},
            r"hyperparameters \['width'\] are not arguments",
        ),  # found by the driver
        ({"hyperparameters": {"hidden": -4}}, r"hidden"),
        ({"model": "flights.model:NoSuchModel"}, r"has no 'NoSuchModel'"),
        (
            {"model": "no_such_package.models:Net"},
            r"module cannot be found \(No module named 'no_such_package'\)",
        ),  # found in the task
        ({"training_set": "/nowhere/manifest.json"}, r"training_set '/nowhere/manifest.json' does not exist"),
    ],
)
def test_bad_specs_fail_the_task_without_retry_and_launch_nothing(
    tmp_path: Path, training_set: str, change: dict, message: str
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.operators.train import LightningTrainOperator

    arguments = {
        "training_set": training_set,
        "hyperparameters": {"hidden": 8},
        "model": MODEL,
        "data": DATA,
        **change,
    }
    operator = LightningTrainOperator(
        task_id="train",
        output_dir=str(tmp_path / "out"),
        devices=2,
        checkpoint_root=str(tmp_path / "ckpt"),
        mlflow_conn_id=None,
        **arguments,
    )
    with pytest.raises(AirflowFailException, match=message):
        operator.execute(context())  # type: ignore[arg-type]
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "out").exists()


def test_two_nodes_rendezvous_through_torchrun(tmp_path: Path, training_set: str) -> None:
    """Two tasks, node ranks 0 and 1, one process each, meet at the c10d rendezvous of node 0's address."""
    from concurrent.futures import ThreadPoolExecutor

    from airflow_mlops.operators.train import LightningTrainOperator

    port = free_port()
    nodes = [
        LightningTrainOperator(
            task_id="train",
            training_set=training_set,
            output_dir=str(tmp_path / "out"),
            checkpoint_root=str(tmp_path / "ckpt"),
            hyperparameters={"hidden": 16},
            model=MODEL,
            data=DATA,
            mlflow_conn_id=None,
            num_nodes=2,
            node_rank=rank,
            master_port=port,
            max_epochs=1,
        )
        for rank in (0, 1)
    ]
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda node: node.execute(context()), nodes)
    assert first["world_size"] == 2 and (tmp_path / "out" / "model.pt").is_file()
    assert second == {"node_rank": 1}


def test_the_task_process_never_imports_torch(tmp_path: Path, training_set: str) -> None:
    """The driver checks the classes; the task process only launches it (no torch import, no fork)."""
    dags = str(Path(__file__).resolve().parents[2] / "dags")
    probe = f"""
import sys
sys.path.append({dags!r})  # as Airflow's task runner puts the DAG bundle on the path
from types import SimpleNamespace
from airflow.sdk.exceptions import AirflowFailException
from airflow_mlops.operators.train import LightningTrainOperator
operator = LightningTrainOperator(task_id="train", training_set={training_set!r}, output_dir={str(tmp_path / "out")!r},
                                  checkpoint_root={str(tmp_path / "ckpt")!r}, hyperparameters={{"hidden": 0}},
                                  model={MODEL!r}, data={DATA!r})
try:
    operator.execute({{"dag": SimpleNamespace(dag_id="d"), "run_id": "r"}})
except AirflowFailException as err:
    print("REFUSED", err)
print("HEAVY", sorted(m for m in ("torch", "pytorch_lightning", "mlflow") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    ).stdout
    assert "REFUSED training spec: hyperparameter hidden=0 is out of range" in out
    assert "HEAVY []" in out


def test_training_and_evaluation_on_object_storage_and_a_retry_resumes_from_the_checkpoint_there(
    tmp_path: Path, training_set: str, aws_conn: str, moto_server: str
) -> None:
    """The training set, the checkpoints and the model in S3 (moto's server), reached through the
    task's ``aws`` connection alone: the first attempt trains one epoch; the retry (two DDP
    processes, nothing of the first attempt on their disk) resumes from ``last.ckpt`` in the bucket;
    the evaluation and the gate then read the model and write the report in the bucket."""
    import boto3
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.operators.train import LightningTrainOperator

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    local = json.loads(Path(training_set.removeprefix("file://")).read_text())
    manifest = {"splits": {}}
    for name, split in local["splits"].items():
        key = f"training_sets/flights/{name}.parquet"
        s3.upload_file(split["uri"].removeprefix("file://"), "lake", key)
        manifest["splits"][name] = {**split, "uri": f"s3://lake/{key}"}
    s3.put_object(Bucket="lake", Key="training_sets/flights/manifest.json", Body=json.dumps(manifest))
    arguments = {
        "task_id": "train",
        "training_set": "s3://lake/training_sets/flights/manifest.json",
        "output_dir": "s3://lake/models/flights",
        "checkpoint_root": "s3://lake/checkpoints",
        "hyperparameters": {"hidden": 16},
        "model": MODEL,
        "data": DATA,
        "batch_size": 512,
        "mlflow_conn_id": None,
        "storage_conn_id": aws_conn,
    }
    first = LightningTrainOperator(max_epochs=1, **arguments).execute(context())  # type: ignore[arg-type]
    assert first["model_uri"] == "s3://lake/models/flights" and first["epochs"] == 1
    assert first["resumed_from"] is None
    last = "checkpoints/dag/run/train/last.ckpt"
    assert s3.head_object(Bucket="lake", Key=last)["ContentLength"] > 0

    retry = LightningTrainOperator(
        max_epochs=2, devices=2, master_port=free_port(), **{**arguments, "mlflow_conn_id": "mlflow_default"}
    )
    second = retry.execute(context())  # type: ignore[arg-type]
    assert second["resumed_from"] == f"s3://lake/{last}" and second["world_size"] == 2
    assert second["epochs"] == 2 and second["metrics"]["test_auc"] > 0.55
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="models/flights/")["Contents"]}
    assert {"models/flights/model.pt", "models/flights/config.json", "models/flights/result.json"} <= keys
    config = json.loads(s3.get_object(Bucket="lake", Key="models/flights/config.json")["Body"].read())
    assert config["training_set"] == arguments["training_set"]
    assert "testing" not in json.dumps(config)  # the connection's secret never lands in the package

    # Evaluation and the gate read the model, the training set and the report in the bucket too.
    from airflow_mlops.operators.evaluate import EvaluateModelOperator, EvaluationGateOperator

    evaluated = EvaluateModelOperator(
        task_id="evaluate",
        model_uri=second["model_uri"],
        training_set=arguments["training_set"],
        report_dir="s3://lake/reports/flights",
        importance_rows=0,
        mlflow_conn_id=None,
        storage_conn_id=aws_conn,
    ).execute(context())  # type: ignore[arg-type]
    assert evaluated["report_uri"] == "s3://lake/reports/flights/evaluation.json"
    assert evaluated["overall"]["auc"] == pytest.approx(second["metrics"]["test_auc"], abs=1e-4)
    EvaluationGateOperator(
        task_id="gate",
        report_uri=evaluated["report_uri"],
        gate={"rules": [{"metric": "auc", "min": 0.55}], "no_champion": "absolute_only"},
        mlflow_conn_id=None,
        storage_conn_id=aws_conn,
    ).execute(context())  # type: ignore[arg-type]
    report = json.loads(s3.get_object(Bucket="lake", Key="reports/flights/evaluation.json")["Body"].read())
    assert report["gate"]["passed"] and report["overall"]["rows"] == second["metrics"]["test_rows"]
    assert s3.head_object(Bucket="lake", Key="reports/flights/evaluation.html")["ContentLength"] > 0

    # Registration logs the package from the bucket and writes the model card there.
    from airflow_mlops.operators.registry import RegisterModelOperator

    registered = RegisterModelOperator(
        task_id="register",
        name="flights_on_s3",
        training_result=second,
        report_uri=evaluated["report_uri"],
        card_dir="s3://lake/cards/flights_on_s3",
        storage_conn_id=aws_conn,
    ).execute(context())  # type: ignore[arg-type]
    assert registered["model_card"] == "s3://lake/cards/flights_on_s3/model_card.md"
    assert registered["package_sha256"] and registered["tags"]["training_set"] == arguments["training_set"]
    card = s3.get_object(Bucket="lake", Key="cards/flights_on_s3/model_card.md")["Body"].read().decode()
    assert card.startswith(f"# Model card: flights_on_s3 version {registered['version']}")

    # An object store the connection cannot reach is refused before anything starts, naming it.
    with pytest.raises(
        AirflowFailException, match=r"output_dir 'gs://lake/models/flights': .* must be s3://"
    ):
        LightningTrainOperator(
            max_epochs=1, **{**arguments, "output_dir": "gs://lake/models/flights"}
        ).execute(context())  # type: ignore[arg-type]
