"""The shapes of the ``/mlops`` API's answers, for its OpenAPI schema and for scripts that read it.

Reports (evaluation, experiment, validation) are the operators' own JSON and stay free-form here:
their fields are documented where they are written.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # new fields reach old scripts instead of failing them


class Me(_Open):
    name: str = Field(description="the signed-in user")
    role: str = Field(description="their role(s) as the auth manager knows them")
    may_decide: bool = Field(description="edit access to DAGs: approve, reject, promote, roll back")


class RolloutStep(_Open):
    step: int | None = None
    weight: float | None = Field(None, description="the candidate's share of the traffic")
    healthy: bool | None = Field(None, description="the step's verdict; false rolled back")
    reasons: list[str] = []
    candidate_requests: int | None = None


class Version(_Open):
    version: str
    state: str = Field(description="candidate, approved, rejected, champion, retired, ... ('' unmanaged)")
    by: str = Field(description="who set the state (user and role, or the operator and its run)")
    why: str = Field(description="the reason given")
    aliases: list[str]
    run_id: str | None = Field(description="the MLflow run that produced the version")
    created: int | None = Field(description="milliseconds since the epoch")
    training_set: str = Field(description="the training set's manifest URI")
    evaluation_report: str = Field(description="the evaluation report's URI (JSON; .html beside it)")
    model_card: str
    rollout: list[RolloutStep] = Field(description="the stepwise rollout's decisions, oldest first")


class Model(_Open):
    name: str
    versions: list[Version]


class RunVersion(Version):
    name: str = Field(description="the registered model")
    evaluation: dict[str, Any] | None = Field(description="the evaluation report, or None")


class PartitionReport(_Open):
    table: str
    partition: str
    report: str = Field(description="the report's URI (open it through /mlops/files?uri=)")


class MonitoringWindow(_Open):
    endpoint: str
    run: str
    window_start: str | None
    drift_score: float | None
    drifted: list[str]
    features: dict[str, float | None] = Field(description="each compared column's divergence")
    auc: float | None = Field(description="the served model's AUC over the window, where labels came")
    drift_report: str
    performance_report: str


class DataSummary(_Open):
    validated: list[PartitionReport]
    quarantined: list[PartitionReport]
    monitoring: list[MonitoringWindow] = Field(description="newest first")


class QuarantinedRows(_Open):
    uri: str = Field(description="the quarantined Parquet (a failed partition, or a split's invalid rows)")
    rows: int | None = Field(description="how many rows it holds; None when it was not read")
    columns: list[str]
    sample: list[dict[str, Any]] = Field(description="the first rows (NaN as null, times in ISO 8601)")
    error: str | None = Field(description="why the rows were not read (outside the lake, gone), else None")


class TaskValidation(_Open):
    report: str = Field(description="the HTML report's URI")
    summary: dict[str, Any] | None = Field(description="the JSON report beside it, or None")
    quarantined: QuarantinedRows | None = Field(
        None, description="the rows the task put in quarantine, or None when it quarantined none"
    )
