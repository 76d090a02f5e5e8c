"""``heap.settle`` takes a service's start-up heap out of the full collections; objects are still
freed by their reference count, and ``thaw`` gives the collector everything back."""
from __future__ import annotations

import gc
import weakref

from appliance import heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_settle_freezes_what_is_alive_and_thaw_gives_it_back():
    kept = [_Node() for _ in range(1000)]
    try:
        frozen = heap.settle()
        assert frozen >= len(kept) and gc.get_freeze_count() == frozen
        tracked_before = len(gc.get_objects())
        gc.collect()  # a full pass no longer walks the frozen objects
        assert len(gc.get_objects()) < tracked_before + 100 and len(gc.get_objects()) < frozen
        lone = kept.pop()
        gone = weakref.ref(lone)
        del lone
        assert gone() is None  # its reference count freed it, frozen or not
    finally:
        heap.thaw()
    assert gc.get_freeze_count() == 0


def test_a_cycle_made_after_settling_is_still_collected():
    try:
        heap.settle()
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        del first, second
        gc.collect()
        assert gone() is None
    finally:
        heap.thaw()
