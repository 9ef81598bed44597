"""The training driver: check the spec, then train here (one process) or start DDP workers with torchrun.

``python -m airflow_mlops.training spec.json [--nproc-per-node N] [--nnodes M --node-rank R
--rdzv-endpoint HOST:PORT --rdzv-id ID]`` is what ``LightningTrainOperator`` starts. The driver
imports the model and data classes once, checks the hyperparameters against them (a bad spec exits
with :data:`SPEC_ERROR_EXIT` and one ``SpecError:`` line before any worker starts or any file is
written), copies the spec next to the checkpoints, then either trains in its own process (one
process on one node: no launcher to pay for) or hands the workers to torchrun's elastic agent
(``torch.distributed.run``, c10d rendezvous), in this process. A process started by torchrun
(``LOCAL_RANK`` set) is a worker and trains. With ``--sagemaker`` the paths and hosts come from
the SageMaker container's layout (:func:`sagemaker_layout`). No Airflow import here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from ..artifacts import write_atomically  # noqa: TID252 (no "airflow" import line in the runtime)
from .spec import SpecError, TrainingSpec, is_local, storage_path

log = logging.getLogger(__name__)
#: Exit status of a driver that refused its spec (nothing was started or written).
SPEC_ERROR_EXIT = 3
SPEC_ERROR_PREFIX = "SpecError: "
#: Where a SageMaker container mounts its folders (``/opt/ml``); tests point it elsewhere.
SAGEMAKER_ROOT_ENV = "MLOPS_SAGEMAKER_ROOT"
SAGEMAKER_RDZV_PORT = 29400


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_mlops.training",
        description="Run a training spec (DDP through torchrun when N x M > 1).",
    )
    parser.add_argument("spec", help="the spec JSON file")
    parser.add_argument("--nproc-per-node", type=int, default=1, help="processes (CPU) or GPUs on this node")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument(
        "--rdzv-endpoint", default="", help="HOST:PORT of the c10d rendezvous (several nodes)"
    )
    parser.add_argument("--rdzv-id", default="", help="the same id on every node of one job")
    parser.add_argument(
        "--sagemaker",
        action="store_true",
        help="inside a SageMaker training container: its channels, folders and hosts",
    )
    args = parser.parse_args(argv)
    for name in ("nproc_per_node", "nnodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.nnodes > 1 and not (args.rdzv_endpoint and args.rdzv_id):
        parser.error(f"--nnodes {args.nnodes} needs --rdzv-endpoint and --rdzv-id")
    return args


def torchrun_arguments(args: argparse.Namespace, spec_path: Path) -> list[str]:
    """torchrun's command line for the workers (``-m airflow_mlops.training <spec>``)."""
    launcher = ["--nproc_per_node", str(args.nproc_per_node)]
    if args.nnodes > 1:
        launcher += [
            "--nnodes",
            str(args.nnodes),
            "--node_rank",
            str(args.node_rank),
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            args.rdzv_endpoint,
            "--rdzv_id",
            args.rdzv_id,
        ]
    else:
        launcher += ["--standalone"]
    return [*launcher, "-m", "airflow_mlops.training", str(spec_path)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    from .runtime import run

    if "LOCAL_RANK" in os.environ:  # a worker started by torchrun: the driver checked the spec
        (spec_file,) = argv
        spec = TrainingSpec.from_json(Path(spec_file).read_text())
        result = run(spec)
        _log_result(result)
        return 0
    args = parse(argv)
    try:
        spec = TrainingSpec.from_json(Path(args.spec).read_text())
        if args.sagemaker:
            spec = sagemaker_layout(spec, args, Path(os.environ.get(SAGEMAKER_ROOT_ENV, "/opt/ml")))
        spec.validate()
    except SpecError as err:
        print(f"{SPEC_ERROR_PREFIX}{err}", file=sys.stderr, flush=True)
        return SPEC_ERROR_EXIT
    world = args.nproc_per_node * args.nnodes
    options = spec.trainer_options()
    if (options["devices"], options["num_nodes"]) != (args.nproc_per_node, args.nnodes):
        print(
            f"{SPEC_ERROR_PREFIX}the spec's trainer asks for devices={options['devices']} x "
            f"num_nodes={options['num_nodes']}, the launch for {args.nproc_per_node} x {args.nnodes}",
            file=sys.stderr,
            flush=True,
        )
        return SPEC_ERROR_EXIT
    checkpoints = storage_path(spec.checkpoint_dir)
    with tempfile.TemporaryDirectory(prefix="airflow-mlops-spec-") as scratch:
        # The spec as trained, a local file the workers read: beside the checkpoints (every node
        # writes the same) or, when they are in an object store, in this node's scratch folder.
        spec_path = checkpoints / "spec.json" if is_local(checkpoints) else Path(scratch) / "spec.json"
        write_atomically(spec_path, spec.to_json())
        if world == 1:
            _log_result(run(spec))
            return 0
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.run import parse_args
        from torch.distributed.run import run as torchrun

        try:
            torchrun(parse_args(torchrun_arguments(args, spec_path)))
        except ChildFailedError as err:
            print(err.format_msg(), file=sys.stderr, flush=True)
            return 1
    return 0


def sagemaker_layout(spec: TrainingSpec, args: argparse.Namespace, root: Path) -> TrainingSpec:
    """The spec and launch arguments inside a SageMaker training container.

    SageMaker downloads the ``training`` channel (the manifest and its split files) to
    ``<root>/input/data/training``, uploads ``<root>/model`` as ``model.tar.gz`` when the job ends,
    syncs ``<root>/checkpoints`` with the job's ``CheckpointConfig`` S3 URI (so a new job resumes),
    and names the hosts in ``<root>/input/config/resourceconfig.json``: the first (sorted) host is
    the rendezvous, each host's index is its node rank.
    """
    import dataclasses

    config_file = root / "input" / "config" / "resourceconfig.json"
    try:
        config = json.loads(config_file.read_text())
        hosts, current = sorted(config["hosts"]), config["current_host"]
        node_rank = hosts.index(current)
    except (OSError, ValueError, KeyError) as err:
        raise SpecError(
            f"--sagemaker: {config_file} does not name this host among the job's hosts ({err})"
        ) from None
    args.nnodes, args.node_rank = len(hosts), node_rank
    args.nproc_per_node = int(spec.trainer_options()["devices"])
    args.rdzv_endpoint = f"{hosts[0]}:{SAGEMAKER_RDZV_PORT}"
    args.rdzv_id = os.environ.get("TRAINING_JOB_NAME", "sagemaker")
    return dataclasses.replace(
        spec,
        training_set=str(root / "input" / "data" / "training" / "manifest.json"),
        output_dir=str(root / "model"),
        checkpoint_dir=str(root / "checkpoints"),
    )


def _log_result(result: dict | None) -> None:
    if result is not None:
        log.info(
            "Result: %s", json.dumps({k: result[k] for k in ("mlflow_run_id", "model_uri", "samples_per_s")})
        )
