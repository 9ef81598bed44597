"""``python -m airflow_mlops.training <spec.json> [--nproc-per-node N ...]``: the driver, or a torchrun worker."""

import sys

from airflow_mlops.cli import exit_without_teardown_collections

from .launch import main

code = main()
exit_without_teardown_collections()  # the model is written and logged: seconds saved per process
sys.exit(code)
