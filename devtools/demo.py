"""``python -m devtools demo`` (``make demo``): the reference pipeline end to end, then the continuous-training loop.

The first part seeds the source database, extracts and lands two months of 2013, validates them
(a deliberately corrupted third month is quarantined), builds the dataset and its features, and
trains, gates, registers and deploys the first model to a model server on loopback. The second
part walks months of 2013 one at a time, as production would see them: the month lands, is
ingested, validated and featurized; the current champion serves the month's flights through the
model server; ``flights_monitoring`` measures drift and, once the labels are in, performance
(and raises ``model_drift`` on a breach); ``flights_training`` retrains, the gate decides, and a
canary on the server precedes promotion. It ends with one row per month.

Each DAG runs with ``dag.test()`` in this process (Airflow is imported and the DAGs parsed once);
each run's output goes to ``<home>/demo-logs/<dag>-<date>.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

from airflow_mlops.cli import _airflow
from airflow_mlops.hooks.mlflow import MlflowHook
from devtools.processes import stop_group

MODEL = "flight_delay"
#: The demo's own outputs under the data folder, removed when it starts so every run tells the same story.
DEMO_OUTPUTS = ("lake", "landing", "mlflow", "serving", "feast", "optuna", "lineage")
REPLAY_ROWS = 3000
CANARY_TIMEOUT_S = 300


class Steps:
    """Runs reference DAGs in this process with ``dag.test()``, each run's output in its own log file."""

    def __init__(self, logs: Path) -> None:
        from airflow.dag_processing.dagbag import DagBag

        from airflow_mlops import settings

        self.logs = logs
        self.lake = settings.lake_uri()
        folder = Path(_airflow_option("core", "dags_folder"))
        with _redirected(logs / "dag-parse.log"):
            self.bag = DagBag(dag_folder=str(folder))
        if self.bag.import_errors:
            raise SystemExit(f"the reference DAGs do not parse: {self.bag.import_errors}")

    def run(
        self, title: str, dag_id: str, date: str, conf: dict | None = None, *, expect_failure: bool = False
    ) -> Any:
        from datetime import datetime

        print(f"==> {title}", flush=True)
        log = self.logs / f"{dag_id}-{date}.log"
        dag = self.bag.get_dag(dag_id)
        with _redirected(log):
            dag_run = dag.test(logical_date=datetime.fromisoformat(date).replace(tzinfo=UTC), run_conf=conf)
        state = str(dag_run.state)
        if expect_failure and state != "failed":
            raise SystemExit(
                f"{dag_id} was expected to fail (a quarantined partition) but ended {state}; log: {log}"
            )
        if not expect_failure and state != "success":
            raise SystemExit(f"{dag_id} ended {state}; its log: {log}")
        return dag_run

    def raw(self, table: str, month: int) -> str:
        return f"{self.lake}/raw/{table}/2013-{month:02d}.parquet"


def _airflow_option(section: str, key: str) -> str:
    from airflow.configuration import conf

    return conf.get(section, key)


