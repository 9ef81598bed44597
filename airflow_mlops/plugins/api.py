"""The MLOps API inside the Airflow API server: models, their versions and states, and the
governance actions (approve, reject, promote, roll back), each by the signed-in Airflow user.

A plugin's FastAPI app is mounted by Airflow without Airflow's authentication (a Starlette mount
inherits none of the core API's dependencies), so every route here asks for the user itself
(``GetUserDep``: the JWT of the ``Authorization`` header or the UI's session cookie) and then asks
Airflow's auth manager (Simple, FAB or any other) what the user may do:

* reading models, pages and reports needs read access to DAGs (``is_authorized_dag``, GET);
* approve, reject, promote and roll back need **edit** access to the DAG that trained the version
  (its ``dag_id`` tag; edit access to DAGs in general for a version registered outside a DAG), so
  a Viewer gets 403; with ``[mlops] approver_must_differ`` the user who triggered that DAG run
  cannot approve the version it trained (403). A decision records the user, their role and the reason.

MLflow is imported inside the handlers: the plugin is loaded by every Airflow process.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from airflow_mlops.plugins import schemas

ACTIONS = ("approve", "reject", "promote")
REPORT_SUFFIXES = (".html", ".md", ".json")
STATIC = Path(__file__).with_name("static")


class Decision(BaseModel):
    """Why a person approves, rejects, promotes or rolls back (kept in the version's history)."""

    why: str = Field(min_length=3, description="the reason, recorded with the user's name")


def role_of(user: Any) -> str:
    """The user's role(s) as the auth manager knows them (Simple: ``role``; FAB: ``roles``)."""
    role = getattr(user, "role", None)
    if role:
        return str(role)
    roles = getattr(user, "roles", None) or []
    return ", ".join(str(getattr(r, "name", r)) for r in roles) or "no role"


def authorize(user: Any, method: str, dag_id: str | None, what: str) -> None:
    """403 naming the user, the action and the access it needs unless the auth manager grants
    ``method`` (GET: read, PUT: edit) on DAG ``dag_id`` (DAGs in general when None)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    details = DagDetails(id=dag_id) if dag_id else None
    if not get_auth_manager().is_authorized_dag(method=method, user=user, details=details):  # type: ignore[arg-type]
        access = "edit" if method != "GET" else "read"
        target = f"DAG {dag_id!r}" if dag_id else "DAGs"
        raise HTTPException(
            403, f"{user.get_name()} ({role_of(user)}) may not {what}: it needs {access} access to {target}"
        )


def create_app() -> FastAPI:  # noqa: C901 - the routes are closures over the app; each is short
    """The app the plugin mounts at ``/mlops``."""
    app = FastAPI(title="airflow-mlops", description=__doc__, version="1")

    def reader(user: GetUserDep) -> None:
        authorize(user, "GET", None, "read models and reports")

    authenticated = [Depends(get_user), Depends(reader)]

    @app.exception_handler(HTTPException)
    async def sign_in_first(request: Request, err: HTTPException) -> Response:
        """A browser that is not signed in goes to Airflow's login page and comes back; API calls get 401."""
        if (
            err.status_code == 401
            and request.method == "GET"
            and "text/html" in request.headers.get("accept", "")
        ):
            from airflow.api_fastapi.app import get_auth_manager

            here = f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path
            return RedirectResponse(get_auth_manager().get_url_login(next_url=here), status_code=303)
        return await http_exception_handler(request, err)

    def client() -> Any:
        from airflow_mlops import settings
        from airflow_mlops.hooks.mlflow import MlflowHook

        return MlflowHook(settings.mlflow_conn_id()).get_conn()

    def versions(name: str, *, required: bool = True) -> list[Any]:
        from mlflow.exceptions import MlflowException

        try:
            found = client().search_model_versions(name_filter(name))
            found = [v for v in found if v.name == name]  # the filter is never trusted alone
        except MlflowException as err:
            raise HTTPException(502, f"the registry did not answer: {err}") from err
        if not found and required:
            raise HTTPException(404, f"no registered model {name!r} (rule: a model has at least one version)")
        return sorted(found, key=lambda v: int(v.version))

    def describe(version: Any, aliases: dict[str, list[str]]) -> dict[str, Any]:
        tags = dict(version.tags)
        return {
            "version": str(version.version),
            "state": tags.get("state", ""),
            "by": tags.get("state_by", ""),
            "why": tags.get("state_reason", ""),
            "aliases": aliases.get(str(version.version), []),
            "run_id": version.run_id,
            "created": version.creation_timestamp,
            "training_set": tags.get("training_set", ""),
            "evaluation_report": tags.get("evaluation_report", ""),
            "model_card": tags.get("model_card_path") or tags.get("model_card", ""),
            "rollout": rollout_steps(tags.get("rollout")),
        }

    @app.get("/api/models", dependencies=authenticated, response_model=list[schemas.Model])
    def list_models() -> list[dict[str, Any]]:
        """Every registered model with its versions' states and aliases."""
        models = []
        for model in client().search_registered_models():
            aliases = aliases_of(model)
            models.append(
                {
                    "name": model.name,  # a model registered without versions yet is listed empty
                    "versions": [describe(v, aliases) for v in versions(model.name, required=False)],
                }
            )
        return models

    @app.get("/api/models/{name}", dependencies=authenticated, response_model=schemas.Model)
    def model(name: str) -> dict[str, Any]:
        """One model's versions, states and aliases; 404 when there is no such model."""
        found = versions(name)
        aliases = aliases_of(client().get_registered_model(name))
        return {"name": name, "versions": [describe(v, aliases) for v in found]}

    @app.post("/api/models/{name}/versions/{version}/{action}")
    def act(name: str, version: str, action: str, decision: Decision, user: GetUserDep) -> dict[str, Any]:
        """Approve, reject or promote a version as the signed-in user; 409 with the reason when the
        version's state does not allow it."""
        from airflow_mlops import settings
        from airflow_mlops.registry.governance import GovernanceError, decide, promote

        if action not in ACTIONS:
            raise HTTPException(404, f"unknown action {action!r} (actions: {list(ACTIONS)})")
        found = {str(v.version): v for v in versions(name)}
        if version not in found:
            raise HTTPException(404, f"{name} has no version {version!r}")
        tags = dict(found[version].tags)
        authorize(user, "PUT", tags.get("dag_id") or None, f"{action} {name} v{version}")
        if action == "approve" and settings.approver_must_differ():
            trained_by = tags.get("triggered_by_user", "")
            if trained_by and trained_by == user.get_name():
                raise HTTPException(
                    403,
                    f"{user.get_name()} triggered the run that trained {name} v{version} and may not approve it "
                    "([mlops] approver_must_differ)",
                )
        who = f"{user.get_name()} ({role_of(user)}, Airflow UI)"
        try:
            if action == "promote":
                outcome = promote(client(), name, version, who, decision.why)
            else:
                decide(client(), name, version, action == "approve", who, decision.why)
                outcome = {}
        except GovernanceError as err:
            raise HTTPException(409, str(err)) from err
        return {"name": name, "version": version, "action": action, "by": who, "why": decision.why, **outcome}

    @app.post("/api/models/{name}/rollback")
    def roll_back(name: str, decision: Decision, user: GetUserDep) -> dict[str, Any]:
        """Make the champion's predecessor the champion again, as the signed-in user (edit access
        to the DAG that trained the current champion)."""
        from airflow_mlops.registry.governance import GovernanceError, rollback

        found = versions(name)
        champion = client().get_registered_model(name).aliases.get("champion")
        trained = next((v for v in found if str(v.version) == str(champion)), found[-1])
        authorize(user, "PUT", dict(trained.tags).get("dag_id") or None, f"roll back {name}")
        who = f"{user.get_name()} ({role_of(user)}, Airflow UI)"
        try:
            outcome = rollback(client(), name, who, decision.why)
        except GovernanceError as err:
            raise HTTPException(409, str(err)) from err
        return {"name": name, "by": who, "why": decision.why, **outcome}

    def evaluation(report_uri: str) -> dict[str, Any] | None:
        """A JSON report inside the lake (the evaluation report a version's tag names: metrics,
        slices, the champion's, the gate; or a validation report), or None; a tag is anyone's
        text: only reports inside the lake are read."""
        from airflow_mlops import settings
        from airflow_mlops.evaluation.report import loads

        lake = settings.lake_uri()
        if not str(report_uri).endswith(".json"):
            return None
        if _local(lake) is None:
            with contextlib.suppress(HTTPException):
                return dict(loads(object_report_bytes(report_uri, lake, settings.lake_conn_id()).decode()))
            return None
        path = in_lake(report_uri, lake)
        return dict(loads(path.read_text())) if path and path.is_file() else None

    def evaluations(model: dict[str, Any]) -> dict[str, Any]:
        found = {}
        for version in model["versions"]:
            report = evaluation(version["evaluation_report"])
            if report is not None:
                found[version["version"]] = report
        return found

    @app.get("/api/me", dependencies=authenticated, response_model=schemas.Me)
    def me(user: GetUserDep) -> dict[str, Any]:
        """The signed-in user: ``name``, ``role`` and ``may_decide`` (edit access to DAGs, which
        approve, reject, promote and roll back need; the views show their buttons only then, and
        each action is still authorized against the DAG that trained the version)."""
        from airflow.api_fastapi.app import get_auth_manager

        may = get_auth_manager().is_authorized_dag(method="PUT", user=user)
        return {"name": user.get_name(), "role": role_of(user), "may_decide": bool(may)}

    @app.get("/api/models/{name}/evaluations", dependencies=authenticated)
    def model_evaluations(name: str) -> dict[str, Any]:
        """Version -> its evaluation report (``overall`` metrics, ``slices``, the ``champion``'s
        at evaluation time, the ``gate`` and its rules); versions without a report are left out."""
        return evaluations(model(name))

    @app.get("/api/runs/{dag_id}/{run_id}/models", response_model=list[schemas.RunVersion])
    def run_models(dag_id: str, run_id: str, user: GetUserDep) -> list[dict[str, Any]]:
        """The model versions DAG run ``run_id`` of ``dag_id`` registered (their ``dag_id`` and
        ``dag_run_id`` tags), each as in ``/api/models/{name}`` plus ``name`` and ``evaluation``
        (its report, or None): what the Model view of a training run shows. Needs read access
        to that DAG."""
        authorize(user, "GET", dag_id, f"read the models of {dag_id} runs")
        found = []
        for registered in client().search_registered_models():
            aliases = aliases_of(registered)
            for version in versions(registered.name, required=False):
                tags = dict(version.tags)
                if tags.get("dag_id") == dag_id and tags.get("dag_run_id") == run_id:
                    described = {"name": registered.name, **describe(version, aliases)}
                    described["evaluation"] = evaluation(described["evaluation_report"])
                    found.append(described)
        return found

    @app.get(
        "/api/task-instances/{dag_id}/{run_id}/{task_id}/validation", response_model=schemas.TaskValidation
    )
    def task_validation(
        dag_id: str, run_id: str, task_id: str, user: GetUserDep, map_index: int = -1
    ) -> dict[str, Any]:
        """The validation report a task instance recorded (its "Validation report" link, passed or
        quarantined): ``report`` (the HTML report's URI), ``summary`` (the JSON report beside
        it: ``success``, ``rows``, ``outcomes`` per expectation, ``row_split`` for quarantined
        rows; None when it cannot be read) and ``quarantined`` (the rows it put in quarantine,
        :func:`quarantined_rows`; None when it quarantined nothing). 404 when the task instance
        recorded no report (not a validation task, or it has not run). Needs read access to
        that DAG."""
        from urllib.parse import parse_qs, urlsplit

        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        from airflow_mlops.links import ValidationReportLink
        from airflow_mlops.operators.validate import QUARANTINED_XCOM

        authorize(user, "GET", dag_id, f"read the validation reports of {dag_id}")

        def xcom(key: str) -> Any:
            """The task instance's XCom ``key``, or None."""
            query = XComModel.get_many(
                run_id=run_id, key=key, task_ids=task_id, dag_ids=dag_id, map_indexes=map_index
            )
            with create_session() as session:
                row = session.scalars(query).first()
                return XComModel.deserialize_value(row) if row is not None else None

        link = xcom(ValidationReportLink().xcom_key)
        uri = (parse_qs(urlsplit(str(link)).query).get("uri") or [""])[0] if link else ""
        if not uri:
            raise HTTPException(
                404,
                f"task {task_id!r} of {dag_id} run {run_id!r} (map index {map_index}) recorded no "
                "validation report (rule: only a DataValidationOperator that ran records one)",
            )
        summary = None
        if uri.endswith(".html"):
            summary = evaluation(uri.removesuffix(".html") + ".json")
        quarantined = None
        moved = xcom(QUARANTINED_XCOM)
        if moved:
            from airflow_mlops import settings

            quarantined = quarantined_rows(str(moved), settings.lake_uri(), settings.lake_conn_id())
        return {"report": uri, "summary": summary, "quarantined": quarantined}

    @app.get("/api/experiments", dependencies=authenticated)
    def experiments() -> dict[str, Any]:
        """Endpoint -> its newest experiment analysis in the lake: ``report``
        (``ExperimentAnalysisOperator``'s JSON) and ``uri`` (its HTML report)."""
        from airflow_mlops.plugins.pages import latest_experiments

        return {e: {"report": r, "uri": u} for e, (r, u) in latest_experiments(lake_root()).items()}

    @app.get("/api/data", dependencies=authenticated, response_model=schemas.DataSummary)
    def data() -> dict[str, Any]:
        """Validated and quarantined partitions and the monitors' windows (drift score, drifted
        features, served AUC, report URIs), newest window first: ``pages.data_summary``."""
        from airflow_mlops.plugins.pages import data_summary

        return data_summary(lake_root())

    @app.get("/api/deployments", dependencies=authenticated)
    def serving() -> dict[str, Any]:
        """What the model server serves beside what the registry says: ``deployments`` (endpoint ->
        the server's record, its variants pinned to versions; a variant deployed by alias also
        has ``registry_version``, the version the alias names in the registry now, which the
        server follows within ``--follow-aliases-every`` seconds), ``stats`` per endpoint, and
        ``error`` when the server (connection ``mlops_model_server``) did not answer."""
        from airflow_mlops.hooks.model_server import ModelServerHook

        try:
            hook = ModelServerHook()
            deployments = hook.deployments()
            stats = {e: hook.stats(e) for e, d in deployments.items() if "error" not in d}
        except Exception as err:  # the pages say why instead of failing: the server may be down
            return {"deployments": {}, "stats": {}, "error": f"{type(err).__name__}: {err}"}
        registry = client()
        for deployment in deployments.values():
            for spec in deployment.get("variants", {}).values():
                if spec.get("alias"):
                    try:
                        found = registry.get_model_version_by_alias(spec["name"], spec["alias"])
                        spec["registry_version"] = str(found.version)
                    except Exception:  # the alias deleted, or the registry down: nothing to compare
                        spec["registry_version"] = None
                try:  # the stepwise rollout's decisions that brought this version here
                    tags = registry.get_model_version(spec["name"], str(spec["version"])).tags
                    spec["rollout"] = rollout_steps(dict(tags).get("rollout"))
                except Exception:  # a version the registry no longer has, or the registry down
                    spec["rollout"] = []
        return {"deployments": deployments, "stats": stats, "error": ""}

    # The React views' bundle (built from ui/ by `make ui`, shipped in the package): public, as
    # Airflow's own UI assets are; every answer it shows comes from the routes above.
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/models", response_class=HTMLResponse, dependencies=authenticated)
    def models_view() -> str:
        """The Models page: metrics per version, states, actions, champion vs challenger per
        slice, and where the model server serves each version."""
        from airflow_mlops.plugins.pages import models_page

        models = list_models()
        return models_page(models, {m["name"]: evaluations(m) for m in models}, serving())

    @app.get("/deployments", response_class=HTMLResponse, dependencies=authenticated)
    def deployments_view() -> str:
        """The Deployments page, from the model server's admin API and the registry's aliases,
        with each endpoint's newest experiment analysis from the lake."""
        from airflow_mlops.plugins.pages import deployments_page, latest_experiments

        return deployments_page(serving(), latest_experiments(lake_root()))

    @app.get("/data", response_class=HTMLResponse, dependencies=authenticated)
    def data_view() -> str:
        """The Data page: validation reports, quarantined partitions, drift and performance reports."""
        from airflow_mlops.plugins.pages import data_page

        return data_page(data())

    @app.get("/files", dependencies=authenticated, response_model=None)
    def report_file(uri: str) -> Response:
        """A report from the lake (HTML, Markdown or JSON); nothing outside the lake is served. A
        lake in an object store (``[mlops] lake`` ``s3://...``) is read through ``[mlops]
        lake_conn_id``."""
        from airflow_mlops import settings

        if _local(settings.lake_uri()) is None:
            return object_report(uri, settings.lake_uri(), settings.lake_conn_id())
        if _local(uri) is None:
            raise HTTPException(404, f"{uri!r} is not a local file of the lake")
        path = in_lake(uri, settings.lake_uri())
        if path is None or path.suffix not in REPORT_SUFFIXES:
            raise HTTPException(
                403, f"{uri!r}: only reports ({', '.join(REPORT_SUFFIXES)}) inside the lake are served"
            )
        if not path.is_file():
            raise HTTPException(404, f"no report at {uri!r}")
        return FileResponse(path, media_type="text/html" if path.suffix == ".html" else "text/plain")

    return app


def rollout_steps(tag: str | None) -> list[dict[str, Any]]:
    """A version's ``rollout`` tag (``StepwiseRolloutOperator``'s decisions, JSON): each step's
    ``step``, ``weight``, ``healthy``, ``reasons``, ``candidate_requests``; [] without one, or for a
    tag that is not such a list (a tag is anyone's text)."""
    import json

    try:
        steps = json.loads(tag) if tag else []
    except ValueError:
        return []
    return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


QUARANTINE_SAMPLE = 20


def quarantined_rows(
    uri: str, lake_uri: str, conn_id: str | None, limit: int = QUARANTINE_SAMPLE
) -> dict[str, Any]:
    """The rows a validation put in quarantine (Parquet at ``uri``): ``uri``, ``rows`` (how many),
    ``columns``, the first ``limit`` as ``sample`` (JSON values: NaN as null, times in ISO 8601)
    and ``error``: why they were not read instead (outside the lake, which is the only place
    the API reads; or gone, e.g. moved by hand)."""
    import json

    import pyarrow.parquet as pq

    from airflow_mlops.layout import within

    answer: dict[str, Any] = {"uri": uri, "rows": None, "columns": [], "sample": [], "error": None}
    if not within(uri, lake_uri):
        answer["error"] = f"{uri!r} lies outside the lake {lake_uri!r} (rule: only the lake's files are read)"
        return answer
    try:
        local = _local(uri)
        with contextlib.ExitStack() as stack:
            if local is not None:
                parquet = pq.ParquetFile(local)
            else:  # ranged reads: the footer, then the first row group's pages
                from airflow.sdk import ObjectStoragePath

                handle = stack.enter_context(ObjectStoragePath(uri, conn_id=conn_id).open("rb"))
                parquet = pq.ParquetFile(handle)
            answer["rows"] = parquet.metadata.num_rows
            answer["columns"] = list(parquet.schema_arrow.names)
            first = next(parquet.iter_batches(batch_size=limit), None)
        if first is not None:
            frame = first.to_pandas()
            answer["sample"] = json.loads(frame.to_json(orient="records", date_format="iso"))
    except Exception as err:  # the answer says why, the rest of the view still shows
        answer["error"] = f"{uri!r} could not be read: {type(err).__name__}: {err}"
    return answer


def aliases_of(registered: Any) -> dict[str, list[str]]:
    """Version -> the aliases a registered model gives it."""
    aliases: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    return aliases


def name_filter(name: str) -> str | None:
    """MLflow's search filter for one model name, quoted so that the name cannot change the filter
    (its quotes are not escapable); None, every version, for a name holding both kinds of quote."""
    for quote in ("'", '"'):
        if quote not in name:
            return f"name = {quote}{name}{quote}"
    return None


def object_report(uri: str, lake_uri: str, conn_id: str | None) -> Response:
    """A report in a lake in an object store (:func:`object_report_bytes`) as a response."""
    body = object_report_bytes(uri, lake_uri, conn_id)
    return Response(body, media_type="text/html" if uri.endswith(".html") else "text/plain")


def object_report_bytes(uri: str, lake_uri: str, conn_id: str | None) -> bytes:
    """A report in a lake in an object store: inside the lake (``layout.within``: the same bucket,
    a key under the lake's prefix however ``..`` spells it) and a report's suffix, else 403;
    read through the lake's connection, 404 when there is no such object."""
    from airflow.sdk import ObjectStoragePath

    from airflow_mlops.layout import within

    suffix = Path(uri).suffix
    if not within(uri, lake_uri) or suffix not in REPORT_SUFFIXES:
        raise HTTPException(
            403, f"{uri!r}: only reports ({', '.join(REPORT_SUFFIXES)}) inside the lake are served"
        )
    path = ObjectStoragePath(uri, conn_id=conn_id)
    if not path.is_file():
        raise HTTPException(404, f"no report at {uri!r}")
    with path.open("rb") as handle:
        return bytes(handle.read())


def lake_root() -> Any:
    """The lake (``[mlops] lake``) as a ``Path``, or an ``ObjectStoragePath`` with the lake's connection."""
    from airflow_mlops import settings

    lake = _local(settings.lake_uri())
    if lake is None:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(settings.lake_uri(), conn_id=settings.lake_conn_id())
    return lake


def in_lake(uri: str, lake_uri: str) -> Path | None:
    """The resolved local path of ``uri`` when it lies inside the (local) lake, else None."""
    lake, path = _local(lake_uri), _local(uri)
    if lake is None or path is None:
        return None
    path = path.resolve()
    return path if path.is_relative_to(lake.resolve()) else None


def _local(uri: str) -> Path | None:
    """A local path for a ``file://`` URI or a plain path; None for object storage."""
    from airflow_mlops.storage import is_remote, local_path

    if not uri or is_remote(uri):
        return None
    return local_path(uri)
