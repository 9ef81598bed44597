"""Where a DAG's runs put things: small helpers the reference DAGs use and a user's DAGs can too.

No heavy import (DAG files use these at parse time or inside light tasks).
"""

from __future__ import annotations

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