@contextlib.contextmanager
def _redirected(log: Path) -> Iterator[None]:
    """Everything this process and its children write to stdout and stderr goes to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("a") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run(home: Path, months: Sequence[int] = (3, 4, 5, 6, 7)) -> None:
    """The whole demo: the pipeline once, then the continuous-training loop over ``months``."""
    os.environ["AIRFLOW_HOME"] = str(home)
    from airflow_mlops import settings
    from flights.source import write_landing_file

    months = sorted(set(months))
    if not months or months[0] < 3 or months[-1] > 12:
        raise SystemExit(
            f"demo: --months must lie within 3..12 (1 and 2 train the first model), got {months}"
        )
    started = time.monotonic()
    lake = Path(settings.lake_uri().removeprefix("file://"))
    data = lake.parent
    removed = [name for name in DEMO_OUTPUTS if (data / name).exists()]
    for name in removed:
        shutil.rmtree(data / name)
    (data / "lineage").mkdir(parents=True, exist_ok=True)  # OpenLineage's file transport makes no folders
    if removed:
        print(f"demo: removed the previous demo's outputs under {data}: {', '.join(removed)}")
    logs = home / "demo-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    steps = Steps(logs)
    landing = Path(settings.landing_dir())

    steps.run("seed the source database (flights_seed)", "flights_seed", "2013-01-01")
    steps.run("extract 2013-01 (flights_monthly)", "flights_monthly", "2013-01-01")
    print("==> land 2013-02 as a file and ingest it (flights_ingest)", flush=True)
    landed = write_landing_file(2, landing)
    steps.run("    ingest", "flights_ingest", "2013-02-01", {"uri": landed.as_uri()})
    steps.run(
        "validate 2013-01 and 2013-02 (flights_validate)",
        "flights_validate",
        "2013-02-01",
        {
            "flights": [steps.raw("flights", 1), steps.raw("flights", 2)],
            "weather": [steps.raw("weather", 1), steps.raw("weather", 2)],
        },
    )
    print(f"==> land a deliberately corrupted 2013-{months[0]:02d} and ingest it", flush=True)
    landed = write_landing_file(months[0], landing, corrupt=True)
    steps.run("    ingest", "flights_ingest", f"2013-{months[0]:02d}-01", {"uri": landed.as_uri()})
    steps.run(
        f"validate 2013-{months[0]:02d} (flights_validate: expected to quarantine flights)",
        "flights_validate",
        f"2013-{months[0]:02d}-01",
        {"flights": [steps.raw("flights", months[0])], "weather": [steps.raw("weather", months[0])]},
        expect_failure=True,
    )
    dataset = materialize(steps, "2013-02-01", [1, 2])
    training_set = featurize(steps, "2013-02-01", dataset)
    with model_server(home, logs / "model-server.log") as server:
        steps.run(
            "train with 2 DDP processes, evaluate, gate, register, approve, deploy to the model server "
            "(flights_training)",
            "flights_training",
            "2013-02-01",
            {"manifest_uri": training_set.as_uri()},
        )
        print("==> send held-out flights through the model server", flush=True)
        replay = replay_flights(server, training_set)
        first = time.monotonic() - started
        print_lake(lake)
        print_models(lake, MlflowHook(settings.mlflow_conn_id()))
        print_serving(replay)
        print(
            f"\n==> the continuous-training loop: months {', '.join(f'2013-{m:02d}' for m in months)}",
            flush=True,
        )
        table = [walk_month(steps, server, month, landing) for month in months]
    print_release(lake, MlflowHook(settings.mlflow_conn_id()), brief=True)
    print_walk(table)
    print_lineage(data / "lineage" / "events.jsonl", server["url"])
    print(
        f"\nDone in {time.monotonic() - started:.0f}s (first model {first:.0f}s, "
        f"{len(months)} months {time.monotonic() - started - first:.0f}s)."
    )
    venv_bin = Path(sys.executable).parent
    print(f"Task logs: {logs}")
    print(f"Open the UI with: PATH={venv_bin}:$PATH AIRFLOW_HOME={home} airflow standalone")


def print_lineage(events: Path, server_url: str) -> None:
    """The served model's lineage from the OpenLineage events alone, in brief."""
    from urllib.parse import urlsplit

    from airflow_mlops.lineage import read_events, server_namespace, walk_back

    if not events.is_file():
        print(
            f"\nNo OpenLineage events at {events} ([openlineage] transport is not the demo's file transport)."
        )
        return
    address = urlsplit(server_url)
    steps = walk_back(
        read_events(events), server_namespace(address.hostname or "127.0.0.1", address.port), "flight_delay"
    )
    chain = [s for s in steps if s["depth"] <= 3 and s["job"]]
    print(f"\nLineage of the served model, from the OpenLineage events in {events}:")
    for step in chain:
        print(f"  {'  ' * step['depth']}{step['dataset'][1]}  <- {step['job']}")
    validated: dict[str, list[str]] = {}
    for step in steps:
        table, _, partition = step["dataset"][1].partition("/validated/")[2].partition("/")
        if step["job"] and partition.endswith(".parquet"):
            validated.setdefault(table, []).append(partition.removesuffix(".parquet"))
    months = "; ".join(
        f"{table} {min(p)} to {max(p)} ({len(p)} partitions)" for table, p in sorted(validated.items())
    )
    sources = sorted({s["dataset"][1] for s in steps if s["job"] is None})
    print(
        f"  ... built from the validated partitions {months}, extracted from the source tables {', '.join(sources)}"
    )
    print(
        f"  The whole walk: .venv/bin/airflow-mlops lineage --endpoint flight_delay --server {address.netloc}"
    )


