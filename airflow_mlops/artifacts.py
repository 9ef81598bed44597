"""Artifact records: the URI, content hash, parents and metadata of everything the pipeline writes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

MANIFEST_SUFFIX = ".manifest.json"


@dataclass(frozen=True)
class Artifact:
    """One artifact of the pipeline (a dataset partition, a report, a model...).

    ``parents`` lists the URIs this artifact was derived from, so lineage can be walked back.
    ``metadata`` holds small JSON-able facts (row count, schema, query); never data.
    """

    uri: str
    sha256: str
    kind: str
    parents: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        record = asdict(self)
        record["parents"] = list(self.parents)
        return json.dumps(record, indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> Artifact:
        record = json.loads(text)
        record["parents"] = tuple(record.get("parents", ()))
        return cls(**record)


class HashingWriter:
    """A binary file wrapper that computes the SHA-256 of everything written through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self._position = 0
        self._aborted = False
        self.closed = False

    def abort(self) -> None:
        """Drop every later write: the output is being thrown away (e.g. a writer's footer on error)."""
        self._aborted = True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        if self._aborted:
            return view.nbytes
        self._hash.update(view)
        self._raw.write(view)
        self._position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        # The underlying file is owned (and closed) by whoever opened it.
        self.closed = True

    @property
    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def write_atomically(path: Any, data: bytes | str) -> str:
    """Write ``data`` to a temporary name beside ``path`` and rename it into place; returns its SHA-256.

    ``path`` is an ``ObjectStoragePath``, ``UPath`` or ``pathlib.Path``. Readers see the old file or
    the whole new one, never a partial write; a failed write removes its temporary file.
    """
    import uuid

    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        with temp.open("wb") as handle:
            handle.write(raw)
        temp.rename(path)
    except BaseException:
        if temp.exists():
            temp.unlink()
        raise
    return hashlib.sha256(raw).hexdigest()


def write_parquet_atomically(path: Any, frame: Any) -> str:
    """Write a DataFrame as one Parquet file, whole or not at all (see ``write_atomically``); returns its SHA-256."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return write_atomically(path, buffer.getvalue())


def upload_folder(folder: Any, target: Any) -> None:
    """Every file of a local folder to the same relative keys under ``target`` (an object store
    path: ``UPath`` or ``ObjectStoragePath``), streamed in 8 MiB pieces."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        destination = target.joinpath(*path.relative_to(folder).parts)
        with path.open("rb") as source, destination.open("wb") as sink:
            while chunk := source.read(8 << 20):
                sink.write(chunk)


def download_folder(source: Any, folder: Any) -> int:
    """Every object under ``source`` (an object store path) to the same relative paths under the
    local ``folder``, streamed; returns how many. An empty prefix raises ``ArtifactNotFoundError``
    (a ``FileNotFoundError``) naming it: a model folder that is not there is an error, not an
    empty model."""
    from airflow_mlops.exceptions import ArtifactNotFoundError

    fs, prefix = source.fs, source.path.rstrip("/")
    keys = [key for key in fs.find(prefix) if not key.endswith("/")]
    if not keys:
        raise ArtifactNotFoundError(f"{source.as_uri()}: no objects under this prefix")
    for key in keys:
        target = folder.joinpath(*key[len(prefix) + 1 :].split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open(key, "rb") as src, target.open("wb") as sink:
            while chunk := src.read(8 << 20):
                sink.write(chunk)
    return len(keys)
