# airflow-mlops: the two commands are `make demo` and `make test`; everything else is set-up they call.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export AIRFLOW_HOME := $(CURDIR)/.airflow
# torch is pinned to the CPU build 2.13.0: from a local wheel folder where the machine has one,
# else from PyTorch's CPU index. A GPU user installs their own torch after `make venv`.
TORCH_WHEELS ?= /opt/wheels
TORCH_SOURCE := $(if $(wildcard $(TORCH_WHEELS)/torch-2.13.0+cpu-*.whl),--find-links $(TORCH_WHEELS),--extra-index-url https://download.pytorch.org/whl/cpu)

.PHONY: demo test venv home lint lock bench clean ui openapi

demo: home ## run the reference pipeline end to end on the embedded default
	$(BIN)/python -m devtools demo

# Two workers (pytest-xdist), one module (group) at a time each: most slow tests wait on servers and the
# scheduler; tests/conftest.py groups the modules.
TEST_WORKERS ?= 2
test: lint ## lint, format and type checks, then the whole test suite (unit + integration)
	$(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): nothing matched PYTEST_ARGS"; exit 0; fi; exit $$rc

venv: $(VENV)/.installed

# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set (as on some CI images) Python
# would otherwise compile every imported module from source in every process (Airflow's import alone
# took 12.5 s instead of 7.4 s on a 2-core VM, and the suite starts hundreds of such processes).
$(VENV)/.installed: requirements/lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --python $(BIN)/python --compile-bytecode --index-strategy unsafe-best-match $(TORCH_SOURCE) requirements/lock.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 airflow_mlops devtools dags > /dev/null
	touch $@

home: venv ## project-local AIRFLOW_HOME: config, migrated SQLite DB, connections (the flights source included)
	$(BIN)/python -m devtools home --home $(AIRFLOW_HOME) --data-dir $(CURDIR)/data

lint: venv ## ruff (lint and format) and mypy; any finding fails
	$(BIN)/ruff check airflow_mlops devtools dags tests benchmarks
	$(BIN)/ruff format --check airflow_mlops devtools dags tests benchmarks
	$(BIN)/mypy

bench: home
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/extract.py --lake s3
	$(BIN)/python benchmarks/validate.py
	$(BIN)/python benchmarks/validate.py --lake s3
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/evaluate.py
	$(BIN)/python benchmarks/serve.py
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/load.py

lock: ## re-resolve requirements/lock.txt from pyproject.toml and requirements/pins.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra postgres --extra celery -c requirements/pins.txt \
	  --python-version 3.11 --index-strategy unsafe-best-match $(TORCH_SOURCE) --no-header -o requirements/lock.txt

ui: ## rebuild the React views' bundle (airflow_mlops/plugins/static/mlops.js) from ui/ and its lock file
	cd ui && npm ci --no-audit --no-fund && npm run build

openapi: venv ## regenerate docs/api/mlops-openapi.json, the OpenAPI schema of the plugin's /mlops API
	$(BIN)/python -c "import json; from airflow_mlops.plugins.api import create_app; \
	  print(json.dumps(create_app().openapi(), indent=2, sort_keys=True))" > docs/api/mlops-openapi.json

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME) $(CURDIR)/data
