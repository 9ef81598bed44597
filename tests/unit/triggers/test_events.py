"""A deferred task resumes only on a successful event; anything else fails it with the reason."""

from __future__ import annotations

import pytest

from airflow_mlops.exceptions import MLOpsError, TriggerEventError
from airflow_mlops.triggers import check_event


def test_a_successful_event_is_returned_as_it_came() -> None:
    assert check_event({"status": "success", "decision": "approved"}, "approval") == {
        "status": "success",
        "decision": "approved",
    }


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (None, r"canary of e: the trigger ended without an event"),
        (
            {"status": "error", "message": "HTTP 503"},
            r"canary of e: the trigger reported status 'error': HTTP 503",
        ),
        ({"decision": "approved"}, r"reported status None: \{'decision': 'approved'\}"),
    ],
)
def test_other_events_fail_with_the_wait_and_the_reason(event, message: str) -> None:
    with pytest.raises(TriggerEventError, match=message) as raised:
        check_event(event, "canary of e")
    assert isinstance(raised.value, MLOpsError)
