from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mcoflow.runtime import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    # CPython's defaults to start from (an in-process CLI test may have tuned them)
    thresholds = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_start_up_objects_and_collects_less_often() -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    # what start-up built (modules, classes, this test's objects) is out of later collections
    assert gc.get_freeze_count() > 1000
    assert gc.get_count()[0] < 700  # collected at start: the young generation is empty
    # cycles made afterwards are still collected
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
