"""Event trigger for AssetWatchers: a file dropped into a landing folder becomes an Asset event."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_mlops.exceptions import MLOpsConfigError

log = logging.getLogger(__name__)

CLAIMED_DIR = "_claimed"


class LandingFileTrigger(BaseEventTrigger):
    """Fire one event per file that appears in a landing folder, claiming it so it fires only once.

    Unlike the standard provider's ``FileDeleteTrigger`` (which deletes what it finds), nothing is
    lost: a file matching ``pattern`` directly inside ``directory`` is moved, with an atomic rename,
    into ``directory/_claimed/`` and the event names that claimed path. The DAG run that the event
    starts loads the file and moves it on (see ``LoadLandingFileOperator``). Hidden files (names
    starting with ``.``) are ignored, so producers can write ``.name.tmp`` and rename into place.
    A file must keep the same size and mtime over two polls before it is claimed, for producers
    that write in place.

    :param directory: absolute path of the landing folder.
    :param pattern: glob of the files to pick up, e.g. ``*.parquet``.
    :param poke_interval: seconds between scans.

    Event payload: ``{"uri": "file:///.../_claimed/name", "name", "bytes", "sha256"}``; the Asset
    event's ``extra`` carries it under ``payload``.
    """

    def __init__(self, *, directory: str, pattern: str = "*", poke_interval: float = 5.0) -> None:
        super().__init__()
        if not os.path.isabs(directory):
            raise MLOpsConfigError(
                f"LandingFileTrigger directory must be an absolute path, got {directory!r}"
            )
        if poke_interval <= 0:
            raise MLOpsConfigError(
                f"LandingFileTrigger poke_interval must be > 0 seconds, got {poke_interval!r}"
            )
        self.directory = directory
        self.pattern = pattern
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"directory": self.directory, "pattern": self.pattern, "poke_interval": self.poke_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        seen: dict[Path, tuple[int, int]] = {}
        while True:
            for event in await asyncio.to_thread(claim_ready_files, Path(self.directory), self.pattern, seen):
                log.info("Landing file claimed: %s", event["uri"])
                yield TriggerEvent(event)
            await asyncio.sleep(self.poke_interval)


def s3_landing_trigger(
    *, queue_url: str, aws_conn_id: str = "aws_default", poll_seconds: int = 5
) -> BaseEventTrigger:
    """The amazon provider's ``SqsSensorTrigger`` set up for S3 object-created notifications.

    Messages are deleted from the queue once the triggerer has them; the Asset event's
    ``extra["payload"]["message_batch"]`` keeps their bodies, so ``LoadLandingFileOperator``
    finds the ``s3://`` keys there. The provider is imported here, not at module import.
    """
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    return SqsSensorTrigger(
        sqs_queue=queue_url, aws_conn_id=aws_conn_id, waiter_delay=poll_seconds, max_messages=10
    )


def claim_ready_files(
    directory: Path, pattern: str, seen: dict[Path, tuple[int, int]]
) -> list[dict[str, Any]]:
    """Claim every file that kept its size and mtime since the last scan; return their payloads.

    ``seen`` carries (size, mtime) of files observed on the previous scan and is updated in place.
    """
    claimed_dir = directory / CLAIMED_DIR
    events = []
    current: dict[Path, tuple[int, int]] = {}
    for path in sorted(directory.glob(pattern)):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        signature = (stat.st_size, stat.st_mtime_ns)
        if seen.get(path) != signature:
            current[path] = signature  # new or still changing: look again next scan
            continue
        claimed_dir.mkdir(exist_ok=True)
        destination = claimed_dir / path.name
        if destination.exists():  # the same name dropped again before the first was loaded: keep both
            destination = claimed_dir / f"{stat.st_mtime_ns}-{path.name}"
        try:
            os.replace(path, destination)
        except FileNotFoundError:  # another triggerer claimed it first
            continue
        events.append(
            {
                "uri": destination.as_uri(),
                "name": path.name,
                "bytes": stat.st_size,
                "sha256": _sha256(destination),
            }
        )
    seen.clear()
    seen.update(current)
    return events


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