def materialize(steps: Steps, date: str, months: Sequence[int]) -> Path:
    """``flights_dataset`` over every validated month; the manifest of the version covering ``months``."""
    steps.run(
        "materialize the flights_delay dataset from the validated months (flights_dataset)",
        "flights_dataset",
        date,
    )
    wanted = {f"2013-{m:02d}" for m in months}
    for manifest in Path(steps.lake.removeprefix("file://"), "datasets", "flights_delay").glob(
        "*/manifest.json"
    ):
        if {s["period"] for s in json.loads(manifest.read_text())["sources"]} == wanted:
            return manifest
    raise SystemExit(f"flights_dataset wrote no version of exactly {sorted(wanted)}; see {steps.logs}")


def featurize(steps: Steps, date: str, dataset: Path) -> Path:
    """``flights_features`` for a dataset version; the training set's manifest."""
    steps.run(
        "build features, apply the Feast repository, materialize, build the training set (flights_features)",
        "flights_features",
        date,
        {"manifest_uri": dataset.as_uri()},
    )
    version = json.loads(dataset.read_text())["version"]
    manifest = Path(
        steps.lake.removeprefix("file://"), "training_sets", "flight_delay_v1", version, "manifest.json"
    )
    if not manifest.is_file():
        raise SystemExit(f"flights_features wrote no training set {manifest}; see {steps.logs}")
    return manifest


