"""Errors raised by airflow-mlops; each message names the input, the rule and the offending value."""

from __future__ import annotations


class MLOpsError(Exception):
    """Base class of every error this package raises on purpose."""


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
    """A file dropped into the landing zone is not a valid month of flights."""


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


class TrainingError(MLOpsError):
    """The training processes failed; the message ends with their last output lines."""


class ModelServerError(MLOpsError):
    """The model server refused a request or could not be reached (status and detail in the message)."""
