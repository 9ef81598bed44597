"""Register a trained model as an MLflow model version with lineage, a model card and a signature.

No Airflow import. The version's source is an MLflow pyfunc model logged "from code" in the
training run (``registry/pyfunc_model.py``; nothing pickled), carrying the model folder, a
signature and an input example taken from the training set, and pip requirements pinned to the
versions installed here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from airflow_mlops.exceptions import ModelNotFoundError
from airflow_mlops.storage import local_path

REQUIREMENTS = ("torch", "pytorch-lightning", "pandas", "numpy", "pyarrow", "scikit-learn")


def registry_client(tracking_uri: str | None) -> Any:
    """An ``MlflowClient`` on ``tracking_uri`` for tracking and registry alike, for code that runs
    without Airflow (the model server, batch scoring); Airflow tasks use ``MlflowHook``."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextmanager
def mlflow_uris(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URI set to ``uri`` inside the block, and put back
    exactly as they were after it, for MLflow's fluent API (``start_run``, ``log_model``); clients
    take the URI instead. MLflow keeps the URIs in module globals and mirrors them into
    ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``; both are restored, so a process that runs
    several tasks (``dag.test()``, a test worker) keeps no task's store, and a URI that came only
    from the environment does not become a global (which every ``MlflowClient(tracking_uri)``
    without a registry URI would then use as its registry)."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_globals
    from mlflow.tracking._tracking_service import utils as tracking_globals

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = (tracking_globals._tracking_uri, registry_globals._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])  # type: ignore[arg-type]  # None unsets it
        registry_globals._registry_uri = saved[1]
        restore_environ(saved_env)