def walk_month(steps: Steps, server: dict[str, Any], month: int, landing: Path) -> dict[str, Any]:
    """One month of the continuous-training loop; returns its row of the final table."""
    import pandas as pd

    from airflow_mlops import settings
    from airflow_mlops.data.validation import ValidationReport
    from flights.source import write_landing_file

    period, date = f"2013-{month:02d}", f"2013-{month:02d}-15"
    lake = Path(steps.lake.removeprefix("file://"))
    tracking = MlflowHook(settings.mlflow_conn_id())
    print(f"\n==> {period}: the month's flights land", flush=True)
    landed = write_landing_file(month, landing)
    steps.run(f"    ingest {period} (flights_ingest)", "flights_ingest", date, {"uri": landed.as_uri()})
    steps.run(
        f"    validate {period} (flights_validate)",
        "flights_validate",
        date,
        {"flights": [steps.raw("flights", month)], "weather": [steps.raw("weather", month)]},
    )
    report = ValidationReport.from_json(
        (lake / "validated" / "flights" / f"{period}.report.json").read_text()
    )
    split = report.row_split or {}
    validation = "passed" + (
        f", {split['invalid_rows']} rows quarantined" if split.get("invalid_rows") else ""
    )
    validated = json.loads((lake / "raw" / "flights" / f"{period}.parquet.manifest.json").read_text())
    months_so_far = sorted(
        {int(p.stem[-2:]) for p in (lake / "validated" / "flights").glob("2013-*.parquet")}
    )
    dataset = materialize(steps, date, months_so_far)
    training_set = featurize(steps, date, dataset)
    champion = champion_version(tracking)

    manifest = json.loads(training_set.read_text())
    from airflow_mlops.training.spec import manifest_path

    flights = pd.concat(
        [pd.read_parquet(manifest_path(s["uri"], str(training_set))) for s in manifest["splits"].values()]
    )
    flights = flights[flights["month"] == month]
    sample = flights.sample(min(REPLAY_ROWS, len(flights)), random_state=month)
    print(f"    the champion (v{champion}) serves {len(sample)} of the month's flights", flush=True)
    window = serve_rows(server, sample.drop(columns=["is_delayed"]))
    steps.run(
        f"    monitor drift and performance (flights_monitoring, window {window['start']} .. {window['end']})",
        "flights_monitoring",
        date,
        {"start": window["start"], "end": window["end"]},
    )
    drift, performance = monitoring_reports(lake)
    alarm = drift.get("breached") or performance.get("breached")
    if alarm:
        print(
            "    model_drift raised: " + "; ".join(drift.get("reasons", []) + performance.get("reasons", []))
        )
    with canary_traffic(server, sample.drop(columns=["is_delayed"])) as traffic:
        steps.run(
            "    retrain: train, evaluate, gate, register, infra validation, approve, stepwise rollout, promote"
            " (flights_training)",
            "flights_training",
            date,
            {"manifest_uri": training_set.as_uri()},
        )
    after = champion_version(tracking)
    if after != champion:
        outcome = f"yes: v{after}, {release_steps(tracking, after)}"
    else:
        outcome = f"no: {release_outcome(lake, tracking)}"
    return {
        "month": period,
        "rows": int(validated["metadata"]["rows"]),
        "validation": validation,
        "drift": drift.get("score"),
        "drifted": len(drift.get("drifted", [])),
        "alarm": bool(alarm),
        "champion": champion,
        "auc": (performance.get("overall") or {}).get("auc"),
        "labelled": performance.get("labelled", 0),
        "promoted": outcome,
        "canary_requests": traffic["sent"],
    }


@contextlib.contextmanager
def model_server(home: Path, log: Path) -> Iterator[dict[str, Any]]:
    """``airflow-mlops serve`` in the background, at the address and with the token of this home's
    ``mlops_model_server`` connection; stopped on exit."""
    import httpx

    from airflow_mlops import settings

    conn = json.loads(_airflow(home, "connections", "get", "mlops_model_server", "-o", "json").stdout)[0]
    url = f"http://{conn['host']}:{conn['port']}"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "MLOPS_SERVER_TOKEN": conn["password"]}
    # dag.test() runs triggers in this process, where only environment connections resolve (the
    # triggerer of a deployment reads the metadata DB): the canary trigger needs this one.
    os.environ["AIRFLOW_CONN_MLOPS_MODEL_SERVER"] = json.dumps(
        {
            "conn_type": "mlopsmodelserver",
            "host": conn["host"],
            "port": conn["port"],
            "password": conn["password"],
        }
    )
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("airflow-mlops")),
                "serve",
                "--host",
                conn["host"],
                "--port",
                str(conn["port"]),
                "--tracking-uri",  # resolved here: the server starts without importing Airflow
                MlflowHook(settings.mlflow_conn_id()).tracking_uri,
                "--trusted-model-modules",  # [mlops] trusted_model_modules, read here for the same reason
                ",".join(settings.trusted_model_modules()),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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
        stop_group(process)


