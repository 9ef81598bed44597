"""After a deployment the server exempts what is alive from the cyclic collector (``gc.freeze``);
the next deployment unfreezes first, so the cycles an earlier model left behind are still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from airflow_mlops.serving.server import settle_heap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process goes on with its collector as before


def test_live_objects_are_frozen_and_a_later_deployment_collects_what_the_earlier_left(
    unfrozen: None,
) -> None:
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    kept = Node()  # a model of the first deployment
    settle_heap()
    assert gone() is None and gc.get_freeze_count() > 0  # collected, then what lives is frozen
    old = weakref.ref(kept)
    del kept  # the first deployment replaced: its cycle is garbage, but frozen
    gc.collect()
    assert old() is not None  # frozen objects are never collected...
    settle_heap()
    assert old() is None  # ...until the next deployment unfreezes them first
