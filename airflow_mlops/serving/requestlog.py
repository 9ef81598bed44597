"""The request log: every prediction and every feedback, written to Parquet off the request path.

No Airflow import. Requests append records to a queue; a writer thread turns them into Parquet
files ``<root>/<kind>/date=YYYY-MM-DD/part-<time>-<host>-<pid>-<random>-<n>.parquet``. The root is
a local folder (each file written under a temporary name and renamed) or an object store URI such
as ``s3://bucket/requests`` (each file one PUT, which a reader sees whole or not at all; fsspec's
credentials: the environment, e.g. ``AWS_ENDPOINT_URL`` and the AWS variables, or the instance's
role). Either way a reader never sees half a file, and host and pid in the name let several
replicas share one log (the scale-out stack's do). It flushes every ``flush_rows`` records or
``flush_seconds``, and on ``close()``. Each prediction has an id (``prediction_id``) that ground
truth or feedback can later be joined to.

If the queue is full (the disk is slower than the traffic for long), the request is not slowed:
the records are counted in ``dropped`` and the ``/metrics`` page shows it; nothing is dropped
silently.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = (
    "prediction_id",
    "at",
    "endpoint",
    "variant",
    "model",
    "version",
    "role",
    "request_key",
    "features",
    "probability",
    "output",
    "latency_ms",
)
FEEDBACK_COLUMNS = ("prediction_id", "at", "endpoint", "variant", "reward")


class RequestLog:
    """A background Parquet writer for prediction and feedback records."""

    def __init__(
        self,
        root: str | Path,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 2.0,
        max_queued: int = 1_000_000,
    ) -> None:
        import fsspec

        self.root = str(root).rstrip("/")
        self.fs, self.path = fsspec.core.url_to_fs(self.root)
        self.local = "file" in _protocols(self.fs)
        if self.local:
            Path(self.path).mkdir(parents=True, exist_ok=True)
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(maxsize=max_queued)
        self.dropped = 0
        self.written = 0
        self._sequence = 0
        # Unique among the writers of one folder: replicas on several hosts, or several in one process.
        self._writer = f"{socket.gethostname().replace('-', '_')}-{os.getpid()}-{secrets.token_hex(3)}"
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def append(self, kind: str, record: Mapping[str, Any]) -> None:
        """Queue one record (``kind``: ``predictions`` or ``feedback``); never blocks the caller."""
        try:
            self.queue.put_nowait((kind, dict(record)))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued so far and stop the writer."""
        self.queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: dict[str, list[dict[str, Any]]] = {}
        deadline = time.monotonic() + self.flush_seconds
        while True:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                due = True  # the flush interval passed
            else:
                if item is None:
                    self._flush(pending)
                    return
                kind, record = item
                pending.setdefault(kind, []).append(record)
                due = sum(len(v) for v in pending.values()) >= self.flush_rows
            if due:
                self._flush(pending)
                pending = {}
                deadline = time.monotonic() + self.flush_seconds

    def _flush(self, pending: Mapping[str, list[dict[str, Any]]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        for kind, records in pending.items():
            if not records:
                continue
            now = datetime.now(UTC)
            folder = f"{self.path}/{kind}/date={now:%Y-%m-%d}"
            self._sequence += 1
            target = f"{folder}/part-{now:%H%M%S%f}-{self._writer}-{self._sequence:06d}.parquet"
            try:
                table = pa.Table.from_pylist(records)
                if self.local:
                    temporary = Path(folder) / f".{Path(target).name}.tmp"
                    try:
                        Path(folder).mkdir(parents=True, exist_ok=True)
                        pq.write_table(table, temporary)
                        os.replace(temporary, target)
                    finally:
                        temporary.unlink(missing_ok=True)
                else:
                    with self.fs.open(target, "wb") as stream:  # one PUT: whole or absent
                        pq.write_table(table, stream)
                self.written += len(records)
            except Exception:  # a failed write must not end the writer; the records are counted
                log.exception("request log: could not write %d %s records to %s", len(records), kind, target)
                self.dropped += len(records)


def read_log(
    root: str | Path, kind: str = "predictions", *, since: Any = None, until: Any = None, fs: Any = None
) -> Any:
    """The records of one kind as a DataFrame (empty if there is none yet).

    ``root`` is the log's folder or object store URI, or with ``fs`` (an fsspec filesystem: an
    Airflow task passes its ``ObjectStoragePath``'s ``fs`` and ``path``, which carry the
    connection's credentials) the path on that filesystem. ``since``/``until`` (datetimes) read only the daily
    partitions that can hold records made between them: a partition is named by its flush time, a
    few seconds after the records, so the day after ``until`` is read too (callers filter on ``at``)."""
    import fsspec
    import pandas as pd

    fs, path = fsspec.core.url_to_fs(str(root)) if fs is None else (fs, str(root))
    fs.invalidate_cache()  # the log grows: an object store's cached listings would miss new parts
    first = since.date().isoformat() if since is not None else ""
    last = (until + timedelta(days=1)).date().isoformat() if until is not None else "9999-12-31"
    files = sorted(
        f
        for f in fs.glob(f"{str(path).rstrip('/')}/{kind}/date=*/part-*.parquet")
        if first <= f.rsplit("/", 2)[-2].removeprefix("date=") <= last
    )
    if not files:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS if kind == "predictions" else FEEDBACK_COLUMNS))
    frames = []
    for name in files:
        with fs.open(name, "rb") as stream:
            frames.append(pd.read_parquet(stream))
    return pd.concat(frames, ignore_index=True)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
