"""Validate a Parquet partition with a Great Expectations suite; quarantine it, with its report, when it fails."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_mlops.data.suites import SuiteSpec
from airflow_mlops.extras import ExtraMixin
from airflow_mlops.lineage import LineageMixin
from airflow_mlops.links import ValidationReportLink, report_url

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_mlops.data.quarantine import PartitionFiles
    from airflow_mlops.data.validation import Validation, ValidationReport

#: The XCom key of the quarantined rows' URI (the plugin's Data view reads it).
QUARANTINED_XCOM = "quarantined_uri"


class DataValidationOperator(ExtraMixin, LineageMixin, BaseOperator):
    """Check one Parquet partition against an expectation suite before anything downstream reads it.

    The partition's bytes are read once; the report records their SHA-256, so it says exactly
    what was checked. Suite problems (unreadable file, unknown expectation, bad arguments, missing
    parameters) fail the task before any data is read.

    - **Pass**: the partition is copied to ``validated_target`` (or left in place when that is not
      given) with a manifest, and the report is written beside it as ``<stem>.report.json`` and
      ``<stem>.report.html``. Either way the task instance's "Validation report" link opens the HTML
      report.
    - **Fail**: the report goes to ``<quarantine_dir>/<sha256[:12]>/`` and the partition (with
      its manifest) is moved there: kept, never deleted, one folder per distinct content. The task
      fails without retries (the result would not change) with a message listing every failing
      expectation: column, rule, unexpected count and sample values. Downstream does not run.
    - **Row-level mode** (``max_invalid_fraction``): when every failure concerns individual rows and
      at most that fraction of rows fail, the valid rows go to ``validated_target`` and the invalid
      rows to ``<quarantine folder>/<stem>.invalid.parquet``; both are counted in the report.

    :param partition: URI of the Parquet partition (templated), e.g. from an upstream XCom.
    :param suite: a suite file path (``.json``/``.yaml``, GX layout; templated) or a ``SuiteSpec``.
    :param suite_parameters: values of the suite's ``$PARAMETER`` placeholders (templated).
    :param validated_target: URI the validated partition is written to (templated); required in
        row-level mode (default there: ``<partition folder>/_validated/<name>``).
    :param quarantine_dir: folder for failed partitions and their reports (templated); default
        ``<partition folder>/_quarantine/<stem>``.
    :param storage_conn_id: Airflow connection for the object storage (e.g. ``aws_default``).
    :param reference_profile: URI of a reference profile (a dataset's ``profile.json`` or an
        earlier report, templated): the partition's distributions are compared with it.
    :param drift_columns: the columns compared with the reference (default: all shared ones).
    :param drift_thresholds: per-column thresholds (PSI for numeric, Jensen-Shannon for categorical).
    :param fail_on_drift: treat a drifted column as a failure (default: report it only).
    :param max_invalid_fraction: enables row-level mode with this bound on the invalid fraction.
    :param data_roots: the URIs the partition, ``validated_target`` and ``quarantine_dir`` must lie inside,
        checked before anything is read or moved (default: the lake, the landing folder and
        ``[mlops] data_roots``); a path outside them, however spelt, is a ``TargetError``.

    XCom: the report's URI (``return_value``), ``validated_uri``, and ``quarantined_uri`` when rows
    went to quarantine (the failed partition's quarantined copy, also when the task fails, or the
    row-level split's ``.invalid.parquet``); the plugin's Data view shows those rows.
    OpenLineage: the partition as input with data-quality facets (column metrics of its profile, one
    assertion per expectation); as output the validated partition with its schema, or the
    quarantined copy (also when the task fails).
    Assets: on success, every Asset in ``outlets`` gets an event whose ``extra`` holds ``uri`` (the
    validated partition), ``source_uri``, ``rows``, ``sha256``, ``suite``, ``report_uri``,
    ``statistics`` (per-column nulls, min, max, mean or distinct count), ``drifted_columns`` and,
    in row-level mode, ``invalid_rows`` and ``invalid_uri``.
    """

    required_extra: ClassVar[str | None] = "validation"

    template_fields: Sequence[str] = (
        "partition",
        "suite",
        "suite_parameters",
        "validated_target",
        "quarantine_dir",
        "reference_profile",
    )
    template_fields_renderers = {"suite_parameters": "json"}
    ui_color = "#fdf3e8"
    operator_extra_links = (ValidationReportLink(),)

    def __init__(
        self,
        *,
        partition: str,
        suite: str | SuiteSpec,
        suite_parameters: Mapping[str, Any] | None = None,
        validated_target: str | None = None,
        quarantine_dir: str | None = None,
        storage_conn_id: str | None = None,
        reference_profile: str | None = None,
        drift_columns: Sequence[str] | None = None,
        drift_thresholds: Mapping[str, float] | None = None,
        fail_on_drift: bool = False,
        max_invalid_fraction: float | None = None,
        data_roots: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_roots = data_roots
        self.partition = partition
        self.suite = suite
        self.suite_parameters = suite_parameters
        self.validated_target = validated_target
        self.quarantine_dir = quarantine_dir
        self.storage_conn_id = storage_conn_id
        self.reference_profile = reference_profile
        self.drift_columns = drift_columns
        self.drift_thresholds = drift_thresholds
        self.fail_on_drift = fail_on_drift
        self.max_invalid_fraction = max_invalid_fraction

    def execute(self, context: Context) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops import settings
        from airflow_mlops.data.quarantine import REPORT_HTML, REPORT_JSON, PartitionFiles
        from airflow_mlops.data.suites import load_suite
        from airflow_mlops.data.validation import check_suite, validate_partition
        from airflow_mlops.exceptions import DataValidationFailed, TargetError
        from airflow_mlops.layout import confine
        from airflow_mlops.templating import require_rendered

        require_rendered(self, mappings=("suite_parameters",))

        # GX logs every expectation's defaults at INFO; the task log keeps our findings readable.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        suite = self.suite if isinstance(self.suite, SuiteSpec) else load_suite(self.suite)
        check_suite(suite, self.suite_parameters)  # before any data is read
        if not self.partition.endswith(".parquet"):
            raise TargetError(f"partition {self.partition!r}: must name a .parquet file")
        for argument in ("partition", "quarantine_dir", "validated_target"):
            value = getattr(self, argument) or ""
            if ".." in value.replace("\\", "/").split("/"):
                raise TargetError(
                    f"{argument} {value!r}: must not contain '..' segments (nothing is read or moved "
                    "outside the folders a task names)"
                )
            if value:
                confine(
                    value, self.data_roots if self.data_roots is not None else settings.data_roots(), argument
                )
        files = PartitionFiles(
            self.partition, self._path, self.quarantine_dir or "", self.validated_target or ""
        )
        partition = self._path(self.partition)
        if not partition.exists():
            # A retry after a failure: the partition is already in quarantine with its report.
            reports = files.quarantined_reports()
            if reports:
                raise AirflowFailException(
                    f"partition {self.partition} was already quarantined; reports: {reports}"
                )
            raise TargetError(f"partition {self.partition!r}: does not exist")
        if partition.is_dir():
            raise TargetError(f"partition {self.partition!r}: is a folder, not a Parquet file")

        with partition.open("rb") as handle:
            data = handle.read()
        validation = validate_partition(
            data,
            self.partition,
            suite,
            parameters=self.suite_parameters,
            reference_profile=self._reference(),
            drift_columns=self.drift_columns,
            drift_thresholds=self.drift_thresholds,
            fail_on_drift=self.fail_on_drift,
            max_invalid_fraction=self.max_invalid_fraction,
        )
        report = validation.report
        if not report.success:
            location = files.location(report)
            moved = files.quarantine(report)
            self.log.error("Quarantined %s at %s", self.partition, location)
            self.record_lineage(lambda: self._lineage(report, [moved]))
            if self.validated_target and self._path(self.validated_target).exists():
                self.log.warning(
                    "An earlier validated version of this partition stays at %s (downstream keeps "
                    "reading it until a new version passes)",
                    self.validated_target,
                )
            ValidationReportLink.persist(context, report_url(f"{location}/{REPORT_HTML}"))
            context["ti"].xcom_push(key=QUARANTINED_XCOM, value=moved)
            error = DataValidationFailed(
                report.failure_message(location), report_uri=f"{location}/{REPORT_JSON}"
            )
            self.log.error("%s", error)
            raise AirflowFailException(str(error)) from error
        for divergence in report.drifted:
            self.log.warning(
                "Drift from the reference: %s %s=%.3f (threshold %s)",
                divergence["column"],
                divergence["metric"],
                divergence["value"],
                divergence["threshold"],
            )
        return self._accept(context, files, validation, data)

    def _path(self, uri: str) -> ObjectStoragePath:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(uri, conn_id=self.storage_conn_id)

    def _reference(self) -> dict[str, Any] | None:
        if not self.reference_profile:
            return None
        path = self._path(self.reference_profile)
        if not path.exists():
            from airflow_mlops.exceptions import TargetError

            raise TargetError(f"reference_profile {self.reference_profile!r}: does not exist")
        record = json.loads(path.read_text())
        # A dataset's profile.json, or a validation report that carries one.
        return record if "columns" in record else record["profile"]

    def _accept(self, context: Context, files: PartitionFiles, validation: Validation, data: bytes) -> str:
        from airflow_mlops.monitoring.statistics import summarize_profile

        report = validation.report
        accepted = files.accept(validation, data)
        extra: dict[str, Any] = {}
        if accepted.invalid_uri is not None:
            extra.update(invalid_rows=accepted.invalid_rows, invalid_uri=accepted.invalid_uri)
            context["ti"].xcom_push(key=QUARANTINED_XCOM, value=accepted.invalid_uri)
            self.log.warning(
                "Row-level split: %d valid rows to %s, %d invalid rows to %s",
                accepted.rows,
                accepted.target,
                accepted.invalid_rows,
                accepted.invalid_uri,
            )
        self.record_lineage(lambda: self._lineage(report, accepted.outputs))
        ValidationReportLink.persist(context, report_url(accepted.report_html_uri))
        self.log.info(
            "Validated %s (%d rows) against suite %s: report %s",
            self.partition,
            accepted.rows,
            report.suite,
            accepted.report_uri,
        )
        context["ti"].xcom_push(key="validated_uri", value=accepted.target)
        extra.update(
            uri=accepted.target,
            source_uri=self.partition,
            rows=accepted.rows,
            sha256=accepted.sha256,
            suite=report.suite,
            report_uri=accepted.report_uri,
            statistics=summarize_profile(report.profile or {"columns": {}}),
            drifted_columns=[d["column"] for d in report.drifted],
        )
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        return accepted.report_uri

    def _lineage(self, report: ValidationReport, outputs: list[str]) -> tuple[list[Any], list[Any]]:
        from airflow_mlops.lineage import data_quality_facets, parquet_columns, schema_facet, storage_name

        source = (*storage_name(self.partition), data_quality_facets(json.loads(report.to_json())))
        return [source], [
            (*storage_name(uri), {"schema": schema_facet(parquet_columns(self._path(uri)))})
            for uri in outputs
        ]
