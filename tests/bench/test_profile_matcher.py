"""The matcher profile: the per-thread clock (CPU and thread switches land on the role of the thread
that spent them, counted from ``start`` only) and the sampled stage timer."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from appliance.bench.profile_matcher import (NETWORK_ROLE, OTHER, REQUEST_BATCHES, StageTimer, ThreadClock,
                                             split_inline)
from appliance.workers import QueueWorker

SWITCHES = 200
BATCHES = 80


def test_cpu_and_switches_are_counted_per_role_from_start():
    turn, done, release = threading.Event(), threading.Event(), threading.Event()

    def spin_and_wait() -> None:  # CPU, then many waits: each is a switch of the thread's own
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
        for _ in range(SWITCHES):
            turn.wait()
            turn.clear()
        done.set()
        release.wait()  # alive until the clock stops: a thread that ended is no longer enumerated

    clock = ThreadClock()
    worker = threading.Thread(target=spin_and_wait, name="matcher-1-worker")
    clock.start()
    worker.start()
    while not done.is_set():
        turn.set()
        time.sleep(0.0005)
    seconds = clock.stop()
    release.set()
    worker.join()
    assert seconds["request worker"] >= 0.04
    waited, preempted = clock.switches["request worker"]
    assert waited >= SWITCHES // 2 and preempted >= 0
    assert clock.switches[OTHER][0] > 0  # this test's own thread slept between the turns


def test_a_thread_running_before_start_counts_only_what_came_after():
    stop = threading.Event()
    before = threading.Thread(target=lambda: stop.wait(), name="matcher-1-events")
    before.start()
    end = time.thread_time() + 0.02
    while time.thread_time() < end:  # this thread's CPU before start is not the run's
        pass
    clock = ThreadClock()
    clock.start()
    seconds = clock.stop()
    stop.set()
    before.join()
    assert seconds["event worker"] < 0.01 and seconds[OTHER] < 0.01
    assert clock.switches["event worker"] == (0, 0)


def test_request_batches_the_network_thread_ran_are_a_row_of_their_own():
    seconds = {NETWORK_ROLE: 3.0, "event worker": 0.5}
    split = split_inline(seconds, 2.0)
    assert split == {NETWORK_ROLE: 1.0, REQUEST_BATCHES: 2.0, "event worker": 0.5}
    assert sum(split.values()) == sum(seconds.values()) and seconds[NETWORK_ROLE] == 3.0  # the input is kept


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class _Replica:
    """The parts of a composed replica ``StageTimer`` wraps: each stage burns a known CPU time, and
    a real inline ``QueueWorker`` runs the batches (its batch count picks the sampled ones)."""

    STAGE_S = 0.0002

    def __init__(self) -> None:
        stage = lambda *args, **kwargs: _spin(self.STAGE_S)  # noqa: E731
        self.gate = SimpleNamespace(admit=stage)
        self.courier = SimpleNamespace(seal=stage, send=stage)
        worker = QueueWorker("replica-worker", self.handle, 100, handle_batch=self.handle_batch, max_batch=4)
        worker.attach(lambda: None)
        self.requests = SimpleNamespace(gate=self.gate, courier=self.courier, liveness_check=None, search=stage,
                                        admit=stage, audit=stage, route=SimpleNamespace(worker=worker),
                                        handle_batch=self.handle_batch)
        self.worker = worker

    def handle(self, item: int) -> None:
        self.handle_batch([item])

    def handle_batch(self, items: list[int]) -> None:
        handler = self.requests
        for _ in items:
            handler.gate.admit()
        handler.search()
        for _ in items:
            handler.admit()
            handler.courier.seal()
            handler.courier.send()
            handler.audit()


def test_stage_timer_times_about_one_batch_in_every_and_averages_over_their_requests():
    replica = _Replica()
    timer = StageTimer(replica, every=4, seed=17).install()
    sizes = [1 + batch % 4 for batch in range(BATCHES)]  # batches of 1 to 4 requests, in turn
    for size in sizes:
        for item in range(size):
            replica.worker.put(item)
        assert replica.worker.run_due() == size
    sampled_batches = timer.calls["search"]  # one search per batch
    assert BATCHES / 4 * 0.6 <= sampled_batches <= BATCHES / 4 * 1.4
    assert timer.sampled_requests == timer.calls["seal"] == timer.calls["audit"]
    assert sampled_batches <= timer.sampled_requests <= 4 * sampled_batches
    stages = timer.per_request_us(replica.worker.handled, replica.worker.busy_cpu_s)
    stage_us = _Replica.STAGE_S * 1e6
    for stage in ("open", "access", "seal", "publish", "audit"):  # once per request
        assert stage_us * 0.9 <= stages[stage] <= stage_us * 3, stage
    assert stages["liveness"] == 0.0  # no liveness check composed: no calls


def test_stage_timer_leaves_another_threads_calls_untimed():
    replica = _Replica()
    timer = StageTimer(replica, every=1).install()
    replica.worker.put(1)
    replica.worker.run_due()
    calls = dict(timer.calls)
    elsewhere = threading.Thread(target=replica.requests.courier.seal)  # e.g. a credential request's seal
    elsewhere.start()
    elsewhere.join()
    assert dict(timer.calls) == calls
    assert StageTimer(replica).per_request_us(0, 0.0) == {}
    with pytest.raises(ValueError):
        StageTimer(replica, every=0)
