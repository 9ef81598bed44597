"""SQLAlchemy engines from Airflow connections, through the connection type's own DB-API hook."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from airflow_mlops.exceptions import SourceConnectionError

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


def get_sqlalchemy_engine(conn_id: str) -> Engine:
    """Build a SQLAlchemy engine for the Airflow connection ``conn_id``.

    The connection type's provider hook (``SqliteHook``, ``PostgresHook``, ...) builds the URL, so
    credentials stay in the connection and are never logged here.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

    try:
        connection = BaseHook.get_connection(conn_id)
    except (AirflowNotFoundException, AirflowRuntimeError) as err:
        raise SourceConnectionError(
            f"Airflow connection {conn_id!r} is not defined (rule: source databases are Airflow connections); "
            f"add it with `airflow connections add {conn_id} ...` or an AIRFLOW_CONN_{conn_id.upper()} variable"
        ) from err
    try:
        hook = connection.get_hook()
        engine = hook.get_sqlalchemy_engine()
    except (AttributeError, ImportError, NotImplementedError, ValueError) as err:
        raise SourceConnectionError(
            f"Airflow connection {conn_id!r} of type {connection.conn_type!r} cannot give a SQLAlchemy engine "
            f"(rule: the connection type's provider hook must support get_sqlalchemy_engine): {err}"
        ) from err
    log.debug("Engine for connection %s: dialect %s", conn_id, engine.dialect.name)
    return engine
