"""The queue worker: items in order, batches of what is already waiting, the capacity counts."""
from __future__ import annotations

import math
import threading
import time

import pytest

from appliance.workers import QueueWorker, Sojourns
from polling import wait_for


def test_a_batch_worker_takes_what_is_waiting_at_once_and_a_lone_item_alone():
    singles, batches = [], []
    worker = QueueWorker("w", singles.append, 100, handle_batch=batches.append, max_batch=4)
    for item in range(6):
        assert worker.put(item)
    worker.start()
    try:
        assert wait_for(lambda: worker.handled == 6)
        assert batches == [[0, 1, 2, 3], [4, 5]]  # in order, never more than max_batch
        worker.put(6)
        assert wait_for(lambda: singles == [6])  # nothing else waiting: no batch, no wait for company
    finally:
        worker.stop()
    assert worker.batches == 3 and worker.waited_s > 0 and worker.busy_s >= 0
    assert worker.thread_id is not None and worker.thread_id != threading.get_ident()


def test_a_failed_batch_is_counted_and_the_worker_goes_on():
    handled = []

    def broken(items):
        raise RuntimeError("a bug")

    worker = QueueWorker("w", handled.append, 10, handle_batch=broken, max_batch=8)
    worker.put(1)
    worker.put(2)
    worker.start()
    try:
        assert wait_for(lambda: worker.stats["internal_error"] == 1)
        worker.put(3)
        assert wait_for(lambda: handled == [3])
    finally:
        worker.stop()


def test_queued_items_run_on_the_calling_thread_when_asked_and_a_full_queue_drops():
    handled = []
    worker = QueueWorker("w", handled.append, 2)
    assert worker.put("a") and worker.put("b") and not worker.put("c")
    assert worker.stats["dropped_overload"] == 1
    assert worker.run_queued_here() == 2 and handled == ["a", "b"] and worker.depth == 0


def test_a_batch_size_needs_a_batch_handler():
    with pytest.raises(ValueError):
        QueueWorker("w", print, 10, max_batch=8)


def test_a_gather_window_batches_a_busy_stream_and_never_delays_a_lone_item():
    batches: list[list[int]] = []
    worker = QueueWorker("w", lambda item: batches.append([item]), 1000, handle_batch=batches.append,
                         max_batch=64, gather_s=5.0)
    worker.start()
    try:
        worker.put(0)  # nothing known of the rate yet: handled at once, not after the window
        assert wait_for(lambda: worker.handled == 1, timeout=2.0)
    finally:
        worker.stop()

    batches.clear()
    busy = QueueWorker("w", lambda item: batches.append([item]), 1000, handle_batch=batches.append,
                       max_batch=16, gather_s=0.05)
    busy.start()
    try:
        for item in range(200):  # ~500 items/s: ~25 expected within a window, so it gathers
            busy.put(item)
            time.sleep(0.002)
        assert wait_for(lambda: busy.handled == 200)
    finally:
        busy.stop()
    assert [item for batch in batches for item in batch] == list(range(200))  # in order, none lost
    assert max(len(batch) for batch in batches) <= 16  # bounded by max_batch
    assert busy.batches <= 200 / 4  # without the window a batch is what happened to wait: ~1


def test_a_gather_window_needs_batches_and_a_sane_length():
    with pytest.raises(ValueError):
        QueueWorker("w", print, 10, handle_batch=print, max_batch=8, gather_s=-0.1)
    with pytest.raises(ValueError):
        QueueWorker("w", print, 10, gather_s=0.01)


def test_sojourns_give_percentiles_to_the_millisecond_and_a_window_of_a_run():
    sojourns = Sojourns(buckets=100)
    assert math.isnan(sojourns.percentile_ms(95))  # nothing counted yet
    for ms in range(1, 101):  # 0.5 ms, 1.5 ms ... 99.5 ms: one in each bucket
        sojourns.record((ms - 0.5) / 1000)
    assert sojourns.percentile_ms(50) == 50.0 and sojourns.percentile_ms(95) == 95.0
    before = list(sojourns.counts)
    for _ in range(10):
        sojourns.record(30.0)  # beyond the last bucket: counted in it
    sojourns.record(-1.0)  # a clock step back: the first bucket, never an error
    window = sojourns.since(before)
    assert sum(window.counts) == 11 and window.percentile_ms(50) == 100.0 and window.percentile_ms(1) == 1.0


def test_a_worker_counts_each_items_time_from_put_to_the_end_of_its_batch():
    worker = QueueWorker("sojourns", lambda item: time.sleep(0.02), limit=10).start()
    try:
        for item in range(3):
            worker.put(item)
        assert wait_for(lambda: worker.handled == 3)
    finally:
        worker.stop()
    assert sum(worker.sojourns.counts) == 3
    assert worker.sojourns.percentile_ms(100) >= 60  # the third waited for the two before it


def test_an_attached_worker_has_no_thread_and_runs_due_batches_on_the_callers():
    batches, wakes = [], []
    worker = QueueWorker("w", lambda item: batches.append([item]), 100, handle_batch=batches.append, max_batch=3)
    worker.attach(lambda: wakes.append(1))
    worker.start()  # no thread: the loop it is attached to runs it
    assert worker.due() is None and worker.run_due() == 0
    for item in range(5):
        assert worker.put(item)
    assert len(wakes) == 5  # each put cuts the loop's wait short
    assert worker.due() <= time.monotonic()  # no gather window: due at once
    assert worker.run_due() == 3 and worker.run_due() == 2 and worker.run_due() == 0
    assert batches == [[0, 1, 2], [3, 4]] and worker.thread_id == threading.get_ident()
    assert worker.handled == 5 and worker.batches == 2 and worker.busy_cpu_s >= 0 and worker.waited_s > 0
    worker.stop()


def test_an_attached_worker_waits_for_company_only_while_items_come_fast():
    batches = []
    worker = QueueWorker("w", lambda item: batches.append([item]), 100, handle_batch=batches.append, max_batch=64,
                         gather_s=0.05)
    worker.attach(lambda: None)
    worker.put(0)
    assert worker.run_due() == 1  # no arrival rate yet: a lone item is never held
    for _ in range(5):  # a busy stream: the rate grows past two items per window
        for item in range(20):
            worker.put(item)
        worker.run_due()
        time.sleep(0.002)
    while worker.due() is not None:  # what the busy stream left, taken as it falls due
        worker.run_due()
    worker.put(99)
    due = worker.due()
    assert due is not None and due > time.monotonic()  # held for company, up to the window
    assert worker.run_due() == 0
    assert wait_for(lambda: worker.run_due() == 1, timeout=1.0)  # and run once the window closes


def test_a_worker_already_on_its_own_thread_cannot_be_attached():
    worker = QueueWorker("w", lambda item: None, 10).start()
    try:
        with pytest.raises(RuntimeError, match="own thread"):
            worker.attach(lambda: None)
    finally:
        worker.stop()
