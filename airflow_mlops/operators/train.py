"""Train a Lightning model from a spec, in DDP processes launched by torchrun outside the task process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class LightningTrainOperator(BaseOperator):
    """Validate a training spec, then run ``python -m airflow_mlops.training`` under ``torchrun``.

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
    :param model: ``module:Class`` of the LightningModule.
    :param data: ``module:Class`` of the LightningDataModule.
    :param hyperparameters: the model's keyword arguments (templated), checked before launch.
    :param batch_size: rows per batch per process.
    :param devices: processes (CPU) or GPUs per node.
    :param num_nodes, node_rank, master_addr, master_port: multi-node rendezvous.
    :param accelerator: ``cpu`` or ``gpu``; ``precision``, ``max_epochs``, ``seed``: trainer options.
    :param mlflow_tracking_uri: MLflow tracking URI (templated; empty disables MLflow).
    :param mlflow_experiment: MLflow experiment name.

    XCom: the result JSON (``mlflow_run_id``, ``model_uri``, ``metrics``, ``samples_per_s``, ...).
    """

    template_fields: Sequence[str] = ("training_set", "output_dir", "checkpoint_root", "hyperparameters",
                                      "mlflow_tracking_uri")
    template_fields_renderers = {"hyperparameters": "json"}
    ui_color = "#fde8e8"

    def __init__(
        self,
        *,
        training_set: str,
        output_dir: str,
        checkpoint_root: str,
        model: str = "airflow_mlops.training.flights:FlightDelayModel",
        data: str = "airflow_mlops.training.flights:FlightDataModule",
        hyperparameters: Mapping[str, Any] | None = None,
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
        mlflow_tracking_uri: str = "",
        mlflow_experiment: str = "flights",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.training_set = training_set
        self.output_dir = output_dir
        self.checkpoint_root = checkpoint_root
        self.model = model
        self.data = data
        self.hyperparameters = hyperparameters
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
        self.mlflow_tracking_uri = mlflow_tracking_uri
        self.mlflow_experiment = mlflow_experiment
        self._process: subprocess.Popen[str] | None = None

    def build_spec(self, context: Context) -> Any:
        from airflow_mlops.training.spec import TrainingSpec

        where = f"{context['dag'].dag_id}/{context['run_id']}/{self.task_id}".replace(":", "_").replace("+", "_")
        strategy = "ddp" if self.devices * self.num_nodes > 1 else "auto"
        mlflow = {}
        if self.mlflow_tracking_uri:
            mlflow = {"tracking_uri": self.mlflow_tracking_uri, "experiment": self.mlflow_experiment}
            if self.mlflow_tracking_uri.startswith("sqlite:///"):
                folder = Path(self.mlflow_tracking_uri.removeprefix("sqlite:///")).parent
                mlflow["artifact_location"] = str(folder / "artifacts")
        return TrainingSpec(
            model=self.model, data=self.data, training_set=self.training_set,
            output_dir=self.output_dir, checkpoint_dir=f"{self.checkpoint_root.rstrip('/')}/{where}",
            hyperparameters=dict(self.hyperparameters or {}), batch_size=self.batch_size,
            trainer={"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
                     "strategy": strategy, "precision": self.precision, "max_epochs": self.max_epochs,
                     "seed": self.seed},
            mlflow=mlflow,
            tags={"dag_id": context["dag"].dag_id, "run_id": context["run_id"], "task_id": self.task_id},
        )

    def command(self, spec_path: Path) -> list[str]:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(self.devices)]
        if self.num_nodes > 1:
            torchrun += ["--nnodes", str(self.num_nodes), "--node_rank", str(self.node_rank), "--rdzv_backend", "c10d",
                         "--rdzv_endpoint", f"{self.master_addr}:{self.master_port}", "--rdzv_id", spec_path.parent.name]
        else:
            torchrun += ["--standalone"]
        return [*torchrun, "-m", "airflow_mlops.training", str(spec_path)]

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.exceptions import TrainingError

        spec = self.build_spec(context)
        spec.validate()  # unknown class, bad hyperparameter, missing data: fails here, nothing launched
        if self.mlflow_tracking_uri.startswith("sqlite:///"):
            Path(self.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        checkpoint_dir = Path(spec.checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        spec_path = checkpoint_dir / "spec.json"
        spec_path.write_text(spec.to_json())
        command = self.command(spec_path)
        self.log.info("Launching %d x %d training processes: %s", self.num_nodes, self.devices, " ".join(command))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CTX_", "_AIRFLOW"))}
        env["PYTHONUNBUFFERED"] = "1"
        tail: deque[str] = deque(maxlen=20)
        traceback = _FirstTraceback()
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         env=env, start_new_session=True)
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.rstrip()
            tail.append(line)
            traceback.feed(line)
            self.log.info("%s", line)
        code = self._process.wait()
        if code != 0:
            raise TrainingError(f"training processes exited with code {code}; the first worker traceback:\n"
                                f"{traceback.text or '(none printed)'}\nthe last lines:\n" + "\n".join(tail))
        result_path = Path(spec.output_dir) / "result.json"
        if self.node_rank != 0:
            return {"node_rank": self.node_rank}
        result: dict[str, Any] = json.loads(result_path.read_text())
        self.log.info("Trained: AUC %.4f (baseline %.2f) at %.0f samples/s; MLflow run %s",
                      result["metrics"]["test_auc"], result["metrics"]["test_baseline_auc"],
                      result["samples_per_s"], result["mlflow_run_id"])
        return result

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
        if text and not text[0].isspace() and not text.startswith(("Traceback", "The above", "During handling")):
            self.done = True  # the exception line ends the traceback

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