def replay_flights(
    server: dict[str, Any],
    training_set: Path,
    endpoint: str = "flight_delay",
    singles: int = 500,
    batch: int = 1000,
) -> dict[str, Any]:
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
        deployments = client.get(
            "/v1/admin/deployments", headers={"Authorization": f"Bearer {server['token']}"}
        ).json()
    logged = read_log(server["state_dir"] / "requests")
    deadline = time.monotonic() + 15  # the request log flushes every 2 s, off the request path
    while not set(ids) <= set(logged["prediction_id"]) and time.monotonic() < deadline:
        time.sleep(0.5)
        logged = read_log(server["state_dir"] / "requests")
    return {
        "url": server["url"],
        "endpoint": endpoint,
        "deployment": deployments.get(endpoint),
        "singles": singles,
        "p50": float(np.percentile(latencies, 50)),
        "p90": float(np.percentile(latencies, 90)),
        "p99": float(np.percentile(latencies, 99)),
        "batch_rows": len(rows) - singles,
        "batch_ms": batch_ms,
        "version": served["version"],
        "logged": int(logged["prediction_id"].isin(ids).sum()),
        "request_log": server["state_dir"] / "requests" / "predictions",
        "server_log": server["log"],
    }


def print_serving(replay: dict[str, Any]) -> None:
    deployment = replay["deployment"] or {}
    variants = ", ".join(
        f"{v}={s['name']} v{s['version']}" for v, s in deployment.get("variants", {}).items()
    )
    print(
        f"\nModel server {replay['url']}: endpoint {replay['endpoint']} serves {variants} "
        f"({deployment.get('policy', {}).get('kind')}, deployed by {deployment.get('deployed_by')})"
    )
    print(
        f"  {replay['singles']} held-out flights one request each: latency p50 {replay['p50']:.1f} ms, "
        f"p90 {replay['p90']:.1f} ms, p99 {replay['p99']:.1f} ms"
    )
    print(f"  one batch of {replay['batch_rows']} flights: {replay['batch_ms']:.0f} ms")
    print(
        f"  request log: {replay['request_log']} ({replay['logged']} of the {replay['singles']} single "
        f"predictions written so far, each with its prediction_id)"
    )
    print(f"  server log: {replay['server_log']}")


def print_models(lake: Path, registry: MlflowHook) -> None:
    """The trained models: their MLflow run and metrics against the trivial baseline."""
    for result_path in sorted((lake / "models").glob("*/*/result.json")):
        result = json.loads(result_path.read_text())
        metrics = result["metrics"]
        print(
            f"\nModel trained by {result['world_size']} DDP processes in {result['seconds']:.1f}s "
            f"({result['samples_per_s']:.0f} samples/s), {result['epochs']} epochs"
        )
        print(f"  MLflow run {result['mlflow_run_id']} at {registry.tracking_uri}")
        print(
            f"  test AUC {metrics['test_auc']:.4f} (trivial baseline 0.5), log loss {metrics['test_log_loss']:.4f} "
            f"(baseline {metrics['test_baseline_log_loss']:.4f}) on {metrics['test_rows']} flights"
        )
        print(f"  model: {result['model_uri']} (model.pt state dict + config.json)")
    print_release(lake, registry)


