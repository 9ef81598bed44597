"""``python -m airflow_mlops.training <spec.json> [--nproc-per-node N ...]``: the driver, or a torchrun worker."""

import sys

from .launch import main

sys.exit(main())
