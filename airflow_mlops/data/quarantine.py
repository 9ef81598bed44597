"""Where a validated partition goes: accepted beside its report, or quarantined with it (no Airflow import).

What ``DataValidationOperator`` decides, this module writes, through ``open_path`` (a URI ->
path-like factory: ``ObjectStoragePath`` with the task's connection, or ``pathlib`` in tests). Every
file is written atomically (a temporary name, then a rename), and a report is written before the
data it describes moves, so whatever sits in quarantine has its report beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_mlops.data.validation import Validation, ValidationReport

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


@dataclass(frozen=True)
class Accepted:
    """An accepted partition: where its validated rows and report are, and what a row split left out."""

    target: str
    report_uri: str
    report_html_uri: str
    rows: int
    sha256: str
    invalid_rows: int | None = None
    invalid_uri: str | None = None
    outputs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PartitionFiles:
    """The files of one partition under validation.

    :param partition: the partition's URI (``.../<stem>.parquet``).
    :param open_path: URI -> a path with ``open``, ``exists``, ``rename`` (``ObjectStoragePath``).
    :param quarantine_dir: where failed partitions and invalid rows go (default ``<folder>/_quarantine/<stem>``).
    :param validated_target: where accepted rows go (default: the partition itself, or
        ``<folder>/_validated/<name>`` after a row split).
    """

    partition: str
    open_path: Callable[[str], Any]
    quarantine_dir: str = ""
    validated_target: str = ""

    @property
    def folder(self) -> str:
        return self.partition.rsplit("/", 1)[0]

    @property
    def name(self) -> str:
        return self.partition.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.removesuffix(".parquet")

    def quarantine_root(self) -> str:
        return (self.quarantine_dir or f"{self.folder}/_quarantine/{self.stem}").rstrip("/")

    def location(self, report: ValidationReport) -> str:
        """The quarantine folder of this version of the partition (by its content hash)."""
        return f"{self.quarantine_root()}/{report.partition_sha256[:12]}"

    def quarantined_reports(self) -> list[str]:
        """Reports of earlier quarantined versions (a retry finds the partition already moved)."""
        return sorted(str(p) for p in self.open_path(self.quarantine_root()).glob(f"*/{REPORT_JSON}"))

    def write_report(
        self, report: ValidationReport, json_uri: str, html_uri: str, location: str | None
    ) -> None:
        from airflow_mlops.artifacts import write_atomically
        from airflow_mlops.data.validation import render_report_html

        write_atomically(self.open_path(json_uri), report.to_json())
        write_atomically(self.open_path(html_uri), render_report_html(report, location=location))

    def quarantine(self, report: ValidationReport) -> str:
        """Move the failed partition (and its manifest) into quarantine after its report; returns
        the quarantined partition's URI."""
        from airflow_mlops.artifacts import MANIFEST_SUFFIX

        location = self.location(report)
        self.write_report(report, f"{location}/{REPORT_JSON}", f"{location}/{REPORT_HTML}", location)
        moved = f"{location}/{self.name}"
        self.open_path(self.partition).rename(self.open_path(moved))
        manifest = self.open_path(self.partition + MANIFEST_SUFFIX)
        if manifest.exists():
            manifest.rename(self.open_path(moved + MANIFEST_SUFFIX))
        return moved

    def accept(self, validation: Validation, data: bytes) -> Accepted:
        """Write what passed: the whole partition (copied to ``validated_target`` if one is given),
        or, after a row-level split, the valid rows there and the invalid rows in quarantine with
        the report; each with a manifest naming the source partition, the suite and the report."""
        from airflow_mlops.artifacts import write_atomically

        report = validation.report
        split = report.row_split if report.row_split and report.row_split["accepted"] else None
        target = self.validated_target or (
            f"{self.folder}/_validated/{self.name}" if split else self.partition
        )
        stem_uri = target.removesuffix(".parquet")
        report_uri, report_html_uri = f"{stem_uri}.report.json", f"{stem_uri}.report.html"
        if split:
            assert validation.valid_rows is not None and validation.invalid_rows is not None
            location = self.location(report)
            invalid_uri = f"{location}/{self.stem}.invalid.parquet"
            self._write_frame(validation.invalid_rows, invalid_uri, report, "quarantined_rows", report_uri)
            self.write_report(report, f"{location}/{REPORT_JSON}", f"{location}/{REPORT_HTML}", location)
            sha256 = self._write_frame(
                validation.valid_rows, target, report, "validated_partition", report_uri
            )
            accepted = Accepted(
                target,
                report_uri,
                report_html_uri,
                len(validation.valid_rows),
                sha256,
                invalid_rows=len(validation.invalid_rows),
                invalid_uri=invalid_uri,
                outputs=[target, invalid_uri],
            )
        else:
            rows, sha256 = report.rows or 0, report.partition_sha256
            if target != self.partition:
                write_atomically(self.open_path(target), data)
                self._write_manifest(target, sha256, report, "validated_partition", report_uri, rows)
            accepted = Accepted(target, report_uri, report_html_uri, rows, sha256, outputs=[target])
        self.write_report(report, report_uri, report_html_uri, None)
        return accepted

    def _write_frame(self, frame: Any, uri: str, report: ValidationReport, kind: str, report_uri: str) -> str:
        from airflow_mlops.artifacts import write_parquet_atomically

        sha256 = write_parquet_atomically(self.open_path(uri), frame)
        self._write_manifest(uri, sha256, report, kind, report_uri, len(frame))
        return sha256

    def _write_manifest(
        self, uri: str, sha256: str, report: ValidationReport, kind: str, report_uri: str, rows: int
    ) -> None:
        from airflow_mlops.artifacts import MANIFEST_SUFFIX, Artifact, write_atomically

        artifact = Artifact(
            uri=uri,
            sha256=sha256,
            kind=kind,
            parents=(report.partition_uri,),
            metadata={
                "rows": rows,
                "suite": report.suite,
                "suite_sha256": report.suite_sha256,
                "report_uri": report_uri,
                "source_sha256": report.partition_sha256,
            },
        )
        write_atomically(self.open_path(uri + MANIFEST_SUFFIX), artifact.to_json())