def print_release(lake: Path, registry: MlflowHook, name: str = MODEL, *, brief: bool = False) -> None:
    """Each evaluation's gate decision with its rules and numbers (not when ``brief``), the
    registered versions and their states, the champion."""
    from mlflow.exceptions import MlflowException

    from airflow_mlops.evaluation.report import loads

    for report_path in [] if brief else sorted((lake / "evaluations" / name).glob("*/evaluation.json")):
        report = loads(report_path.read_text())
        champion = (report.get("champion") or {}).get("overall")
        print(
            f"\nEvaluation on {int(report['overall']['rows'])} held-out flights: AUC {report['overall']['auc']:.4f}, "
            f"calibration error {report['overall']['calibration_error']:.4f}; champion: "
            + (f"AUC {champion['auc']:.4f}" if champion else "none yet")
        )
        gate = report.get("gate")
        if gate:
            print(f"  gate {'PASSED' if gate['passed'] else 'FAILED'}:")
            for rule in gate["rules"]:
                print(f"    {'pass' if rule['passed'] else 'FAIL'}  {rule['detail']}")
        print(f"  report: {report_path.with_suffix('.html')}")
    client = registry.get_conn()
    try:
        versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    except MlflowException:
        versions = []
    for version in versions:
        tags = version.tags
        card = tags.get("model_card_path") or tags.get("model_card")
        print(
            f"{'' if brief else chr(10)}Registered {name} version {version.version}: {tags.get('state')} "
            f"(by {tags.get('state_by')}: {tags.get('state_reason')})"
        )
        if not brief:
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
        print(
            f"  {os.path.relpath(path, lake):<36} {artifact.metadata['rows']:>8}  {artifact.sha256[:16]}  {verdict}"
        )
    for report_path in sorted((lake / "quarantine").glob("*/*/*/report.json")):
        report = ValidationReport.from_json(report_path.read_text())
        if report.success:
            continue
        print(
            f"\nQUARANTINED {os.path.relpath(report.partition_uri.removeprefix('file://'), lake)}: "
            f"{len(report.failures)} expectation(s) failed"
        )
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
        print(
            f"\nTraining set {record['feature_service']} for dataset version {record['dataset_version']}: {splits}"
        )
        for view, features in sorted(record["feature_views"].items()):
            print(f"  {view}: {', '.join(features)}")
        print(f"  manifest: {manifest}")


