"""Object storage for tasks and for the processes they start without Airflow (the training driver
and its workers).

In a task, :func:`object_path` gives a ``pathlib.Path`` for a local path and an
``ObjectStoragePath`` with the task's connection for an object store URI; :func:`uri_of` names
either as a URI, and :func:`local_folder` gives a model folder as local files (downloaded from an
object store into a scratch folder for the block).

A task reaches the lake through ``ObjectStoragePath`` and an Airflow connection; the processes it
starts have no connections. :func:`fsspec_environment` turns the connection into fsspec's own
configuration variable (``FSSPEC_S3``: key, secret, token, endpoint and region), which every fsspec
filesystem the child creates reads at import, so ``UPath("s3://...")`` there reaches the same bucket
with the same credentials. The variables go only into the child's environment, never into a spec
file, a log line or XCom.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_mlops.exceptions import MLOpsConfigError

#: URI schemes whose credentials :func:`fsspec_environment` hands on (the amazon provider's).
S3_SCHEMES = ("s3://", "s3a://", "s3n://")


def fsspec_environment(conn_id: str | None, uris: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that give a child process the object store of ``uris`` (what each
    is, e.g. ``{"training_set": "s3://..."}``) through the Airflow connection ``conn_id``.

    Local paths need nothing (an empty mapping). ``s3://`` URIs take an ``aws`` connection; without
    one the child uses the default AWS credential chain of its machine. Another scheme is refused,
    naming the argument and its value, because its credentials would silently be missing."""
    remote = {what: uri for what, uri in uris.items() if "://" in uri and not uri.startswith("file://")}
    if not remote:
        return {}
    other = {what: uri for what, uri in remote.items() if not uri.startswith(S3_SCHEMES)}
    if other:
        what, uri = next(iter(other.items()))
        raise MLOpsConfigError(
            f"{what} {uri!r}: object storage for training must be s3:// (an aws connection); "
            "other schemes have no credentials to hand to the training processes"
        )
    if conn_id is None:
        return {}
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=conn_id)
    credentials = hook.get_credentials()
    options: dict[str, object] = {"key": credentials.access_key, "secret": credentials.secret_key}
    if credentials.token:
        options["token"] = credentials.token
    endpoint = hook.conn_config.get_service_endpoint_url(service_name="s3")
    if endpoint:
        options["endpoint_url"] = endpoint
    if hook.conn_region_name:
        options["client_kwargs"] = {"region_name": hook.conn_region_name}
    return {"FSSPEC_S3": json.dumps(options)}


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """``variables`` set in this process for the block (and fsspec's configuration reloaded), then
    the previous values back: for checks in the task process that read what the child will."""
    import fsspec.config

    def reload() -> None:
        fsspec.config.conf.clear()
        fsspec.config.set_conf_files(fsspec.config.conf_dir, fsspec.config.conf)
        fsspec.config.set_conf_env(fsspec.config.conf)

    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    reload()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reload()


def is_remote(uri: str) -> bool:
    """True for an object store URI (``s3://...``); False for a path or a ``file://`` URI."""
    return "://" in uri and not uri.startswith("file://")


def local_path(location: str | Path, what: str = "path") -> Path:
    """The ``pathlib.Path`` of a local path or ``file://`` URI (percent-escapes decoded, as
    ``Path.as_uri`` writes them): the one place a ``file://`` URI becomes a path. An object store
    URI is refused naming ``what``: code that needs local files takes a path object instead, or
    downloads first (:func:`local_folder`)."""
    from urllib.parse import unquote, urlsplit

    if isinstance(location, Path):
        return location
    if is_remote(location):
        raise MLOpsConfigError(
            f"{what} {location!r}: a local path or file:// URI is needed here (an object store's files "
            "are read through a path object, or downloaded first)"
        )
    if not location.startswith("file:"):
        return Path(location)
    parts = urlsplit(location)  # file:///srv/x; a host part other than localhost reads as a relative folder
    host = "" if parts.netloc in ("", "localhost") else parts.netloc
    return Path(unquote(host + parts.path))


def object_path(uri: str, conn_id: str | None) -> Any:
    """Where a task reads or writes ``uri``: a ``pathlib.Path`` for a local path or ``file://`` URI,
    an ``ObjectStoragePath`` through the connection ``conn_id`` for an object store URI."""
    if not is_remote(str(uri)):
        return local_path(uri)
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(str(uri), conn_id=conn_id)


def split_path(uri: str, manifest_uri: str, conn_id: str | None) -> Any:
    """A training set split's file named in a manifest: an object store URI through the connection;
    a local one, possibly relative to the manifest's folder, as ``training.spec.manifest_path``
    resolves it."""
    from airflow_mlops.training.spec import manifest_path

    return object_path(uri, conn_id) if is_remote(uri) else manifest_path(uri, manifest_uri)


def uri_of(path: Any) -> str:
    """The URI of a path :func:`object_path` gave (``file:///...`` or ``s3://bucket/key``, without
    the connection id ``ObjectStoragePath`` keeps in its own string form)."""
    return path.resolve().as_uri() if isinstance(path, Path) else str(path.as_uri())


@contextmanager
def local_folder(path: Any) -> Iterator[Path]:
    """A folder as local files for the block: a local folder as it is; an object store prefix
    downloaded (streamed, object by object) into a scratch folder that is removed after."""
    if isinstance(path, Path):
        yield path
        return
    from airflow_mlops.artifacts import download_folder

    with tempfile.TemporaryDirectory(prefix="airflow-mlops-fetch-") as scratch:
        download_folder(path, Path(scratch))
        yield Path(scratch)
