"""``airflow-mlops``: set up a project's Airflow home, serve models, decide on versions, walk lineage."""

from __future__ import annotations

import argparse
import configparser
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_airflow_cfg(
    home: Path,
    data_dir: Path,
    dags_folder: Path,
    *,
    feature_repo: Path | None = None,
    auto_approve: bool = False,
    mlops: dict[str, str] | None = None,
) -> Path:
    """Write (or update) the settings this project owns in ``$AIRFLOW_HOME/airflow.cfg``.

    Airflow reads every option missing from the file from its own defaults, so only ours are set:
    the data folder's lake, landing, Feast and serving folders, the connection ids, the feature
    repository (``<dags_folder>/../feature_repo`` unless given), ``auto_approve`` and any further
    ``[mlops]`` options in ``mlops``.
    """
    home.mkdir(parents=True, exist_ok=True)
    cfg_path = home / "airflow.cfg"
    config = configparser.ConfigParser(interpolation=None)
    if cfg_path.exists():
        config.read(cfg_path)
    ours = {
        "core": {
            "dags_folder": str(dags_folder),
            "load_examples": "False",
            "executor": "LocalExecutor",
            "parallelism": "4",
        },
        "database": {"sql_alchemy_conn": f"sqlite:///{home / 'airflow.db'}"},
        "dag_processor": {"refresh_interval": "30"},
        "mlops": {
            "lake_uri": (data_dir / "lake").as_uri(),
            "landing_dir": str(data_dir / "landing"),
            "feature_repo": str(feature_repo or dags_folder.parent / "feature_repo"),
            "feast_dir": str(data_dir / "feast"),
            "mlflow_conn_id": "mlflow_default",
            "optuna_conn_id": "optuna_default",
            "auto_approve": str(auto_approve),
            "serving_dir": str(data_dir / "serving"),
            **(mlops or {}),
        },
        # Airflow's OpenLineage provider: every task's inputs and outputs, one JSON event per line
        # (`airflow-mlops lineage` walks them). Emitted from a thread, not a fork of the task.
        "openlineage": {
            "transport": json.dumps(
                {"type": "file", "log_file_path": str(data_dir / "lineage" / "events.jsonl"), "append": True}
            ),
            "namespace": "airflow-mlops",
            "execute_in_thread": "True",
        },
    }
    for section, options in ours.items():
        if not config.has_section(section):
            config.add_section(section)
        for key, value in options.items():
            config.set(section, key, value)
    temp = cfg_path.with_suffix(".cfg.tmp")
    with temp.open("w") as stream:
        config.write(stream)
    temp.replace(cfg_path)
    return cfg_path


