"""The scan's garbage-collector settings: raised thresholds inside, restored after."""

from __future__ import annotations

import gc
import weakref

from scanner.gc_policy import SCAN_THRESHOLDS, bulk_collector


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_thresholds_raised_and_startup_objects_frozen_inside() -> None:
    before = gc.get_threshold()
    with bulk_collector():
        assert gc.get_threshold() == SCAN_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_during_a_scan_are_still_collected() -> None:
    with bulk_collector():
        ref = weakref.ref(_Node())
        assert ref() is not None  # a cycle: reference counting alone does not free it
        gc.collect()
        assert ref() is None


def test_settings_restored_when_the_scan_raises() -> None:
    before = gc.get_threshold()
    try:
        with bulk_collector():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
