"""Development tooling of this repository, not part of the provider: the flights demo, the
scale-out stack's process supervisor and the flights home (``python -m devtools --help``).

The flights application's package lives beside its DAGs (``dags/flights``); importing this
package puts the DAG folder on ``sys.path`` (and on ``PYTHONPATH``, for the model servers and
training drivers a benchmark starts by hand) so that ``flights`` imports as it does in Airflow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "dags"
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))
if str(DAGS) not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DAGS), os.environ.get("PYTHONPATH")]))