def _airflow(
    home: Path, *args: str, log: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRFLOW_HOME": str(home)}
    airflow = str(Path(sys.executable).with_name("airflow"))
    if log is None:
        return subprocess.run([airflow, *args], env=env, check=check, capture_output=True, text=True)
    with log.open("w") as out:
        result = subprocess.run([airflow, *args], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"`airflow {' '.join(args)}` failed (exit {result.returncode}); its log: {log}")
    return result


def import_connections(home: Path, connections: dict[str, dict[str, Any]]) -> None:
    """Add or replace ``connections`` (conn id -> fields) in the home's metadata DB, in one call."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="connections-") as stream:
        json.dump(connections, stream)
        stream.flush()
        _airflow(home, "connections", "import", "--overwrite", stream.name)


def init_home(
    home: Path,
    data_dir: Path,
    dags_folder: Path,
    *,
    feature_repo: Path | None = None,
    auto_approve: bool = False,
    mlops: dict[str, str] | None = None,
) -> None:
    """A project's Airflow home on the embedded default: ``airflow.cfg`` (see ``write_airflow_cfg``),
    the migrated metadata DB, and the connections ``mlflow_default`` (a SQLite MLflow store under
    ``data_dir``, its tables created here when MLflow is installed), ``optuna_default`` and
    ``mlops_model_server`` (its admin token made once). No source connection: a project adds its
    own. Safe to run again."""
    write_airflow_cfg(
        home, data_dir, dags_folder, feature_repo=feature_repo, auto_approve=auto_approve, mlops=mlops
    )
    (data_dir / "landing").mkdir(parents=True, exist_ok=True)
    (data_dir / "lineage").mkdir(parents=True, exist_ok=True)  # OpenLineage's file transport makes no folders
    _airflow(home, "db", "migrate")
    # The MLflow store and the Optuna storage of the embedded default.
    mlflow_db = data_dir / "mlflow" / "mlflow.db"
    import_connections(
        home,
        {
            "mlflow_default": {
                "conn_type": "mlflow",
                "extra": {
                    "tracking_uri": f"sqlite:///{mlflow_db}",
                    "artifact_location": str(mlflow_db.parent / "artifacts"),
                },
            },
            "optuna_default": {"conn_type": "sqlite", "host": str(data_dir / "optuna" / "optuna.db")},
        },
    )
    migrated = create_mlflow_store(f"sqlite:///{mlflow_db}")
    # The model server's admin token is made once and kept on later runs; a home made before the
    # connection type became a valid URI scheme (mlops_model_server) gets the new type, same token.
    existing = _airflow(home, "connections", "get", "mlops_model_server", "-o", "json", check=False)
    current = json.loads(existing.stdout)[0] if existing.returncode == 0 else None
    if current is None or current.get("conn_type") != "mlopsmodelserver":
        import secrets

        server = {"conn_type": "mlopsmodelserver", "host": "127.0.0.1", "port": 8765}
        if current is not None:
            server.update(host=current.get("host") or "127.0.0.1", port=current.get("port") or 8765)
        token = (current or {}).get("password") or secrets.token_urlsafe(24)
        import_connections(home, {"mlops_model_server": {**server, "password": token}})
    print(
        f"AIRFLOW_HOME={home} ready: metadata DB migrated; connections mlflow_default -> {mlflow_db}"
        f"{'' if migrated else ' (created by the first task: MLflow is not installed here)'}, "
        f"optuna_default, mlops_model_server -> 127.0.0.1:8765; auto_approve {auto_approve}"
    )


def create_mlflow_store(tracking_uri: str) -> bool:
    """Create an MLflow SQLite store's tables now, as ``airflow db migrate`` does Airflow's: on a
    fresh store that takes seconds (about 5 to 10 on two cores), which the first training task
    would otherwise spend, and parallel first tasks would race on. False when MLflow (the
    ``registry`` extra) is not installed; an existing store is only opened."""
    from airflow_mlops.extras import missing

    if missing("registry"):
        return False
    from airflow_mlops.registry.versions import registry_client

    Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    registry_client(tracking_uri).search_experiments(max_results=1)
    return True


def infer_suite(
    partition: Path, name: str, out: Path, keys: list[str] | None, profile_out: Path | None
) -> None:
    """Profile a partition into a starting suite (and a reference profile) for a person to edit."""
    import pandas as pd

    from airflow_mlops.data.suites import infer_suite as infer
    from airflow_mlops.data.suites import save_suite
    from airflow_mlops.monitoring.statistics import profile_frame

    frame = pd.read_parquet(partition)
    suite = infer(frame, name, key_columns=keys, source_uri=partition.resolve().as_uri())
    print(f"{save_suite(suite, out)}: {len(suite.expectations)} expectations from {len(frame)} rows")
    if profile_out:
        profile_out.write_text(json.dumps(profile_frame(frame), indent=1) + "\n")
        print(f"{profile_out}: reference profile")


def governance(args: argparse.Namespace) -> None:
    """approve / reject / rollback from the command line; a refused transition exits 1 with the reason."""
    from mlflow.exceptions import MlflowException

    from airflow_mlops import settings
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.registry.governance import GovernanceError, decide, rollback

    client = MlflowHook(args.mlflow_conn_id or settings.mlflow_conn_id()).get_conn()
    try:
        if args.command == "rollback":
            outcome = rollback(client, args.model, args.by, args.why)
            print(
                f"{args.model}: champion is v{outcome['champion']} again (v{outcome['rolled_back']} archived)"
            )
        else:
            decide(client, args.model, args.version, args.command == "approve", args.by, args.why)
            print(f"{args.model} v{args.version} {args.command}d by {args.by}: {args.why}")
    except GovernanceError as err:
        raise SystemExit(f"airflow-mlops {args.command}: {err}") from None
    except MlflowException as err:  # an unknown model or version: the registry's own words
        raise SystemExit(f"airflow-mlops {args.command}: the registry refused: {err.message}") from None


def digest(args: argparse.Namespace) -> None:
    """``airflow-mlops record-digest``: the version's package SHA-256 recorded in the registry."""
    from mlflow.exceptions import MlflowException

    from airflow_mlops import settings
    from airflow_mlops.exceptions import MLOpsError
    from airflow_mlops.hooks.mlflow import MlflowHook
    from airflow_mlops.registry.versions import record_digest
    from airflow_mlops.serving.models import check_reference

    hook = MlflowHook(args.mlflow_conn_id or settings.mlflow_conn_id())
    try:
        check_reference("airflow-mlops record-digest", args.model, args.version)
        with hook.activated():
            recorded = record_digest(hook.get_conn(), hook.tracking_uri, args.model, args.version)
    except (MlflowException, MLOpsError, FileNotFoundError) as err:
        raise SystemExit(f"airflow-mlops record-digest: {getattr(err, 'message', err)}") from None
    print(f"{args.model} v{args.version}: package_sha256 {recorded}")


def lineage(args: argparse.Namespace) -> None:
    from airflow_mlops import settings
    from airflow_mlops.lineage import print_walk, read_events, server_namespace, walk_back
    from airflow_mlops.storage import object_path, uri_of

    if args.endpoint:
        host, _, port = args.server.rpartition(":")
        dataset = (server_namespace(host, port), args.endpoint)
    elif args.namespace and args.name:
        dataset = (args.namespace, args.name)
    else:
        raise SystemExit("airflow-mlops lineage: give --endpoint (and --server), or --namespace and --name")
    events = object_path(args.events or default_events(settings.lake_uri()), settings.lake_conn_id())
    if not events.exists():
        where = events if isinstance(events, Path) else uri_of(events)
        raise SystemExit(f"airflow-mlops lineage: no events at {where} (is [openlineage] transport set?)")
    print_walk(walk_back(read_events(events), *dataset))


def default_events(lake_uri: str) -> str:
    """The file transport's events beside the lake: ``<lake>/../lineage/events.jsonl`` for a local
    lake, the folder ``<lake>/../lineage/events`` (one object per event) for an object store."""
    import posixpath

    from airflow_mlops.storage import is_remote, local_path

    if not is_remote(lake_uri):
        return str(local_path(lake_uri, "[mlops] lake_uri").parent / "lineage" / "events.jsonl")
    scheme, _, rest = lake_uri.rstrip("/").partition("://")
    return f"{scheme}://{posixpath.join(posixpath.dirname(rest) or rest, 'lineage', 'events')}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-mlops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "init-home",
        help="an Airflow home for your project on the embedded default: airflow.cfg, the migrated "
        "metadata DB, the MLflow, Optuna and model-server connections (safe to run again)",
    )
    p.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser(),
        help="the AIRFLOW_HOME to set up (default: $AIRFLOW_HOME, else ~/airflow)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="where the lake, landing folder, MLflow store, Feast registry and model server keep their data",
    )
    p.add_argument("--dags-folder", type=Path, required=True, help="your DAG folder ([core] dags_folder)")
    p.add_argument(
        "--feature-repo",
        type=Path,
        help="your Feast repository ([mlops] feature_repo; default: feature_repo/ beside the DAG folder)",
    )
    p.add_argument(
        "--auto-approve",
        action="store_true",
        help="approve registered models without a person ([mlops] auto_approve; off unless given: "
        "for a development home only)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other [mlops] option, e.g. source_conn_id=my_source (repeatable)",
    )
    p = commands.add_parser(
        "infer-suite", help="profile a Parquet partition into a starting expectation suite"
    )
    p.add_argument("--partition", type=Path, required=True)
    p.add_argument("--name", required=True, help="the suite's name")
    p.add_argument("--out", type=Path, required=True, help="suite file to write (.yaml, .yml or .json)")
    p.add_argument("--key", action="append", help="key column(s), checked for uniqueness (repeatable)")
    p.add_argument("--profile-out", type=Path, help="also write the partition's profile (a drift reference)")
    for verb in ("approve", "reject"):
        p = commands.add_parser(verb, help=f"{verb} a candidate model version (recorded with who and why)")
        p.add_argument("--model", required=True, help="registered model name, e.g. flight_delay")
        p.add_argument("--version", required=True)
        p.add_argument("--by", default=os.environ.get("USER", ""), help="who decides (default: $USER)")
        p.add_argument("--why", required=True, help="the reason, kept in the version's history")
        p.add_argument("--mlflow-conn-id", help="the MLflow connection (default: [mlops] mlflow_conn_id)")
    p = commands.add_parser(
        "record-digest",
        help="record the SHA-256 of a version registered outside RegisterModelOperator, so model "
        "servers load it (you vouch for its files as they are now)",
    )
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--version", required=True)
    p.add_argument("--mlflow-conn-id", help="the MLflow connection (default: [mlops] mlflow_conn_id)")
    p = commands.add_parser("serve", help="run the model server (deployments survive restarts)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--state-dir",
        type=Path,
        help="deployments, model cache and request log (default: [mlops] serving_dir)",
    )
    registry = p.add_mutually_exclusive_group()
    registry.add_argument(
        "--mlflow-conn-id", help="the registry's MLflow connection (default: [mlops] mlflow_conn_id)"
    )
    registry.add_argument(
        "--tracking-uri",
        help="the registry's URI instead, resolved by whoever starts the server (the stack, the "
        "demo): the server then starts without importing Airflow; a tracking server's credentials "
        "come from MLflow's own MLFLOW_TRACKING_TOKEN or _USERNAME/_PASSWORD variables",
    )
    p.add_argument(
        "--token-env",
        default="MLOPS_SERVER_TOKEN",
        help="environment variable holding the admin token (never a flag: it would show in ps)",
    )
    p.add_argument("--no-request-log", action="store_true", help="do not log requests (benchmarks only)")
    p.add_argument(
        "--request-log-dir",
        help="the request log's folder or object store URI, e.g. s3://bucket/requests (default: "
        "<state-dir>/requests); replicas of one server share it, so monitoring reads every replica's "
        "requests. S3 credentials come from the environment (AWS_* variables) or the instance's role",
    )
    p.add_argument("--torch-threads", type=int, default=1, help="intra-op threads per request (default 1)")
    p.add_argument(
        "--keep-alive-s",
        type=int,
        default=75,
        help="how long an idle client connection stays open (default 75 s: longer than a load "
        "balancer's idle timeout, 60 s on AWS's, so the balancer closes first and never sends a "
        "request on a connection the server is closing; and a busy client's connections are not "
        "dropped and reopened)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 * 1024 * 1024,
        help="larger request bodies get 413 before they are read (default 16 MiB)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("MLOPS_SERVER_REDIS_URL"),
        help="share prediction ids and bandit posteriors with every replica started with the same "
        "Redis (host:port or redis://host:port/db; default: $MLOPS_SERVER_REDIS_URL, which is where a "
        "URL with a password goes: never on the command line)",
    )
    p.add_argument(
        "--batch-max-rows",
        type=int,
        default=256,
        help="dynamic batching: requests waiting for the same variant are scored together, up to this "
        "many rows per model call (default 256; 0: off, each request scored alone in its thread); a "
        "deployment's batching overrides it per endpoint",
    )
    p.add_argument(
        "--batch-max-wait-ms",
        type=float,
        default=0.0,
        help="how long a batch waits for more requests after its first (default 0: only the requests "
        "already waiting join, so a lone request is never delayed)",
    )
    p.add_argument(
        "--follow-aliases-every",
        type=float,
        default=30,
        metavar="SECONDS",
        help="how often variants deployed by alias (a release's rollout: champion) look up their alias, "
        "so a promotion or rollback made in the UI, the CLI or MLflow moves the traffic (default 30; 0: never)",
    )
    p.add_argument(
        "--trusted-model-modules",
        help="modules besides airflow_mlops the server may import to load a model, comma-separated "
        "(e.g. mlflow.sklearn; default: [mlops] trusted_model_modules, or none with --tracking-uri)",
    )
    p.add_argument(
        "--feature-repo",
        help="a Feast repository: endpoints deployed with a feature service then "
        "take entity keys and get their features from its online store",
    )
    p.add_argument(
        "--feature-config", default="feature_store.yaml", help="the repository's configuration file"
    )
    p.add_argument(
        "--code-path",
        action="append",
        default=None,
        metavar="FOLDER",
        help="a folder of your project's own modules that the models import, put on the server's "
        "path (repeatable; default: [mlops] code_path and the DAG folder, or none with --tracking-uri). "
        "A model package carries its network's module itself; this is for what that module imports",
    )
    p = commands.add_parser(
        "serve-sagemaker", help="inference in a SageMaker endpoint container (/ping, /invocations)"
    )
    p.add_argument("--model-dir", default="/opt/ml/model")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("ignored", nargs="*", help="SageMaker passes 'serve'")
    p = commands.add_parser("lineage", help="walk a dataset back to its sources through OpenLineage events")
    p.add_argument(
        "--events",
        help="the file transport's events, a file or a folder, local or s3:// (default: beside the "
        "lake, <data>/lineage/events.jsonl; for an s3:// lake the folder <lake>/../lineage/events)",
    )
    p.add_argument("--endpoint", help="a served endpoint, e.g. flight_delay (with --server)")
    p.add_argument(
        "--server", default="127.0.0.1:8765", help="the model server's host:port (default 127.0.0.1:8765)"
    )
    p.add_argument("--namespace", help="or any dataset: its OpenLineage namespace (e.g. file) ...")
    p.add_argument(
        "--name", help="... and name (e.g. /abs/path/lake/datasets/flights_delay/<version>/manifest.json)"
    )
    p = commands.add_parser("rollback", help="restore the champion's predecessor")
    p.add_argument("--model", required=True)
    p.add_argument("--by", default=os.environ.get("USER", ""))
    p.add_argument("--why", required=True)
    p.add_argument("--mlflow-conn-id", help="the MLflow connection (default: [mlops] mlflow_conn_id)")
    return parser


