"""Development tooling of this repository, not part of the provider: the flights demo, the
scale-out stack's process supervisor and the flights home (``python -m devtools --help``).

The flights application's package lives beside its DAGs (``dags/flights``); importing this
package puts the DAG folder on ``sys.path`` so that ``flights`` imports as it does in Airflow;
``export_python_path()`` also puts it on ``PYTHONPATH`` for the processes a command or a benchmark
starts by hand (model servers, training drivers).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))


def export_python_path() -> None:
    """The DAG folder on ``PYTHONPATH`` too, for the processes this one starts."""
    if str(DAGS) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DAGS), os.environ.get("PYTHONPATH")]))
