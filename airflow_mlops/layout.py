"""Where a DAG's runs put things: small helpers the reference DAGs use and a user's DAGs can too.

No heavy import (DAG files use these at parse time or inside light tasks).
"""

from __future__ import annotations

from collections.abc import Sequence

#: A run's own folder name, templated: the run id with ``:`` and ``+`` (which object stores and some
#: file systems refuse) replaced, e.g. ``f"{lake}/models/churn/{RUN_FOLDER}"``.
RUN_FOLDER = "{{ run_id | replace(':', '_') | replace('+', '_') }}"


def partition_periods(folder_uri: str, conn_id: str | None = None, suffix: str = ".parquet") -> list[str]:
    """The periods that have a partition in ``folder_uri`` (``<folder>/<period><suffix>``, e.g. every
    validated month ``YYYY-MM``), sorted; a folder that does not exist has none. ``conn_id`` is
    the object storage's connection (``s3://`` folders)."""
    from airflow.sdk import ObjectStoragePath

    folder = ObjectStoragePath(folder_uri.rstrip("/"), conn_id=conn_id)
    if not folder.exists():
        return []
    return sorted(path.name.removesuffix(suffix) for path in folder.iterdir() if path.name.endswith(suffix))


def within(uri: str, root: str) -> bool:
    """Whether ``uri`` lies inside ``root`` (or is it): the same scheme and bucket, and a path under
    the root's once ``.`` and ``..`` are resolved (local paths also through symbolic links), so
    ``<lake>/raw/../../etc/passwd`` is outside the lake however it is spelt."""
    import posixpath
    from pathlib import Path
    from urllib.parse import urlsplit

    from airflow_mlops.storage import is_remote, local_path

    def local(text: str) -> Path | None:
        return None if is_remote(text) else local_path(text).resolve()

    here, there = local(uri), local(root)
    if here is not None or there is not None:
        return here is not None and there is not None and here.is_relative_to(there)
    a, b = urlsplit(uri), urlsplit(root)
    if (a.scheme, a.netloc) != (b.scheme, b.netloc):
        return False
    path, top = posixpath.normpath("/" + a.path), posixpath.normpath("/" + b.path)
    return top == "/" or path == top or path.startswith(top + "/")


def confine(uri: str, roots: Sequence[str], what: str) -> None:
    """A ``TargetError`` naming ``what``, the URI and the roots unless ``uri`` lies inside one of
    ``roots`` (:func:`within`); data operators call it before they read, write or move anything."""
    from airflow_mlops.exceptions import TargetError

    if not any(within(uri, root) for root in roots if root):
        raise TargetError(
            f"{what} {uri!r}: must lie inside {list(roots)} (rule: data is read, written and moved only "
            "under the lake, the landing folder and [mlops] data_roots)"
        )
