"""What each operator and sensor pushes to XCom (``return_value``), as types.

Small JSON documents: URIs, ids, metrics and decisions, never data. Downstream tasks and DAG
authors read these keys; a change here is a change of the operators' public interface. No
Airflow import.
"""

from __future__ import annotations

from typing import Any, TypedDict


class MaterializeResult(TypedDict):
    """``FeastMaterializeOperator``: the window pushed to the online store."""

    start: str
    end: str
    feature_views: list[str]


class TrainingResult(TypedDict, total=False):
    """``LightningTrainOperator`` and ``SageMakerTrainOperator``: the runtime's ``result.json``."""

    mlflow_run_id: str
    model_uri: str
    task: str
    metrics: dict[str, float]
    samples_per_s: float
    node_rank: int
    sagemaker: dict[str, Any]


class TrialResult(TypedDict):
    """``TrialOperator``: one tuning trial."""

    trial: int
    state: str
    params: dict[str, Any]
    metric: str
    value: float | None
    pruned_at_epoch: int | None
    mlflow_run_id: str | None
    metrics: dict[str, float] | None


class StudyResult(TypedDict):
    """``PublishStudyOperator``: the study's best trial."""

    study: str
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    metric: str
    states: dict[str, int]
    mlflow_run_id: str | None
    best_mlflow_run_id: str | None


class EvaluationResult(TypedDict):
    """``EvaluateModelOperator``: the report's URIs and its headline numbers."""

    report_uri: str
    report_html_uri: str
    overall: dict[str, float]
    champion_overall: dict[str, float] | None
    fairness: dict[str, dict[str, float]]
    rows: int


class GateOutcome(TypedDict):
    """``EvaluationGateOperator`` (on a pass; a failed gate skips): every rule with its numbers."""

    passed: bool
    rules: list[dict[str, Any]]


class RegisteredVersion(TypedDict):
    """``RegisterModelOperator``: the new model version."""

    name: str
    version: str
    model_uri: str
    source: str
    model_card: str
    model_card_html: str
    tags: dict[str, str]
    package_sha256: str
    evaluation: dict[str, float]


class ApprovalOutcome(TypedDict):
    """``ModelApprovalSensor``: who decided and why."""

    decision: str
    name: str
    version: str
    by: str | None
    why: str | None


class PromotionOutcome(TypedDict):
    """``PromoteModelOperator``: the champion now, the one it replaced, whether anything changed."""

    champion: str | None
    previous: str | None
    changed: bool


class RollbackOutcome(TypedDict):
    """``RollbackModelOperator``: the champion restored and the version archived."""

    champion: str
    rolled_back: str


class DeploymentResult(TypedDict):
    """``DeployModelOperator`` and ``SageMakerDeployOperator``: the record the server now serves."""

    endpoint: str
    mode: str
    deployment: dict[str, Any]


class InfraValidation(TypedDict, total=False):
    """``InfraValidateOperator`` (a blessed version; one that fails is rejected and skipped)."""

    blessed: bool
    model: str
    version: str
    champion: str | None
    checks: list[dict[str, Any]]
    limits: dict[str, Any]
    at: str
    report_uri: str
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    requests: int


class RolloutResult(DeploymentResult):
    """``StepwiseRolloutOperator``: the deployment served at the end and every step's decision."""

    steps: list[dict[str, Any]]


class ExperimentResult(TypedDict, total=False):
    """``ExperimentAnalysisOperator``: per-variant estimates, each challenger against the control."""

    report_uri: str
    report_html_uri: str
    metric: str
    method: str
    control: str
    variants: dict[str, Any]
    comparisons: dict[str, Any]
    winner: str | None
    decision: str
    outcomes: int
    without_outcome: int
    gate: dict[str, Any] | None
    window: dict[str, str]
    mlflow_run_id: str


class CanaryVerdict(TypedDict):
    """``CanaryAnalysisSensor``: a healthy canary's verdict (an unhealthy one is rolled back and skipped)."""

    healthy: bool
    reasons: list[str]
    stats: dict[str, Any]


class PredictionResult(TypedDict):
    """``BatchPredictOperator``: the scored partition (also each outlet's Asset event ``extra``)."""

    uri: str
    sha256: str
    parents: list[str]
    rows: int
    model: str
    version: str
    mean_probability: float


class DriftResult(TypedDict, total=False):
    """``DriftMonitorOperator``: the report and the verdict."""

    report_uri: str
    report_html_uri: str
    score: float
    drifted: list[str]
    features: dict[str, Any]
    breached: bool
    reasons: list[str]
    rows: int
    version: str | None
    prediction_psi: float | None
    window: dict[str, str]
    mlflow_run_id: str


class PerformanceResult(TypedDict, total=False):
    """``PerformanceMonitorOperator``: served metrics against the labels that arrived."""

    report_uri: str
    report_html_uri: str
    overall: dict[str, float]
    versions: dict[str, Any]
    labelled: int
    breached: bool
    reasons: list[str]
    window: dict[str, str]
    mlflow_run_id: str
