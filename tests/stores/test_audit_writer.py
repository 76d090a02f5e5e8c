"""Group commit when commits fail: nothing nobody waited for is dropped while the process runs.

``commit`` here is a function standing in for the database only in that it can be told to fail
the way a full disk makes SQLite fail; the real store on a real full file system is
``test_full_disk.py``."""
from __future__ import annotations

import errno
import threading
import time

import pytest

from appliance.errors import ApplianceError
from appliance.stores.audit_writer import GroupCommit
from polling import wait_for

RECORDS = 50
IDLE_S = 3600.0  # no idle ticks in these tests
LINGER_S = 0.01
TIMEOUT_S = 10.0


class Disk:
    """Keeps what commits wrote; while ``full``, a commit writes nothing and raises."""

    def __init__(self):
        self.full = False
        self.written: list[int] = []
        self.attempts = 0
        self.gate = threading.Event()  # cleared: a commit waits (the disk is slow) until it is set
        self.gate.set()
        self._lock = threading.Lock()

    def commit(self, records: list[int]) -> list[int]:
        self.gate.wait()
        with self._lock:
            self.attempts += 1
            if self.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written.extend(records)
            return records


def room_made(disk: Disk, group: GroupCommit[int, int], expected: list[int]) -> None:
    """The disk has room again: ``expected`` is written (by the retry), then the writer closes."""
    disk.full = False
    assert wait_for(lambda: disk.written == expected, TIMEOUT_S), disk.written
    group.close()


def writer(disk: Disk, **options) -> GroupCommit[int, int]:
    return GroupCommit("test-writer", disk.commit, lambda: None, IDLE_S, linger_s=LINGER_S, **options).start()


def test_records_nobody_waited_for_survive_a_full_disk_in_order_and_once(quick_retries):
    disk = Disk()
    group = writer(disk, max_batch=8)
    disk.full = True
    for n in range(RECORDS):
        group.submit(lambda n=n: n, wait=False)
    assert wait_for(lambda: group.failure is not None and group.failure.attempts >= 3, TIMEOUT_S)
    failure = group.failure
    assert "No space left on device" in failure.error and failure.since <= time.time()
    assert disk.written == [] and group.depth == RECORDS  # every record still queued, none dropped
    state = group.state()  # what the matcher's heartbeat carries
    assert state["queued"] == RECORDS and state["failing_since"] == failure.since and state["failures"] >= 3
    disk.full = False
    assert wait_for(lambda: disk.written == list(range(RECORDS)), TIMEOUT_S), disk.written
    assert group.failure is None and group.state() == {"queued": 0, "failing_since": 0.0, "failures": 0, "error": ""}
    group.close()
    assert group.stats["lost_unacknowledged"] == 0 and group.stats["failed_batches"] >= 3
    assert group.stats["entries"] == RECORDS  # the head batch was tried again, then the rest in turn


def test_a_waiting_caller_gets_the_error_and_the_others_are_kept(quick_retries):
    disk = Disk()
    group = writer(disk)
    disk.full = True
    group.submit(lambda: 1, wait=False)
    with pytest.raises(OSError, match="No space left"):
        group.submit(lambda: 2, wait=True)  # this caller knows: it may tell its user
    room_made(disk, group, [1])  # at the next retry


def test_a_caller_queued_behind_a_failing_batch_is_told_and_the_retries_keep_their_pace(quick_retries):
    disk = Disk()
    group = writer(disk, max_batch=4)
    disk.full, disk.gate = True, threading.Event()  # the first commit hangs until the caller is queued
    for n in range(20):
        group.submit(lambda n=n: n, wait=False)
    told: list[BaseException] = []

    def wait_for_commit() -> None:  # queued behind four failing batches' worth of records
        try:
            group.submit(lambda: 99, wait=True)
        except OSError as exc:
            told.append(exc)

    caller = threading.Thread(target=wait_for_commit, daemon=True)
    caller.start()
    assert wait_for(lambda: group.depth == 20 - 4 + 1, TIMEOUT_S)  # one batch in the commit, the caller queued
    disk.gate.set()
    caller.join(TIMEOUT_S)
    assert not caller.is_alive() and "No space left" in str(told[0])
    attempts = disk.attempts
    time.sleep(0.3)
    assert disk.attempts - attempts <= 5  # at the retry pace (0.05, 0.1, 0.2 s), not in a busy loop
    room_made(disk, group, list(range(20)))


