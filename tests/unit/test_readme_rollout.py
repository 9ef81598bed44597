"""The README's infra validation, stepwise rollout and experiment analysis examples, extracted and
run as a DAG file is parsed: the operators they name exist with those arguments (their behaviour:
test_serving)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readmes_release_example_builds_its_dag() -> None:
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
        if "StepwiseRolloutOperator(" in b
    ]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    infra, rollout = namespace["infra"], namespace["rollout"]
    assert infra.dag.dag_id == "release_flight_delay" and rollout.upstream_task_ids == {"infra_validate"}
    assert infra.limits == {"max_p99_ms": 250, "max_rss_mb": 2048, "startup_timeout_s": 120.0}
    assert infra.endpoint == "flight_delay" and infra.champion_alias == "champion"
    assert rollout.steps == [0.05, 0.25, 0.5, 1.0] and rollout.require_infra_blessing is True
    assert rollout.criteria["min_requests"] == 200 and rollout.deferrable is True


def test_the_readmes_experiment_analysis_example_builds_its_operator() -> None:
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
        if "ExperimentAnalysisOperator(" in b
    ]
    from airflow.sdk import DAG

    namespace: dict = {}

    with DAG("readme_experiment", schedule=None) as dag:
        exec(compile(block, "README.md", "exec"), namespace)
    (analysis,) = dag.tasks
    assert analysis.control == "a" and analysis.metric == "reward" and analysis.min_effect == 0.02
    assert analysis.gate["rules"][0] == {"experiment": "probability_better", "min": 0.95}
    assert analysis.mlflow_experiment == "flight_delay-experiments"