def restore_environ(saved: Mapping[str, str | None]) -> None:
    """Put environment variables back as ``saved`` has them (None: not set)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pinned_requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            version = metadata.version(name).split("+")[0]  # torch's "+cpu" local tag is not on PyPI
        except metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version}")
    return pins


def log_pyfunc_model(tracking_uri: str, run_id: str, model_dir: Path, example: Any) -> tuple[str, str]:
    """Log the model folder as a pyfunc model in ``run_id``; returns the logged model's URI and id.

    The signature is the package's declared one (``models.package.signature``: its input columns
    with their types, its output columns); the example is cast to those types.
    """
    import mlflow

    import airflow_mlops
    from airflow_mlops.evaluation.scoring import Scorer
    from airflow_mlops.models.package import mlflow_signature

    scorer = Scorer(model_dir)
    preprocessing = scorer.config["preprocessing"]
    example = example[[*preprocessing["numeric"], *preprocessing["categorical"]]].copy()
    # The example in the declared types (numbers as long or double, categories as strings).
    declared = {c["name"]: c["type"] for c in scorer.config["signature"]["inputs"]}
    for column in preprocessing["numeric"]:
        if declared.get(column) == "double":
            example[column] = example[column].astype("float64")
    for column in preprocessing["categorical"]:
        example[column] = example[column].astype(object).where(example[column].notna(), None)
        example[column] = example[column].map(lambda v: v if v is None else str(v))
    signature = mlflow_signature(scorer.config["signature"])
    with mlflow_uris(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="pyfunc",
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model": str(model_dir)},
            code_paths=[str(Path(airflow_mlops.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=pinned_requirements(),
        )
    return str(info.model_uri), str(info.model_id)


def logged_model_id(client: Any, model_uri: str) -> str | None:
    """The MLflow 3 logged model id behind ``models:/m-<id>`` or ``runs:/<run>/<name>`` (None when
    the run logged no model of that name, as with MLflow 2's artifact-only models)."""
    logged = re.fullmatch(r"models:/(m-[0-9a-f]+)", model_uri)
    if logged:
        return logged.group(1)
    run = re.fullmatch(r"runs:/([^/]+)/(.+)", model_uri)
    if run is None:
        return None
    run_id, name = run.groups()
    for found in client.search_logged_models(
        experiment_ids=[client.get_run(run_id).info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{name.strip('/')}'",
    ):
        return str(found.model_id)
    return None


def in_registry(model: Any) -> bool:
    """Whether ``model`` is an MLflow model URI (``models:/...``, ``runs:/...``) rather than a folder
    (a path, a URI or a path object)."""
    return isinstance(model, str) and model.startswith(("models:/", "runs:/"))


def registered_version(model_uri: str, tracking_uri: str | None = None) -> tuple[str, str] | None:
    """``(name, version)`` of ``models:/name/3`` or ``models:/name@alias`` (the alias resolved now);
    None for any other URI."""
    registered = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", model_uri)
    if registered is None:
        return None
    name, version, alias = registered.groups()
    if version is None:
        version = str(registry_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    return name, version


def model_folder(model_uri: str, tracking_uri: str | None = None, dst: Path | None = None) -> Path:
    """The local folder of the model at a model URI: a model package of this suite (``model.pt`` and
    ``config.json``) or any other MLflow model (``MLmodel``), as ``evaluation.scoring.load_scorer`` reads.

    ``models:/name@alias``, ``models:/name/3``, ``models:/m-<id>`` and ``runs:/...`` are downloaded
    from MLflow (into ``dst`` or a temporary folder); when the source is the suite's own pyfunc
    wrapper, whose ``MLmodel`` names the package logged as its artifact ``model``, that package's
    folder is returned. A plain path or ``file://`` URI is used as it is. Raises
    ``ModelNotFoundError`` (a ``FileNotFoundError``) naming the URI when no model is there.
    """
    import yaml

    if in_registry(model_uri):
        import mlflow

        # No progress bar per file: the server's and the tasks' logs stay readable (a person may still turn it on).
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

        location, registered = model_uri, registered_version(model_uri, tracking_uri)
        logged = re.fullmatch(r"models:/(m-[0-9a-f]+)", model_uri)
        # Resolved here: MLflow's models:/ download consults the process-wide URIs, not ours.
        if registered:
            location = registry_client(tracking_uri).get_model_version_download_uri(*registered)
        elif logged:  # an MLflow 3 logged model (a user's own, before registration)
            location = registry_client(tracking_uri).get_logged_model(logged.group(1)).artifact_location
        folder = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=location,
                dst_path=str(dst) if dst else None,
                tracking_uri=tracking_uri,
                registry_uri=tracking_uri,
            )
        )
    else:
        folder = local_path(model_uri, "model_uri")
    if (folder / "config.json").is_file() and (folder / "model.pt").is_file():
        return folder
    if (folder / "MLmodel").is_file():
        flavor = (
            yaml.safe_load((folder / "MLmodel").read_text()).get("flavors", {}).get("python_function", {})
        )
        logged = (flavor.get("artifacts") or {}).get("model", {}).get("path")
        if logged and (folder / logged / "config.json").is_file():
            return folder / logged  # the suite's pyfunc wrapper: its package
        return folder
    raise ModelNotFoundError(
        f"model {model_uri!r}: expected model.pt and config.json (a model package) or MLmodel "
        f"(an MLflow model) in {folder}"
    )


#: The card's metric rows per task (the binary card keeps its rates out: they describe the data).
CARD_METRICS = {"binary": ("auc", "log_loss", "accuracy", "precision", "recall", "fpr", "calibration_error")}


def model_card(
    name: str,
    version: str,
    evaluation: Mapping[str, Any],
    lineage: Mapping[str, str],
    intended_use: str,
    limitations: str,
) -> str:
    """The model card as Markdown, with the evaluation's real numbers (the metrics of its task)."""
    from airflow_mlops.evaluation.report import SLICE_COLUMNS
    from airflow_mlops.models.tasks import FAIRNESS_GAPS, metric_names

    overall = evaluation["overall"]
    champion = (evaluation.get("champion") or {}).get("overall")
    lines = [
        f"# Model card: {name} version {version}",
        "",
        "## Intended use",
        intended_use,
        "",
        "## Data",
        f"- Training set: `{lineage.get('training_set', '')}` (sha256 `{lineage.get('training_set_sha256', '')}`)",
        f"- Evaluated on the held-out `{evaluation.get('split', 'test')}` split: {int(overall['rows'])} rows",
        "",
        "## Metrics (held-out split)",
        "",
        "| metric | this version | champion at evaluation |",
        "|---|---|---|",
    ]
    task = evaluation.get("task", "binary")
    for key in CARD_METRICS.get(task) or metric_names(task):
        theirs = f"{champion[key]:.4f}" if champion else "none"
        lines.append(f"| {key} | {overall[key]:.4f} | {theirs} |")
    columns = SLICE_COLUMNS[task]
    for column, by_value in evaluation.get("slices", {}).items():
        lines += [
            "",
            f"### Per {column}",
            "",
            f"| {column} | rows | " + " | ".join(title for _, title in columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        lines += [
            f"| {v} | {int(m['rows'])} | " + " | ".join(f"{m[k]:.4f}" for k, _ in columns) + " |"
            for v, m in by_value.items()
        ]
    gaps = FAIRNESS_GAPS[task]
    lines += [
        "",
        "## Fairness gaps (largest difference between slices)",
        "",
        "| slice | " + " | ".join(g.replace("_", " ") for g in gaps) + " |",
        "|---|" + "---|" * len(gaps),
    ]
    lines += [
        f"| {c} | " + " | ".join(f"{g.get(gap, float('nan')):.4f}" for gap in gaps) + " |"
        for c, g in evaluation.get("fairness", {}).items()
    ]
    gate = evaluation.get("gate")
    if gate:
        lines += ["", f"## Evaluation gate: {'passed' if gate['passed'] else 'failed'}", ""]
        lines += [f"- {'pass' if r['passed'] else 'FAIL'}: {r['detail']}" for r in gate["rules"]]
    lines += ["", "## Limitations", limitations, "", "## Lineage", ""]
    lines += [f"- {k}: `{v}`" for k, v in lineage.items()]
    return "\n".join(lines) + "\n"


def markdown_to_html(markdown: str, title: str) -> str:
    """A plain HTML rendering of the card (headings, tables, lists) without another dependency."""
    import html

    out, in_table = [], False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:3px 8px}</style></head><body>" + "\n".join(out) + "</body></html>"
    )


def register_version(
    client: Any,
    tracking_uri: str,
    name: str,
    run_id: str,
    model: str | Path,
    example: Any,
    evaluation: Mapping[str, Any],
    lineage: Mapping[str, str],
    card_dir: Any,
    intended_use: str,
    limitations: str,
) -> dict[str, Any]:
    """Create the version (tags: lineage, state=candidate), write and log its model card (Markdown
    and HTML), and point the ``challenger`` alias at it.

    ``model`` is a model package's folder, logged here as the suite's pyfunc model (with
    ``example``), or the URI of an MLflow model already logged in ``run_id`` (``models:/m-<id>``,
    ``runs:/<run>/<path>``: a scikit-learn pipeline, say), registered as it is. ``card_dir`` is a
    local folder or an object store path (``ObjectStoragePath``) for the model card.
    """
    from mlflow.exceptions import MlflowException

    from airflow_mlops.artifacts import write_atomically
    from airflow_mlops.storage import local_folder, uri_of

    model = str(model)
    if in_registry(model):
        model_uri, model_id = model, logged_model_id(client, model)
    else:
        model_uri, model_id = log_pyfunc_model(tracking_uri, run_id, local_path(model, "model"), example)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Registered by airflow-mlops")
    tags = {**lineage, "state": "candidate"}
    # An MLflow server checks that a logged model's source names its model (a local store does not).
    # A local store resolves a models:/ source with MLflow's process-wide URI: set it for the call.
    with mlflow_uris(tracking_uri):
        version = client.create_model_version(name, model_uri, run_id=run_id, tags=tags, model_id=model_id)
    digest = record_digest(client, tracking_uri, name, str(version.version))
    card = model_card(name, version.version, evaluation, lineage, intended_use, limitations)
    write_atomically(card_dir / "model_card.md", card)
    write_atomically(card_dir / "model_card.html", markdown_to_html(card, f"{name} v{version.version}"))
    with local_folder(card_dir) as files:  # MLflow logs local files
        for file in ("model_card.md", "model_card.html"):
            client.log_artifact(run_id, str(files / file), "model_card")
    client.set_model_version_tag(
        name, version.version, "model_card", f"runs:/{run_id}/model_card/model_card.md"
    )

    def where(file: str) -> str:  # a local card by its path (as the Models page reads it), else its URI
        return str((card_dir / file).resolve()) if isinstance(card_dir, Path) else uri_of(card_dir / file)

    client.set_model_version_tag(name, version.version, "model_card_path", where("model_card.md"))
    client.set_registered_model_alias(name, "challenger", version.version)
    return {
        "name": name,
        "version": str(version.version),
        "model_uri": f"models:/{name}/{version.version}",
        "source": model_uri,
        "model_card": where("model_card.md"),
        "model_card_html": where("model_card.html"),
        "tags": dict(tags),
        "package_sha256": digest,
        "evaluation": dict(evaluation.get("overall", {})),
    }


def record_digest(client: Any, tracking_uri: str | None, name: str, version: str) -> str:
    """Download registered version ``version`` of ``name`` as a model server would, and record its
    package's SHA-256 (``models.package.package_digest``) as the version's ``package_sha256`` tag:
    the digest a model server checks the files against before it loads them. Registration records
    it; run it yourself only for a version you registered another way and vouch for."""
    import tempfile

    from airflow_mlops.models.package import DIGEST_TAG, package_digest

    with tempfile.TemporaryDirectory(prefix="mlops-digest-") as staging:
        digest = package_digest(model_folder(f"models:/{name}/{version}", tracking_uri, dst=Path(staging)))
    client.set_model_version_tag(name, version, DIGEST_TAG, digest)
    return digest
