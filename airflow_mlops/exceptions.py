"""Errors raised by airflow-mlops; each message names the input, the rule and the offending value.

One root, ``MLOpsError``; each error keeps the built-in base callers relied on before (a bad
argument is still a ``ValueError``, an unknown endpoint a ``LookupError``), so ``except ValueError``
in user code goes on working. No imports: the training runtime and the server use this module too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class MLOpsError(Exception):
    """Base class of every error this package raises on purpose."""


class MLOpsConfigError(MLOpsError, ValueError):
    """An argument, a connection or a configuration option that cannot work as given."""


class MissingExtraError(MLOpsError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the package and how to install it."""


class ModelNotFoundError(MLOpsError, FileNotFoundError):
    """A model URI names no model folder (``model.pt`` and ``config.json``)."""


class ArtifactNotFoundError(MLOpsError, FileNotFoundError):
    """An artifact (a model folder, a report) is not where its URI says, e.g. an empty object store prefix."""


class UnknownColumnError(MLOpsError, KeyError):
    """A column asked for is not in the data or profile it is looked up in."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class SourceQueryError(MLOpsError):
    """The source database rejected a query (bad SQL, unknown table, missing bind parameter)."""


class SourceConnectionError(MLOpsError):
    """An Airflow connection is missing or cannot be turned into a SQLAlchemy engine."""


class EmptyResultError(MLOpsError):
    """A query returned no rows where rows were required."""


class SchemaError(MLOpsError):
    """Data does not match the schema it must have: a column's type or the set of columns changed."""


class TargetError(MLOpsError):
    """An output location cannot be written."""


class LandingFileError(MLOpsError):
    """A file dropped into the landing zone breaks the rules of its landing format."""


class SuiteError(MLOpsError):
    """An expectation suite cannot be used: unreadable file, unknown expectation, bad arguments."""


class DataValidationFailed(MLOpsError):
    """A partition failed its expectation suite; it has been quarantined beside its report."""

    def __init__(self, message: str, report_uri: str | None = None) -> None:
        super().__init__(message)
        self.report_uri = report_uri


class DatasetDefinitionError(MLOpsError):
    """A dataset definition is invalid: unknown filter operator, split fractions, missing fields."""


class DatasetIntegrityError(MLOpsError):
    """A dataset's files no longer match its manifest (missing file, changed content hash)."""


class FeatureStoreError(MLOpsError):
    """The feature store cannot answer: unknown feature service or view, bad entity rows, no repository."""


class TrainingError(MLOpsError, RuntimeError):
    """The training processes failed; the message ends with their last output lines."""


class ModelServerError(MLOpsError):
    """The model server refused a request or could not be reached (status and detail in the message)."""


class GateError(MLOpsError, ValueError):
    """A gate definition is invalid (unknown metric, rule shape or value)."""


class MonitoringError(MLOpsError, ValueError):
    """Inputs a monitor cannot compare: the message names the input, the rule and the value."""


class ExperimentError(MLOpsConfigError):
    """An experiment that cannot be analysed as asked: a missing variant, too few outcomes, a bad setting."""


class SpecError(MLOpsError, ValueError):
    """A training spec is invalid: unknown class, bad hyperparameter, missing data. Nothing was launched."""


class PolicyError(MLOpsError, ValueError):
    """A routing policy that cannot work, with the field, the rule and the value."""


class BatchPredictionError(MLOpsError, ValueError):
    """The partition or the model cannot be scored: the message names which and why."""


class RowError(MLOpsError, ValueError):
    """A request row the model cannot take: ``loc`` is the path of the field, ``msg`` the reason."""

    def __init__(self, loc: Sequence[str | int], msg: str, value: Any = None) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {msg}")
        self.loc, self.msg, self.value = list(loc), msg, value


class DeploymentError(MLOpsError, ValueError):
    """A deployment request that cannot be carried out; the old routing keeps serving."""


class NoEarlierDeployment(DeploymentError):
    """A rollback of an endpoint already at its oldest deployment (the server answers 409)."""


class EndpointUnavailable(MLOpsError, LookupError):
    """An endpoint whose deployment could not be loaded (the server answers 503 with the reason)."""


class UnknownEndpoint(MLOpsError, LookupError):
    """No deployment under this name."""


class UnknownPrediction(MLOpsError, LookupError):
    """Feedback for a prediction id the server does not remember."""


class GovernanceError(MLOpsError, ValueError):
    """A transition that the rules do not allow (names the version, its state and the transition)."""


class TriggerEventError(MLOpsError):
    """A deferred task resumed with an event whose status is not ``success`` (or with none)."""
