"""``python -m airflow_mlops.training <spec.json> [--nproc-per-node N ...]``: the driver, or a torchrun worker."""

import gc
import sys

from .launch import main

code = main()
# The model is written and logged. Freeze the heap so the interpreter's teardown does not walk it:
# with torch, Lightning and MLflow's SQL store loaded its final collections took 4 to 9 s per
# process on two cores (the operating system frees the memory; atexit handlers still run).
gc.freeze()
sys.exit(code)