def serve_models(args: argparse.Namespace) -> None:
    """``airflow-mlops serve``: the registry from ``--tracking-uri``, else from the MLflow connection
    (its credentials, if any, stay in this process's environment); the rest from ``[mlops]``."""
    from airflow_mlops import settings
    from airflow_mlops.exceptions import PolicyError
    from airflow_mlops.serving.app import serve
    from airflow_mlops.serving.batching import BatchingConfig

    if args.tracking_uri:
        tracking_uri = args.tracking_uri
    else:  # resolving a connection imports Airflow: seconds of start-up the flag avoids
        from airflow_mlops.hooks.mlflow import MlflowHook

        tracking_uri = MlflowHook(args.mlflow_conn_id or settings.mlflow_conn_id()).tracking_uri
    code_paths = (
        args.code_path if args.code_path is not None else [] if args.tracking_uri else settings.code_paths()
    )
    for folder in reversed(code_paths):
        if not Path(folder).is_dir():
            raise SystemExit(f"airflow-mlops serve: --code-path {folder!r} is not a folder")
        if str(Path(folder).resolve()) not in sys.path:
            sys.path.insert(0, str(Path(folder).resolve()))
    if args.keep_alive_s < 1:
        raise SystemExit(
            f"airflow-mlops serve: --keep-alive-s must be 1 or more seconds, got {args.keep_alive_s}"
        )
    if args.follow_aliases_every < 0:
        raise SystemExit(
            f"airflow-mlops serve: --follow-aliases-every must be 0 (never) or more seconds, got {args.follow_aliases_every}"
        )
    if (
        args.redis_url
        and args.redis_url != os.environ.get("MLOPS_SERVER_REDIS_URL")
        and "@" in args.redis_url
    ):
        raise SystemExit(
            "airflow-mlops serve: --redis-url holds credentials; put the URL in MLOPS_SERVER_REDIS_URL "
            "instead (a command line shows in ps)"
        )
    batching = {"max_rows": args.batch_max_rows, "max_wait_ms": args.batch_max_wait_ms}
    try:
        BatchingConfig.from_dict(batching, BatchingConfig())
    except PolicyError as err:  # refused before the server starts, naming the option's field
        raise SystemExit(f"airflow-mlops serve: --batch-*: {err}") from None
    if args.trusted_model_modules is not None:
        trusted = [m.strip() for m in args.trusted_model_modules.split(",") if m.strip()]
    else:
        trusted = [] if args.tracking_uri else settings.trusted_model_modules()
    if args.feature_repo:  # what the repository's feature_store.yaml and definitions read
        os.environ.setdefault("MLOPS_FEAST_DIR", settings.feast_dir())
        os.environ.setdefault("MLOPS_FEATURES_URI", settings.features_uri())
        os.environ.setdefault("MLOPS_LAKE_URI", settings.lake_uri())
    serve(
        str(args.state_dir or settings.serving_dir()),
        tracking_uri,
        args.host,
        args.port,
        os.environ.get(args.token_env) or None,
        request_log=not args.no_request_log,
        torch_threads=args.torch_threads,
        feature_repo=args.feature_repo,
        feature_config=args.feature_config,
        request_log_dir=str(args.request_log_dir) if args.request_log_dir else None,
        max_body_bytes=args.max_body_bytes,
        keep_alive_s=args.keep_alive_s,
        trusted_modules=trusted,
        follow_every=args.follow_aliases_every,
        redis_url=args.redis_url,
        batching=batching,
    )


