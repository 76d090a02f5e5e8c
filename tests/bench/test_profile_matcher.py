"""The matcher profile's per-thread clock: CPU and thread switches land on the role of the thread
that spent them, counted from ``start`` only."""
from __future__ import annotations

import threading
import time

from appliance.bench.profile_matcher import NETWORK_ROLE, OTHER, REQUEST_BATCHES, ThreadClock, split_inline

SWITCHES = 200


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
