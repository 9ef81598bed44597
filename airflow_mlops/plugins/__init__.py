"""The Airflow plugin of airflow-mlops (entry point ``airflow.plugins``); UI pages come with later capabilities."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class MLOpsPlugin(AirflowPlugin):
    """Registers airflow-mlops with Airflow's plugin manager."""

    name = "airflow_mlops"
