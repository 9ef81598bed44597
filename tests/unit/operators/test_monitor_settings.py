"""The drift monitor's attribution settings are checked when the DAG is parsed, naming the value."""

from __future__ import annotations

import pytest

from airflow_mlops.exceptions import MLOpsConfigError
from airflow_mlops.operators.monitor import DriftMonitorOperator


def drift(**attribution: object) -> DriftMonitorOperator:
    return DriftMonitorOperator(
        task_id="drift",
        endpoint="flight_delay",
        request_log="/srv/requests",
        report_dir="/srv/reports",
        model_name="flight_delay",
        attribution_sample=100,
        **attribution,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("name", ["attribution_share_threshold", "attribution_psi_threshold"])
@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "0.1", True, None])
def test_an_attribution_threshold_that_is_not_a_positive_number_is_refused(name: str, bad: object) -> None:
    with pytest.raises(MLOpsConfigError, match=rf"drift: {name} must be a positive number, got {bad!r}"):
        drift(**{name: bad})


def test_positive_thresholds_are_kept() -> None:
    kept = drift(attribution_share_threshold=0.05, attribution_psi_threshold=1)
    assert (kept.attribution_share_threshold, kept.attribution_psi_threshold) == (0.05, 1)
