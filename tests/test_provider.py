"""The installed distribution registers with Airflow as a provider and as a plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_airflow_providers_list_shows_airflow_mlops(airflow_db) -> None:
    out = subprocess.run(
        [AIRFLOW, "providers", "list", "-o", "plain"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    assert "airflow-mlops" in out.stdout


def test_airflow_plugins_lists_the_plugin(airflow_db) -> None:
    out = subprocess.run(
        [AIRFLOW, "plugins", "-o", "plain"], capture_output=True, text=True, check=True, env=os.environ.copy()
    )
    assert "airflow_mlops" in out.stdout