def test_retries_back_off_while_the_failure_lasts(quick_retries):
    disk = Disk()
    group = writer(disk)
    disk.full = True
    group.submit(lambda: 1, wait=False)
    time.sleep(1.0)  # pauses 0.05, 0.1, 0.2, 0.2 ...: about 7 tries, not one per linger (100)
    assert 3 <= disk.attempts <= 9, disk.attempts
    room_made(disk, group, [1])


def test_flush_returns_while_the_disk_is_full(quick_retries):
    disk = Disk()
    group = writer(disk)
    disk.full = True
    group.submit(lambda: 1, wait=False)
    flushed = threading.Thread(target=group.flush, daemon=True)
    flushed.start()
    flushed.join(TIMEOUT_S)
    assert not flushed.is_alive()  # a reader of the log (the console) must not hang on a full disk
    assert disk.written == [] and group.failure is not None
    disk.full = False
    group.close()
    assert disk.written == [1]


def test_closing_while_still_failing_counts_what_it_could_not_keep(quick_retries):
    disk = Disk()
    group = writer(disk)
    disk.full = True
    for n in range(5):
        group.submit(lambda n=n: n, wait=False)
    closed = threading.Thread(target=group.close, daemon=True)
    closed.start()
    closed.join(TIMEOUT_S)
    assert not closed.is_alive() and disk.written == []
    assert group.stats["lost_unacknowledged"] == 5


def test_a_full_queue_holds_submitters_back_instead_of_dropping(quick_retries):
    disk = Disk()
    group = writer(disk, max_batch=4, max_queued=8)
    disk.full = True
    for n in range(8):
        group.submit(lambda n=n: n, wait=False)
    held = threading.Thread(target=group.submit, args=(lambda: 8, False), daemon=True)
    held.start()
    time.sleep(0.5)
    assert held.is_alive() and group.stats["backpressure_waits"] >= 1  # waits for room, drops nothing
    disk.full = False
    held.join(TIMEOUT_S)
    group.close()
    assert disk.written == list(range(9))



def test_closing_while_failing_tries_once_more_when_the_last_resort_makes_room(quick_retries):
    disk = Disk()
    calls = []

    def last_resort() -> bool:  # as deleting the reserve does
        calls.append(1)
        disk.full = False
        return True

    group = writer(disk, max_batch=2, last_resort=last_resort)
    disk.full = True
    for n in range(5):
        group.submit(lambda n=n: n, wait=False)
    assert wait_for(lambda: group.failure is not None, TIMEOUT_S)
    group.close()
    assert disk.written == [0, 1, 2, 3, 4] and calls == [1]
    assert group.stats["lost_unacknowledged"] == 0


def test_a_last_resort_that_makes_no_room_is_tried_once_and_the_rest_counted_lost(quick_retries):
    disk = Disk()
    calls = []
    group = writer(disk, max_batch=2, last_resort=lambda: calls.append(1) is not None)  # no room made
    disk.full = True
    for n in range(5):
        group.submit(lambda n=n: n, wait=False)
    assert wait_for(lambda: group.failure is not None, TIMEOUT_S)
    group.close()
    assert disk.written == [] and calls == [1] and group.stats["lost_unacknowledged"] == 5


def test_with_nothing_kept_the_first_caller_after_the_pause_is_the_retry(quick_retries):
    """Only callers that wait failed (the console's entries): nothing is kept for a retry, so
    the next such caller, after the pause, is let through to try - once room is made it
    succeeds and the failure is over, instead of every caller being refused until the idle tick."""
    disk = Disk()
    group = writer(disk)
    disk.full = True
    with pytest.raises(OSError, match="No space left"):
        group.submit(lambda: 1, wait=True)
    disk.full = False  # room made
    with pytest.raises(ApplianceError, match="failing since"):
        group.submit(lambda: 2, wait=True)  # within the pause: refused at once, no try
    assert disk.attempts == 1
    time.sleep(0.1)  # the first pause (0.05 s) is over
    assert group.submit(lambda: 3, wait=True) == 3 and group.failure is None
    assert group.submit(lambda: 4, wait=True) == 4
    group.close()
    assert disk.written == [3, 4]


def test_while_the_disk_stays_full_callers_try_at_the_pace_of_the_pauses(quick_retries):
    disk = Disk()
    group = writer(disk)
    disk.full = True
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # a caller in a tight loop (a script retrying at once)
        with pytest.raises((OSError, ApplianceError)):
            group.submit(lambda: 1, wait=True)
    assert 3 <= disk.attempts <= 9, disk.attempts  # pauses 0.05, 0.1, 0.2, 0.2 ...: not one try per call
    group.close()