def champion_version(registry: MlflowHook) -> str:
    """The registry's champion version of the model ("" when there is none)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(registry.get_conn().get_model_version_by_alias(MODEL, "champion").version)
    except MlflowException:
        return ""


def serve_rows(server: dict[str, Any], rows: Any, per_request: int = 10) -> dict[str, str]:
    """Send ``rows`` to the endpoint (``per_request`` flights a request) and wait until the request
    log (``server["requests"]``, else ``<state_dir>/requests``) has them; returns the window ``{"start", "end"}`` (UTC, ISO) that holds exactly these predictions."""
    from datetime import datetime

    import httpx

    from airflow_mlops.serving.models import json_rows
    from airflow_mlops.serving.requestlog import read_log

    records = json_rows(rows)
    start = datetime.now(UTC)
    ids: list[str] = []
    with httpx.Client(base_url=server["url"], timeout=30) as client:
        for i in range(0, len(records), per_request):
            answer = client.post(f"/v1/models/{MODEL}/predict", json={"rows": records[i : i + per_request]})
            answer.raise_for_status()
            ids += [p["prediction_id"] for p in answer.json()["predictions"]]
    end = datetime.now(UTC)
    deadline = time.monotonic() + 30  # the request log flushes every 2 s, off the request path
    # The server's own folder, or a shared log's path object (an ObjectStoragePath in a bucket).
    requests = server.get("requests") or server["state_dir"] / "requests"
    while time.monotonic() < deadline:
        logged = read_log(requests) if isinstance(requests, Path) else read_log(requests.path, fs=requests.fs)
        if set(ids) <= set(logged["prediction_id"]):
            break
        time.sleep(0.5)
    else:
        raise SystemExit(
            f"the model server's request log lacks predictions after 30 s; its log: {server['log']}"
        )
    return {"start": start.isoformat(), "end": end.isoformat()}


def monitoring_reports(lake: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The newest ``flights_monitoring`` run's drift and performance reports (empty when skipped)."""
    from airflow_mlops.evaluation.report import loads

    runs = sorted((lake / "monitoring" / MODEL).glob("*/"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return {}, {}
    return tuple(
        loads((runs[-1] / f"{name}.json").read_text()) if (runs[-1] / f"{name}.json").is_file() else {}
        for name in ("drift", "performance")
    )  # type: ignore[return-value]


@contextlib.contextmanager
def canary_traffic(server: dict[str, Any], rows: Any) -> Iterator[dict[str, int]]:
    """While the endpoint runs a canary, keep sending it the month's flights one request each, as
    production traffic would (the canary analysis needs requests to the candidate to judge it)."""
    import httpx

    from airflow_mlops.serving.models import json_rows

    records, stop, counts = json_rows(rows), threading.Event(), {"sent": 0}
    headers = {"Authorization": f"Bearer {server['token']}"}

    def send() -> None:
        with httpx.Client(base_url=server["url"], timeout=30) as client:
            i = 0
            while not stop.is_set():
                policy = (
                    client.get("/v1/admin/deployments", headers=headers)
                    .json()
                    .get(MODEL, {})
                    .get("policy", {})
                )
                if policy.get("kind") != "canary":
                    stop.wait(1.0)
                    continue
                for record in records[i % len(records) :][:100]:
                    client.post(f"/v1/models/{MODEL}/predict", json={"rows": [record]})
                    counts["sent"] += 1
                i += 100

    thread = threading.Thread(target=send, name="canary-traffic", daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(timeout=30)


def release_steps(registry: MlflowHook, version: str) -> str:
    """How a version got to production: its infra validation and each rollout step's decision
    (the version's ``infra_blessing``, ``infra_report`` and ``rollout`` tags)."""
    tags = registry.get_conn().get_model_version(MODEL, version).tags
    infra = tags.get("infra_blessing", "not validated")
    if tags.get("infra_report"):
        report = json.loads(Path(tags["infra_report"].removeprefix("file://")).read_text())
        infra += f" (p99 {report.get('p99_ms', 0):.0f} ms, {report.get('requests', 0)} requests)"
    steps = json.loads(tags.get("rollout") or "[]")
    if not steps:
        return f"infra {infra}; the first deployment: no steps"
    judged = ", ".join(
        f"{s['weight']:.0%} {'ok' if s['healthy'] else 'FAILED'} ({s['candidate_requests']})" for s in steps
    )
    return f"infra {infra}; steps {judged}, 100 %"


def release_outcome(lake: Path, registry: MlflowHook) -> str:
    """Why the newest training run's model was not promoted: the gate's failed rules, or its state."""

    from airflow_mlops.evaluation.report import loads

    reports = sorted(
        (lake / "evaluations" / MODEL).glob("*/evaluation.json"), key=lambda p: p.stat().st_mtime
    )
    gate = loads(reports[-1].read_text()).get("gate") if reports else None
    if gate and not gate["passed"]:
        return "gate: " + "; ".join(r["detail"] for r in gate["rules"] if not r["passed"])
    versions = registry.get_conn().search_model_versions(f"name = '{MODEL}'")
    newest = max(versions, key=lambda v: int(v.version), default=None)
    if newest is None:
        return "nothing registered"
    return f"v{newest.version} {newest.tags.get('state')}: {newest.tags.get('state_reason')}"


def print_walk(table: Sequence[dict[str, Any]]) -> None:
    """The continuous-training loop, one row per month."""
    print("\nThe continuous-training loop, month by month:")
    header = (
        f"  {'month':<8} {'rows':>6}  {'validation':<12} {'drift score':>11} {'drifted':>7}  "
        f"{'champion':>8} {'AUC on month':>12}  promoted"
    )
    print(header)
    for row in table:
        auc = "n/a" if row["auc"] is None else f"{row['auc']:.4f}"
        drift = "n/a" if row["drift"] is None else f"{row['drift']:.3f}"
        print(
            f"  {row['month']:<8} {row['rows']:>6}  {row['validation']:<12} {drift:>11} "
            f"{row['drifted']:>5}{' !' if row['alarm'] else '  '}  {'v' + row['champion']:>8} {auc:>12}  "
            f"{row['promoted']}"
        )
    print(
        "  drift score: the largest PSI (numeric) or Jensen-Shannon (categorical) value of the served features "
        "against the champion's training set; '!' marks a month that raised model_drift. AUC: the champion's "
        "predictions of the month joined with the flights' outcomes by prediction id. promoted: the infra "
        "validation's verdict, then each rollout step's share, decision and requests to the candidate."
    )
