"""The MLOps API inside the Airflow API server: models, their versions and states, and the
governance actions (approve, reject, promote, roll back), each by the signed-in Airflow user.

A plugin's FastAPI app is mounted by Airflow without Airflow's authentication (a Starlette mount
inherits none of the core API's dependencies), so every route here asks for the user itself
(``GetUserDep``: the JWT of the ``Authorization`` header or the UI's session cookie). MLflow is
imported inside the handlers: the plugin is loaded by every Airflow process.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field

ACTIONS = ("approve", "reject", "promote")


class Decision(BaseModel):
    """Why a person approves, rejects, promotes or rolls back (kept in the version's history)."""

    why: str = Field(min_length=3, description="the reason, recorded with the user's name")


def create_app() -> FastAPI:
    """The app the plugin mounts at ``/mlops``."""
    app = FastAPI(title="airflow-mlops", description=__doc__, version="1")
    authenticated = [Depends(get_user)]

    def client() -> Any:
        from mlflow import MlflowClient

        from airflow_mlops import settings

        uri = settings.mlflow_tracking_uri()
        return MlflowClient(uri, registry_uri=uri)

    def versions(name: str) -> list[Any]:
        from mlflow.exceptions import MlflowException

        try:
            found = client().search_model_versions(f"name = '{name}'")
        except MlflowException as err:
            raise HTTPException(502, f"the registry did not answer: {err}") from err
        if not found:
            raise HTTPException(404, f"no registered model {name!r} (rule: a model has at least one version)")
        return sorted(found, key=lambda v: int(v.version))

    def describe(version: Any, aliases: dict[str, list[str]]) -> dict[str, Any]:
        tags = dict(version.tags)
        return {"version": str(version.version), "state": tags.get("state", ""), "by": tags.get("state_by", ""),
                "why": tags.get("state_reason", ""), "aliases": aliases.get(str(version.version), []),
                "run_id": version.run_id, "created": version.creation_timestamp,
                "training_set": tags.get("training_set", ""), "evaluation_report": tags.get("evaluation_report", "")}

    @app.get("/api/models", dependencies=authenticated)
    def list_models() -> list[dict[str, Any]]:
        """Every registered model with its versions' states and aliases."""
        models = []
        for model in client().search_registered_models():
            aliases: dict[str, list[str]] = {}
            for alias, version in (model.aliases or {}).items():
                aliases.setdefault(str(version), []).append(alias)
            models.append({"name": model.name,
                           "versions": [describe(v, aliases) for v in versions(model.name)]})
        return models

    @app.get("/api/models/{name}", dependencies=authenticated)
    def model(name: str) -> dict[str, Any]:
        """One model's versions, states and aliases; 404 when there is no such model."""
        found = versions(name)
        registered = client().get_registered_model(name)
        aliases: dict[str, list[str]] = {}
        for alias, version in (registered.aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
        return {"name": name, "versions": [describe(v, aliases) for v in found]}

    @app.post("/api/models/{name}/versions/{version}/{action}")
    def act(name: str, version: str, action: str, decision: Decision, user: GetUserDep) -> dict[str, Any]:
        """Approve, reject or promote a version as the signed-in user; 409 with the reason when the
        version's state does not allow it."""
        from airflow_mlops.registry.governance import GovernanceError, decide, promote

        if action not in ACTIONS:
            raise HTTPException(404, f"unknown action {action!r} (actions: {list(ACTIONS)})")
        if version not in {str(v.version) for v in versions(name)}:
            raise HTTPException(404, f"{name} has no version {version!r}")
        who = f"{user.get_name()} (Airflow UI)"
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
        """Make the champion's predecessor the champion again, as the signed-in user."""
        from airflow_mlops.registry.governance import GovernanceError, rollback

        versions(name)
        who = f"{user.get_name()} (Airflow UI)"
        try:
            outcome = rollback(client(), name, who, decision.why)
        except GovernanceError as err:
            raise HTTPException(409, str(err)) from err
        return {"name": name, "by": who, "why": decision.why, **outcome}

    return app
