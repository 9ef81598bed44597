"""``python -m airflow_mlops.training <spec.json>``: run one training spec (under torchrun for DDP)."""

import sys

from .runtime import main

sys.exit(main())
