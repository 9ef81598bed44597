"""Train a Lightning model from a spec, in DDP processes launched by torchrun outside the task process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from airflow.sdk import BaseOperator

from airflow_mlops.hooks.mlflow import MlflowHook, MlflowOperatorMixin
from airflow_mlops.lineage import LineageMixin, storage_name
from airflow_mlops.links import MLflowRunLink, mlflow_run_url
from airflow_mlops.xcom import TrainingResult

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.training.spec import TrainingSpec


class TrainingArgumentsMixin(MlflowOperatorMixin):
    """What every training operator takes the same way (the model, the data, the trainer options,
    MLflow) and the one place that turns them into a ``TrainingSpec``."""

    model: str
    data: str
    hyperparameters: Mapping[str, Any] | None
    features: Mapping[str, Any] | None = None
    batch_size: int
    accelerator: str
    precision: str
    max_epochs: int
    seed: int
    mlflow_experiment: str | None
    task_id: str

    def training_spec(
        self,
        context: Context,
        *,
        training_set: str,
        output_dir: str,
        checkpoint_dir: str,
        devices: int,
        num_nodes: int,
        tags: Mapping[str, str] | None = None,
    ) -> TrainingSpec:
        """The spec of this task's training run; MLflow's part names the connection's tracking URI
        and artifact location (its credentials travel in the environment, never in the spec)."""
        from airflow_mlops.templating import require_rendered
        from airflow_mlops.training.spec import TrainingSpec

        require_rendered(self, mappings=("hyperparameters", "features"))
        mlflow: dict[str, str] = {}
        if self.mlflow_conn_id:
            hook = self.mlflow_hook
            experiment = self.mlflow_experiment or context["dag"].dag_id
            mlflow = {"tracking_uri": hook.tracking_uri, "experiment": experiment}
            if hook.artifact_location:
                mlflow["artifact_location"] = hook.artifact_location
        return TrainingSpec(
            model=self.model,
            data=self.data,
            training_set=training_set,
            output_dir=output_dir,
            checkpoint_dir=checkpoint_dir,
            hyperparameters=dict(self.hyperparameters or {}),
            features=dict(self.features or {}),
            batch_size=self.batch_size,
            trainer={
                "accelerator": self.accelerator,
                "devices": devices,
                "num_nodes": num_nodes,
                "strategy": "ddp" if devices * num_nodes > 1 else "auto",
                "precision": self.precision,
                "max_epochs": self.max_epochs,
                "seed": self.seed,
            },
            mlflow=mlflow,
            tags={
                "dag_id": context["dag"].dag_id,
                "run_id": context["run_id"],
                "task_id": self.task_id,
                **(tags or {}),
            },
        )


class LightningTrainOperator(TrainingArgumentsMixin, LineageMixin, BaseOperator):
    """Check a training spec, then run it with ``python -m airflow_mlops.training`` (DDP through torchrun).

    The task checks what needs no import (trainer options, class paths, the training set) and starts
    the driver (``airflow_mlops.training.launch``), which imports the model and data classes, checks
    the hyperparameters against them, and only then writes the spec beside the checkpoints and
    trains: in its own process for one device on one node, else through torchrun's elastic agent.
    A bad spec fails the task without retries (``AirflowFailException`` naming the field), with
    nothing written and no worker started; the task process never imports torch.
    The workers are separate processes (never ``ddp_spawn`` or a fork of the task process: under a
    real executor ``sys.argv`` is Airflow's and the task process may not reach the metadata DB).
    ``devices`` processes per node communicate over gloo on CPU and nccl on GPUs; with
    ``num_nodes > 1`` every node runs this task with its ``node_rank`` and the same
    ``master_addr``/``master_port`` (torchrun's c10d rendezvous). The workers' output streams into
    the task log; a failed worker fails the task with its traceback there. ``on_kill`` ends the
    whole process group. Checkpoints go to ``<checkpoint_root>/<dag_id>/<run_id>/<task_id>``, so a
    retry resumes from the last completed epoch.

    :param training_set: URI of the training set manifest (templated).
    :param output_dir: where the model, its config and ``result.json`` go (templated).
    :param checkpoint_root: root of the checkpoint folders (templated).
    :param model: ``module:Class`` of the LightningModule (required: e.g. your own network, or
        ``airflow_mlops.training.tabular:TabularMLP``).
    :param data: ``module:Class`` of the LightningDataModule (the contract:
        :mod:`airflow_mlops.models.contract`); ``airflow_mlops.training.tabular:TabularDataModule``
        reads any tabular training set through ``features``.
    :param features: the feature spec (templated): ``{"label", "task": "binary" | "multiclass" |
        "regression", "numeric": [...], "categorical": [...], "weight"}``; None: the data module's own.
    :param hyperparameters: the model's keyword arguments (templated), checked before launch.
    :param batch_size: rows per batch per process.
    :param devices: processes (CPU) or GPUs per node.
    :param num_nodes, node_rank, master_addr, master_port: multi-node rendezvous.
    :param accelerator: ``cpu`` or ``gpu``; ``precision``, ``max_epochs``, ``seed``: trainer options.
    :param mlflow_conn_id: the ``mlflow`` connection the run is logged to (None: no MLflow).
    :param mlflow_experiment: MLflow experiment name (None: the DAG's id).
    :param storage_conn_id: the ``aws`` connection of an object store (``s3://``) holding the
        training set, the checkpoints or the output; its credentials reach the training processes
        through their environment (:mod:`airflow_mlops.storage`), never the spec. With checkpoints
        in the object store, a retry on another worker resumes from the ``last.ckpt`` there.
        None: local paths (or the default AWS credentials of each machine).

    XCom: the result JSON (``mlflow_run_id``, ``model_uri``, ``metrics``, ``samples_per_s``, ...).
    OpenLineage: the training set manifest as input, the model folder as output.
    """

    required_extra: ClassVar[str | None] = "training"

    template_fields: Sequence[str] = (
        "training_set",
        "output_dir",
        "checkpoint_root",
        "hyperparameters",
        "features",
    )
    template_fields_renderers = {"hyperparameters": "json", "features": "json"}
    ui_color = "#fde8e8"
    operator_extra_links = (MLflowRunLink(),)

    def __init__(
        self,
        *,
        training_set: str,
        output_dir: str,
        checkpoint_root: str,
        model: str,
        data: str = "airflow_mlops.training.tabular:TabularDataModule",
        hyperparameters: Mapping[str, Any] | None = None,
        features: Mapping[str, Any] | None = None,
        batch_size: int = 1024,
        devices: int = 1,
        num_nodes: int = 1,
        node_rank: int = 0,
        master_addr: str = "127.0.0.1",
        master_port: int = 29500,
        accelerator: str = "cpu",
        precision: str = "32-true",
        max_epochs: int = 3,
        seed: int = 42,
        mlflow_conn_id: str | None = MlflowHook.default_conn_name,
        mlflow_experiment: str | None = None,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.storage_conn_id = storage_conn_id
        self.training_set = training_set
        self.output_dir = output_dir
        self.checkpoint_root = checkpoint_root
        self.model = model
        self.data = data
        self.hyperparameters = hyperparameters
        self.features = features
        self.batch_size = batch_size
        self.devices = devices
        self.num_nodes = num_nodes
        self.node_rank = node_rank
        self.master_addr = master_addr
        self.master_port = master_port
        self.accelerator = accelerator
        self.precision = precision
        self.max_epochs = max_epochs
        self.seed = seed
        self.mlflow_conn_id = mlflow_conn_id
        self.mlflow_experiment = mlflow_experiment
        self._process: subprocess.Popen[str] | None = None

    def build_spec(self, context: Context) -> TrainingSpec:
        where = f"{context['dag'].dag_id}/{context['run_id']}/{self.task_id}"
        map_index = getattr(context.get("ti"), "map_index", -1)
        if isinstance(map_index, int) and map_index >= 0:  # mapped tasks (tuning trials) share the task id
            where += f"/{map_index}"
        where = where.replace(":", "_").replace("+", "_")
        return self.training_spec(
            context,
            training_set=self.training_set,
            output_dir=self.output_dir,
            checkpoint_dir=f"{self.checkpoint_root.rstrip('/')}/{where}",
            devices=self.devices,
            num_nodes=self.num_nodes,
        )

    def command(self, spec_path: Path, rdzv_id: str) -> list[str]:
        """The driver's command line (``airflow_mlops.training.launch``): it checks, then trains or starts torchrun."""
        command = [
            sys.executable,
            "-m",
            "airflow_mlops.training",
            str(spec_path),
            "--nproc-per-node",
            str(self.devices),
        ]
        if self.num_nodes > 1:
            command += [
                "--nnodes",
                str(self.num_nodes),
                "--node-rank",
                str(self.node_rank),
                "--rdzv-endpoint",
                f"{self.master_addr}:{self.master_port}",
                "--rdzv-id",
                rdzv_id,
            ]
        return command

    def execute(self, context: Context) -> TrainingResult:
        result = self.train(self.build_spec(context))
        if isinstance(result, dict) and result.get("mlflow_run_id"):
            MLflowRunLink.persist(context, mlflow_run_url(result["mlflow_run_id"]))
        if isinstance(result, dict) and result.get("model_uri"):
            self.record_lineage(
                lambda: ([storage_name(self.training_set)], [storage_name(result["model_uri"])])
            )
        return cast(TrainingResult, result)

    def train(self, spec: TrainingSpec, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Check ``spec``, run the driver (with ``env`` added to its environment), return ``result.json``."""
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.exceptions import MLOpsConfigError
        from airflow_mlops.models.tasks import headline
        from airflow_mlops.storage import environment, fsspec_environment
        from airflow_mlops.training.spec import SpecError, storage_path

        try:
            # Object storage: the connection's credentials for the driver (and the checks here).
            storage = fsspec_environment(
                self.storage_conn_id,
                {
                    "training_set": spec.training_set,
                    "output_dir": spec.output_dir,
                    "checkpoint_root": spec.checkpoint_dir,
                },
            )
            with environment(storage):
                spec.check()  # options, class paths and data, without importing torch into the task process
            with tempfile.TemporaryDirectory(prefix="airflow-mlops-spec-") as folder:
                # The driver checks classes and hyperparameters before it writes or starts anything.
                spec_path = Path(folder) / Path(spec.checkpoint_dir).name / "spec.json"
                spec_path.parent.mkdir()
                spec_path.write_text(spec.to_json())
                rdzv_id = "-".join(Path(spec.checkpoint_dir).parts[-4:])
                self._run(self.command(spec_path, rdzv_id=rdzv_id), {**storage, **(env or {})})
        except (SpecError, MLOpsConfigError) as err:
            raise AirflowFailException(str(err)) from err  # a retry cannot fix the spec
        if self.node_rank != 0:
            return {"node_rank": self.node_rank}
        with environment(storage):
            text = (storage_path(spec.output_dir) / "result.json").read_text()
        result: dict[str, Any] = json.loads(text)
        self.log.info(
            "Trained: %s at %.0f samples/s; MLflow run %s",
            headline(result["metrics"], result.get("task", "binary")),
            result["samples_per_s"],
            result["mlflow_run_id"],
        )
        return result

    def python_path(self) -> str:
        """The driver's ``PYTHONPATH``: the folder of this task's DAG file, ``[mlops] code_path`` and the
        DAG folder (``settings.code_paths``), so the network and data module import there as here."""
        from airflow_mlops import settings

        dag = self.dag if self.has_dag() else None
        folder = [str(Path(dag.fileloc).resolve().parent)] if dag is not None and dag.fileloc else []
        return settings.python_path(folder)

    def _run(self, command: list[str], extra_env: Mapping[str, str]) -> None:
        from airflow_mlops.exceptions import TrainingError
        from airflow_mlops.training.launch import SPEC_ERROR_EXIT, SPEC_ERROR_PREFIX
        from airflow_mlops.training.spec import SpecError

        if self.mlflow_conn_id:  # the store's folder, and its credentials for the workers
            self.mlflow_hook.prepare_store()
            extra_env = {**self.mlflow_hook.credentials_env(), **extra_env}
        self.log.info(
            "Launching %d x %d training processes: %s", self.num_nodes, self.devices, " ".join(command)
        )
        # torchrun's variables would make the driver act as a worker: the driver sets them for its workers.
        ranks = {
            "LOCAL_RANK",
            "RANK",
            "WORLD_SIZE",
            "LOCAL_WORLD_SIZE",
            "GROUP_RANK",
            "MASTER_ADDR",
            "MASTER_PORT",
        }
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ranks and not k.startswith(("AIRFLOW_CTX_", "_AIRFLOW", "TORCHELASTIC_"))
        }
        env.update(extra_env, PYTHONUNBUFFERED="1", PYTHONPATH=self.python_path())
        tail: deque[str] = deque(maxlen=20)
        traceback = _FirstTraceback()
        refused = ""
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.rstrip()
            tail.append(line)
            traceback.feed(line)
            refused = line.removeprefix(SPEC_ERROR_PREFIX) if line.startswith(SPEC_ERROR_PREFIX) else refused
            self.log.info("%s", line)
        code = self._process.wait()
        if code == SPEC_ERROR_EXIT and refused:
            raise SpecError(refused)
        if code != 0:
            raise TrainingError(
                f"training processes exited with code {code}; the first worker traceback:\n"
                f"{traceback.text or '(none printed)'}\nthe last lines:\n" + "\n".join(tail)
            )

    def on_kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)


class _FirstTraceback:
    """Keeps the first Python traceback seen in the workers' output (torchrun's own summary comes later)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.done = False

    def feed(self, line: str) -> None:
        if self.done:
            return
        if not self.lines:
            if line.endswith("Traceback (most recent call last):"):
                self.lines.append(line)
            return
        self.lines.append(line)
        text = line.split("] ", 1)[-1] if line.startswith("[rank") else line
        if (
            text
            and not text[0].isspace()
            and not text.startswith(("Traceback", "The above", "During handling"))
        ):
            self.done = True  # the exception line ends the traceback

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
