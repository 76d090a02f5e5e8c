"""Group commit: audit appends queued and written together, off the callers' threads.

Every audit entry used to be its own synchronously flushed transaction on the caller's thread,
so a flood of rejected messages made every other door wait for the disk. Here callers only
queue a record; one writer thread takes everything queued (up to ``max_batch``) and hands it
to ``commit`` as one transaction and one signed head. It writes at once when a caller is
waiting for durability, when the batch is full or when the oldest record has waited
``linger_s``; otherwise it lingers so that a burst becomes one write.

Durability is the caller's choice: ``submit(..., wait=True)`` returns only after the batch
holding its record is committed and its head signed (and raises what the commit raised);
``wait=False`` returns at once, and a killed process loses at most what was queued and not yet
acknowledged. ``flush`` and ``close`` write everything queued. The queue is bounded: past
``max_queued`` a submitter waits for room (back-pressure) or, if it must not wait (``block``
off), is refused - an entry is never dropped: the audit log never loses an entry silently.

A failed commit (a full disk, an I/O error) loses nothing either: a caller that waits gets the
error (and, while commits keep failing, ``STORE_UNWRITABLE`` at once, without queueing), and
the records nobody waited for go back to the head of the queue, in order, and are
tried again after ``RETRY_FIRST_S``, doubling to ``RETRY_MAX_S`` while the failure lasts (a
commit re-chains them from what the database holds, so a retry is safe). Meanwhile the queue
fills; then the matcher's request path, which does not block, is refused: doors stop getting
answers and decide from their caches, which queue their events on their own disks. ``failure``
says what failed and since when, for the heartbeat. Only a writer closed while it still fails
counts its records lost (``lost_unacknowledged``): the process is ending and cannot keep them -
unless its ``last_resort`` (the audit log's ``stores.reserve``, deleted) makes room for one more
try.

When nothing arrives for ``idle_every_s`` the thread calls ``idle`` (the audit log re-signs
its head, so a running site's head stays fresh). ``workers.QueueWorker`` hands items over one
at a time and drops what does not fit; a batch needs the whole queue and no drops, so this
builds on its ``StoppableThread`` instead.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from appliance.errors import ApplianceError, ErrorCode
from appliance.workers import StoppableThread

log = logging.getLogger(__name__)

Record = TypeVar("Record")
Result = TypeVar("Result")

GROUP_MAX_ENTRIES = 256  # entries in one transaction (one head signature)
# How long a record nobody waits for may wait for company. A group costs ~2 ms of CPU whatever
# its size (two fsyncs, two signatures: the tail checkpoint and the head) against ~15 us per
# entry: at 1,000 entries/s the writer took 94-103 us per entry with 20 ms groups (~25), 50 us
# with 50 ms (~53) and 34 us with 100 ms (~105). What a crash may lose is unchanged in kind -
# entries nobody waited for, the last ~0.1 s of them (the matcher's per-decision entries; a
# door's own pass takes longer than that): issue 17, docs/security.md.
GROUP_LINGER_S = 0.1
MAX_QUEUED = 10_000  # records queued before submitters wait for room
RETRY_FIRST_S = 0.5  # after a failed commit, its records nobody waited for are tried again this soon,
RETRY_MAX_S = 10.0  # doubling up to this while the failure lasts (a full disk: until room is made)
MAX_DOUBLINGS = 32  # of the pause: past RETRY_MAX_S long before, and a float however long the failure lasts


class WriterClosed(RuntimeError):
    """Appending to an audit log after ``close``."""


@dataclass(frozen=True)
class WriteFailure:
    """Commits failing now: the last error, how many in a row, since when (epoch seconds)."""

    error: str
    attempts: int
    since: float


class _Ticket(Generic[Record, Result]):
    __slots__ = ("record", "wanted", "queued_at", "done", "result", "error")

    def __init__(self, record: Record, wanted: bool):
        self.record, self.wanted, self.queued_at = record, wanted, time.monotonic()
        # only a caller that waits needs an event (making and setting one per entry cost the
        # matcher's hot path as much as the hash: issue 17)
        self.done = threading.Event() if wanted else None
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Record, Result]):
    def __init__(self, name: str, commit: Callable[[list[Record]], list[Result]], idle: Callable[[], object],
                 idle_every_s: float, *, max_batch: int = GROUP_MAX_ENTRIES, linger_s: float = GROUP_LINGER_S,
                 max_queued: int = MAX_QUEUED, last_resort: Callable[[], bool] | None = None):
        if max_batch < 1 or max_queued < max_batch or linger_s < 0 or idle_every_s <= 0:
            raise ValueError(f"{name}: batch {max_batch}, queue {max_queued}, linger {linger_s}, idle {idle_every_s}")
        self.name = name
        self._commit, self._idle = commit, idle
        self.idle_every_s, self.max_batch = idle_every_s, max_batch
        self.linger_s, self.max_queued = linger_s, max_queued
        self._cond = threading.Condition()
        self._queue: deque[_Ticket[Record, Result]] = deque()
        self._waiting = 0  # queued records whose caller waits: write now
        self._hurry = 0  # flush() calls in progress: write now
        self._busy = False
        self._closed = False
        self._last_write = time.monotonic()
        self._retry_at = 0.0  # monotonic: records kept from a failed commit are not tried before this
        self._failure: WriteFailure | None = None  # the failure in progress (None: the last commit worked)
        # closing while commits fail: called once; True when it made room (``stores.reserve``)
        self._last_resort = last_resort
        self._thread = StoppableThread(name, self._run)
        self.stats: Counter[str] = Counter()

    def start(self) -> "GroupCommit[Record, Result]":
        self._thread.start()
        return self

    def submit(self, make: Callable[[], Record], wait: bool, block: bool = True) -> Result | None:
        """Queue ``make()`` (called under the queue's lock, so records are made in queue order:
        timestamps follow sequence numbers). With ``wait``, the committed result. A full queue
        makes the caller wait for room; without ``block`` it raises ``STORE_UNWRITABLE`` instead
        (a thread that must keep running - the matcher's MQTT network thread - does not act
        on what it cannot record)."""
        with self._cond:
            if wait:
                self._refuse_while_failing()
            if not block and len(self._queue) >= self.max_queued and not self._closed:
                self.stats["refused_queue_full"] += 1
                raise ApplianceError(ErrorCode.STORE_UNWRITABLE, f"{self.name}: {len(self._queue)} entries already "
                                     "wait to be written" + (f" ({self._failure.error})" if self._failure else ""))
            while len(self._queue) >= self.max_queued and not self._closed:
                self.stats["backpressure_waits"] += 1
                self._cond.wait()
            if self._closed:
                raise WriterClosed(f"{self.name}: closed")
            ticket: _Ticket[Record, Result] = _Ticket(make(), wait)
            self._queue.append(ticket)
            self._waiting += wait
            # the writer needs waking only to start lingering (the queue was empty), to write
            # now (a waiter, a full batch); otherwise its linger timeout wakes it - no wake-up
            # (and no thread switch) per entry
            if wait or len(self._queue) == 1 or len(self._queue) >= self.max_batch:
                self._cond.notify_all()
        if ticket.done is None:
            return None
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def submit_many(self, makes: list[Callable[[], Record]]) -> list[Result]:
        """Queue every ``make()`` together (in order, nothing queued between them) and return
        their committed results; raises the first error of any batch that held one of them."""
        with self._cond:
            self._refuse_while_failing()
            while self.max_queued - len(self._queue) < min(len(makes), self.max_queued) and not self._closed:
                self.stats["backpressure_waits"] += 1
                self._cond.wait()
            if self._closed:
                raise WriterClosed(f"{self.name}: closed")
            tickets: list[_Ticket[Record, Result]] = [_Ticket(make(), True) for make in makes]
            self._queue.extend(tickets)
            self._waiting += len(tickets)
            self._cond.notify_all()
        for ticket in tickets:
            ticket.done.wait()  # type: ignore[union-attr]  # made waiting
        for ticket in tickets:
            if ticket.error is not None:
                raise ticket.error
        return [ticket.result for ticket in tickets]  # type: ignore[misc]

    def _refuse_while_failing(self) -> None:
        """A caller that waits for its commit is told at once while commits fail (under
        ``_cond``): its record would only queue behind the ones kept for the retry. With none
        kept, the first caller after the retry pause is let through: its commit is the retry
        (else, after room is made, every caller would be refused until the next idle tick)."""
        failure = self._failure
        if failure is not None and (self._queue or time.monotonic() < self._retry_at):
            self.stats["refused_while_failing"] += 1
            raise ApplianceError(ErrorCode.STORE_UNWRITABLE, f"{self.name}: failing since "
                                 f"{time.strftime('%H:%M:%S', time.localtime(failure.since))}, {failure.attempts} "
                                 f"failed commits ({failure.error}); {len(self._queue)} entries wait in memory for "
                                 "the retry")

    def flush(self) -> None:
        """Return when everything queued before this call is written, or at once while commits
        fail, or when one tried meanwhile fails: the records stay queued for the retry, and a
        full disk must not hang a reader of the log."""
        with self._cond:
            if self._failure is not None:
                return
            failed = self.stats["failed_batches"]
            self._hurry += 1
            self._cond.notify_all()
            try:
                while (self._queue or self._busy) and self.stats["failed_batches"] == failed:
                    self._cond.wait()
            finally:
                self._hurry -= 1

    def close(self) -> None:
        """Write what is queued, then stop the thread; later submits raise ``WriterClosed``."""
        with self._cond:
            if self._closed:
                return
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.stop()

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def failure(self) -> WriteFailure | None:
        """The commit failure in progress, None while commits work."""
        return self._failure

    def state(self) -> dict[str, object]:
        """For a daemon's heartbeat (``ops.health.check_audit``): records waiting, and the
        commit failure in progress (``failing_since`` 0: none)."""
        failure = self._failure
        return {"queued": len(self._queue), "failing_since": failure.since if failure else 0.0,
                "failures": failure.attempts if failure else 0, "error": failure.error if failure else ""}

    # -- the writer thread ------------------------------------------------------------
    def _run(self, stop: threading.Event) -> None:
        while True:
            batch = self._next_batch(stop)
            if batch is None:
                return
            try:
                if batch:
                    self._write(batch)
                else:
                    self._idle()
                    self._recovered()
            except Exception as exc:  # a failed idle tick (a full disk, a locked file) must not stop the writer
                log.exception("%s: idle work failed", self.name)
                with self._cond:
                    self._note_failure(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._last_write = time.monotonic()
                    self._cond.notify_all()

    def _next_batch(self, stop: threading.Event) -> list[_Ticket[Record, Result]] | None:
        """The next batch, [] for idle work, None to stop (closed and nothing queued)."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self._queue:
                    lingered = now - self._queue[0].queued_at
                    full = len(self._queue) >= self.max_batch or lingered >= self.linger_s
                    # a caller waiting, a flush or the end: now; a full or lingered batch, or a
                    # flush while commits fail: not before the retry time
                    if (self._waiting or (self._hurry and self._failure is None) or self._closed or stop.is_set()
                            or (full and now >= self._retry_at)):
                        batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                        self._waiting -= sum(t.wanted for t in batch)
                        self._busy = True
                        self._cond.notify_all()  # room for submitters held back
                        return batch
                    self._cond.wait((self._retry_at - now) if full else (self.linger_s - lingered))
                elif self._closed or stop.is_set():
                    return None
                elif now - self._last_write >= self.idle_every_s:
                    self._busy = True
                    return []
                else:
                    self._cond.wait(self.idle_every_s - (now - self._last_write))

    def _write(self, batch: list[_Ticket[Record, Result]]) -> None:
        try:
            results = self._commit([t.record for t in batch])
        except BaseException as exc:  # every waiter learns it; records nobody waited for are kept
            self._failed(batch, exc)
        else:
            for ticket, result in zip(batch, results):
                ticket.result = result
            self.stats["batches"] += 1
            self.stats["entries"] += len(batch)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
            self._recovered()
        finally:
            for ticket in batch:
                if ticket.done is not None:
                    ticket.done.set()

    def _failed(self, batch: list[_Ticket[Record, Result]], exc: BaseException) -> None:
        """Waiters get ``exc``; the rest go back to the head of the queue for a retry after a
        growing pause - or, when the writer is ending, are counted lost."""
        kept = [ticket for ticket in batch if not ticket.wanted]
        for ticket in batch:
            if ticket.wanted:
                ticket.error = exc
        rescued = bool(kept) and self._ending() and self._make_room()
        with self._cond:
            self.stats["failed_batches"] += 1
            # callers still queued behind this batch are told now too, as new ones are refused:
            # waiting for them would only retry the head of the queue without pause
            behind = [ticket for ticket in self._queue if ticket.wanted]
            if behind:
                self._queue = deque(ticket for ticket in self._queue if not ticket.wanted)
                self._waiting -= len(behind)
                for ticket in behind:
                    ticket.error = exc
                    ticket.done.set()  # type: ignore[union-attr]  # made waiting
            attempts = self._note_failure(exc).attempts
            pause = min(RETRY_MAX_S, RETRY_FIRST_S * 2.0 ** min(attempts - 1, MAX_DOUBLINGS))
            ending = self._ending() and not rescued
            self._retry_at = time.monotonic() + pause  # the kept records' retry, or the next waiting caller's try
            if kept and not ending:
                self._queue.extendleft(reversed(kept))
                self.stats["retried_entries"] += len(kept)
            else:
                self.stats["lost_unacknowledged"] += len(kept)
        if kept and ending:
            log.error("%s: %d audit entries lost: the writer is closing and the commit failed: %s",
                      self.name, len(kept), exc)
        elif attempts & (attempts - 1) == 0:  # the 1st, 2nd, 4th, 8th... failure in a row: not every retry
            log.error("%s: a batch of %d audit entries failed (%d in a row): %s; %d kept, tried again in %g s",
                      self.name, len(batch), attempts, exc, len(kept), pause)

    def _ending(self) -> bool:
        return self._closed or self._thread.stop_event.is_set()

    def _make_room(self) -> bool:
        """Closing while commits fail: the last resort, tried once (True: it made room, so the
        entries waiting are tried again rather than lost; the last resort logs what it did)."""
        last_resort, self._last_resort = self._last_resort, None
        if last_resort is None:
            return False
        try:
            return last_resort()
        except Exception:  # noqa: BLE001 - the entries are then counted lost, as without one
            log.exception("%s: the last resort failed", self.name)
            return False

    def _note_failure(self, exc: BaseException) -> WriteFailure:
        """Record a failed commit (under ``_cond``): the first sets ``since``, the next count up."""
        previous = self._failure
        error = exc.detail if isinstance(exc, ApplianceError) else str(exc) or type(exc).__name__  # no code twice
        self._failure = WriteFailure(error, 1 if previous is None else previous.attempts + 1,
                                     time.time() if previous is None else previous.since)
        return self._failure

    def _recovered(self) -> None:
        """A commit worked: the failure in progress, if any, is over."""
        with self._cond:
            failure, self._failure, self._retry_at = self._failure, None, 0.0
        if failure is not None:
            log.warning("%s: writing again after %d failed commits since %s", self.name, failure.attempts,
                        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(failure.since)))
