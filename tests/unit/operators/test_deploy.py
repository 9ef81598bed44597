"""DeployModelOperator's arguments and its plan (what to deploy, given what the endpoint serves)."""

from __future__ import annotations

import pytest

from airflow_mlops.operators.deploy import DeployModelOperator

V1, V2 = {"name": "m", "version": "1"}, {"name": "m", "version": "2"}


def operator(**arguments) -> DeployModelOperator:
    return DeployModelOperator(task_id="deploy", endpoint="e", **arguments)


def test_the_plan_follows_what_the_endpoint_serves() -> None:
    canary = operator(model_name="m", version="2", canary_weight=0.1)
    assert canary.plan(None) == ("first", {"main": V2}, {"kind": "single"})
    serving_v1 = {"variants": {"main": V1}, "policy": {"kind": "single"}}
    assert canary.plan(serving_v1) == (
        "canary",
        {"main": V1, "candidate": V2},
        {"kind": "canary", "primary": "main", "candidate": "candidate", "weight": 0.1},
    )
    assert (
        canary.plan({"variants": {"main": V2}, "policy": {"kind": "single"}})[0] == "replace"
    )  # already served
    mid_canary = {"variants": {"main": V1, "candidate": V2}, "policy": {"kind": "canary", "primary": "main"}}
    assert operator(model_name="m", version="3", canary_weight=0.2).plan(mid_canary)[1]["main"] == V1
    assert operator(model_name="m", version="2").plan(serving_v1) == (
        "replace",
        {"main": V2},
        {"kind": "single"},
    )
    following = operator(model_name="m", alias="champion")
    assert following.plan(serving_v1) == (
        "replace",
        {"main": {"name": "m", "alias": "champion"}},
        {"kind": "single"},
    )
    explicit = operator(variants={"a": V1, "b": V2}, policy={"kind": "ab"})
    assert explicit.plan(serving_v1) == ("policy", {"a": V1, "b": V2}, {"kind": "ab"})


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "give model_name and version, or variants and policy"),
        (
            {"model_name": "m", "version": "2", "canary_weight": 1.0},
            r"canary_weight must be within \(0, 1\), got 1.0",
        ),
        (
            {"model_name": "m", "version": "2", "canary_weight": 0},
            r"canary_weight must be within \(0, 1\), got 0",
        ),
        (
            {"model_name": "m", "version": "2", "alias": "champion"},
            r"deploy: give version or alias, not both",
        ),
        (
            {"model_name": "m", "alias": "champion", "canary_weight": 0.1},
            r"a canary compares two fixed versions; give version, not alias 'champion'",
        ),
        (
            {"model_name": "m", "version": "2", "log_fields": "flight_id"},
            r"deploy: log_fields must be a list of field names, got 'flight_id'",
        ),
    ],
)
def test_arguments_that_cannot_work_fail_at_parse_time(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        operator(**arguments)


def test_an_empty_templated_version_is_named() -> None:
    with pytest.raises(ValueError, match="version of 'm' is empty"):
        operator(model_name="m", version="").plan(None)