def _options(pairs: list[str]) -> dict[str, str]:
    """``["source_conn_id=x"]`` -> ``{"source_conn_id": "x"}``; a pair without ``=`` exits naming it."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"airflow-mlops init-home: --option must be KEY=VALUE, got {pair!r}")
        options[key.strip()] = value
    return options


def _serve_sagemaker(args: argparse.Namespace) -> None:
    from airflow_mlops.serving.sagemaker import serve as serve_sagemaker

    serve_sagemaker(args.model_dir, args.host, args.port)


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "approve": governance,
    "reject": governance,
    "rollback": governance,
    "init-home": lambda a: init_home(
        a.home.resolve(),
        a.data_dir.resolve(),
        a.dags_folder.resolve(),
        feature_repo=a.feature_repo.resolve() if a.feature_repo else None,
        auto_approve=a.auto_approve,
        mlops=_options(a.option),
    ),
    "lineage": lineage,
    "infer-suite": lambda a: infer_suite(a.partition, a.name, a.out, a.key, a.profile_out),
    "serve-sagemaker": _serve_sagemaker,
    "serve": serve_models,
    "record-digest": digest,
}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    COMMANDS[args.command](args)
    if argv is None:  # the program, about to exit (not a call from Python code that goes on)
        # Freeze the heap: the interpreter's teardown collections walk every object, and with
        # MLflow's SQL store loaded they took 4 to 9 s per process on two cores (the operating
        # system frees the memory; atexit handlers still run). As the training driver does.
        import gc

        gc.freeze()


if __name__ == "__main__":
    main()
