"""Background work: a queue worker, and a ticker that nudges one.

The matcher, its sync and event handlers, the device's sync client and outbox pump all need
the same thing: hand work to a thread without blocking the MQTT network loop, drop (and
count) what does not fit rather than grow without bound, survive a bug in one item, and stop
promptly. Compose a ``QueueWorker`` (do not subclass it): give it the function for one item.

Some workers must also act when nothing arrives (a replica polls for new revisions, a sync
client notices a lost answer, a pump resends): a ``Ticker`` only puts a "look now" item in
the worker's queue, so that work still runs on the worker's one thread, in order with the
messages, and nothing needs a lock because of it.

A worker whose items share work (the matcher's searches: one matrix product for many probes)
takes a ``handle_batch`` too: it then gets everything already queued, up to ``max_batch``,
at once. With a ``gather_s`` window it also waits for company while items arrive fast (at
least ``GATHER_MIN_EXPECTED`` expected within the window, by the recent arrival rate): up to
``gather_s`` after the oldest item taken, as an inference server's dynamic batcher does (issue
17: batches of ~4 became ~20 at 1,000 requests/s, a quarter less CPU per request). A lone item
is never held. Every worker keeps what a capacity report needs: items handled, seconds they
waited in the queue and seconds (wall and CPU) of work.

A worker ``attach``ed to a loop has no thread: the loop calls ``due`` and ``run_due`` - the
matcher's MQTT network thread runs its request batches itself between reads and writes
(``transport.mqtt_loop.InlineWork``), so a request never crosses threads (issue 17: ~15 % less
CPU per request for the two threads' work than with a hand-over).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
POLL_S = 0.2  # how often an idle worker looks at its stop flag
JOIN_TIMEOUT_S = 5.0
GATHER_MIN_EXPECTED = 2.0  # items expected within the window before it is worth waiting for them
RATE_SMOOTHING = 0.2  # weight of the newest batch in the arrival rate (a moving average over ~5)
MIN_ELAPSED_S = 1e-6  # two batches taken within the clock's resolution
SOJOURN_BUCKETS = 10_000  # 1 ms each: 10 s and more share the last
MS_PER_S = 1000


class Sojourns:
    """How long items spent from ``put`` to the end of their handling, counted in 1 ms buckets up
    to ``buckets`` ms (the last holds the rest): constant memory however long the process runs,
    and percentiles to the millisecond, so a replica's own share of a door's round trip can be
    told from the broker's and the network's (``bench load``)."""

    def __init__(self, buckets: int = SOJOURN_BUCKETS, counts: list[int] | None = None):
        self.counts = counts if counts is not None else [0] * buckets

    def record(self, seconds: float) -> None:
        self.counts[min(max(0, int(seconds * MS_PER_S)), len(self.counts) - 1)] += 1

    def since(self, earlier: list[int]) -> Sojourns:
        """What was counted after ``earlier`` (a copy of ``counts``) was taken."""
        return Sojourns(counts=[now - then for now, then in zip(self.counts, earlier)])

    def percentile_ms(self, q: float) -> float:
        """The upper edge of the bucket holding the ``q``-th percentile; NaN when nothing was counted."""
        total = sum(self.counts)
        if not total:
            return float("nan")
        rank, seen = q / 100 * total, 0
        for bucket, count in enumerate(self.counts):
            seen += count
            if count and seen >= rank:
                return float(bucket + 1)
        return float(len(self.counts))


class StoppableThread:
    """A daemon thread running ``body(stop)`` until ``stop`` is set; joined on ``stop()``."""

    def __init__(self, name: str, body: Callable[[threading.Event], None]):
        self.name = name
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=body, args=(self.stop_event,), name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout=JOIN_TIMEOUT_S)


class QueueWorker(Generic[Item]):
    """``put`` items from any thread; ``handle(item)`` runs on the worker thread, in order."""

    def __init__(self, name: str, handle: Callable[[Item], None], limit: int,
                 stats: Counter[str] | None = None, *, handle_batch: Callable[[list[Item]], None] | None = None,
                 max_batch: int = 1, gather_s: float = 0.0):
        if max_batch < 1 or (max_batch > 1 and handle_batch is None):
            raise ValueError(f"{name}: a batch of {max_batch} needs handle_batch")
        if gather_s < 0 or (gather_s > 0 and max_batch == 1):
            raise ValueError(f"{name}: a gather window of {gather_s} s needs batches")
        if limit < 1:
            raise ValueError(f"{name}: a queue needs room for at least one item, not {limit}")
        self.name = name
        self._handle = handle
        self._handle_batch = handle_batch
        self.max_batch = max_batch
        self.gather_s = gather_s
        self._rate = 0.0  # items per second arriving lately (an average over batches)
        self._last_take = time.monotonic()
        # the C queue: a put or get is a fraction of a microsecond where ``queue.Queue``'s Python
        # locks and conditions cost several, per message on the MQTT network thread (issue 17);
        # the bound is checked on ``put`` (producers racing past it can overshoot by one each)
        self._queue: queue.SimpleQueue[tuple[float, Item]] = queue.SimpleQueue()
        self.limit = limit
        self.inline = False  # attached to a loop: no thread of its own (``attach``)
        self._wake: Callable[[], None] | None = None  # the loop's, once attached
        self._first_at = 0.0  # inline: when the oldest queued item was put (at most)
        self._thread = StoppableThread(name, self._run)
        self.stats: Counter[str] = stats if stats is not None else Counter()
        # capacity figures (read by ``bench load``): items, seconds queued, seconds of work, batches
        self.handled, self.waited_s, self.busy_s, self.batches = 0, 0.0, 0.0, 0
        self.busy_cpu_s = 0.0  # CPU seconds of work, on whichever thread ran it
        self.sojourns = Sojourns()  # each item from ``put`` to the end of its batch's handling
        self.thread_id: int | None = None  # the worker thread's ident, once running (per-thread CPU)

    def start(self) -> QueueWorker[Item]:
        if not self.inline:
            self._thread.start()
        return self

    def stop(self) -> None:
        if not self.inline:
            self._thread.stop()

    def attach(self, wake: Callable[[], None]) -> None:
        """Run on a loop's thread instead of one of its own, from now on (before ``start``): the
        loop calls ``due`` and ``run_due``; ``wake`` cuts its wait short when another thread puts."""
        if self._thread.started:
            raise RuntimeError(f"{self.name}: already running on its own thread")
        self.inline, self._wake = True, wake

    def put(self, item: Item) -> bool:
        """Queue ``item``; False (and ``dropped_overload`` counted) when the queue is full."""
        depth = self._queue.qsize()
        if depth >= self.limit:
            self.stats["dropped_overload"] += 1
            return False
        now = time.monotonic()
        if not depth:
            self._first_at = now
        self._queue.put((now, item))
        if self._wake is not None:
            self._wake()  # the loop's own thread: returns at once
        return True

    def due(self) -> float | None:
        """Inline: when (monotonic) the next batch should run - at once, or when its gather window
        closes or it is expected to be full (``_gather_until``'s rule); None while nothing is queued."""
        depth = self._queue.qsize()
        if not depth:
            return None
        if not self.gather_s or depth >= self.max_batch or self._rate * self.gather_s < GATHER_MIN_EXPECTED:
            return self._first_at
        return min(self._first_at + self.gather_s, time.monotonic() + (self.max_batch - depth) / self._rate)

    def run_due(self) -> int:
        """Inline: run one batch on the calling thread if one is due; the items it ran (0: none due).
        A failure is counted and logged, never raised: the caller is a network loop."""
        when = self.due()
        if when is None or when > time.monotonic():
            return 0
        self.thread_id = threading.get_ident()
        taken: list[tuple[float, Item]] = []
        self._drain(taken)
        if not taken:
            return 0
        if self._queue.qsize():  # more than a batch waited: the rest is due at once
            self._first_at = taken[-1][0]
        self._execute(taken)
        return len(taken)

    def run_queued_here(self) -> int:
        """Handle what is queued on the calling thread, one item at a time, letting an exception
        through (tests drive a handler this way instead of its thread); returns the items run."""
        count = 0
        while True:
            try:
                _, item = self._queue.get_nowait()
            except queue.Empty:
                return count
            self._handle(item)
            count += 1

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def stopping(self) -> bool:
        return self._thread.stop_event.is_set()

    def _drain(self, taken: list[tuple[float, Item]]) -> None:
        """Add what is queued to ``taken``, up to ``max_batch``, without waiting."""
        while len(taken) < self.max_batch:
            try:
                taken.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _gather_until(self, taken: list[tuple[float, Item]]) -> float | None:
        """When to take more (monotonic): the window's end after the oldest item, or sooner when the
        batch should be full by then; None when the rate does not make waiting worth it."""
        if not self.gather_s or len(taken) >= self.max_batch or self._rate * self.gather_s < GATHER_MIN_EXPECTED:
            return None
        return min(taken[0][0] + self.gather_s, time.monotonic() + (self.max_batch - len(taken)) / self._rate)

    def _follow_rate(self, items: int, now: float) -> None:
        """The arrival rate: items per second since the previous batch was taken, smoothed."""
        elapsed = max(now - self._last_take, MIN_ELAPSED_S)
        self._rate += RATE_SMOOTHING * (items / elapsed - self._rate)
        self._last_take = now

    def _run(self, stop: threading.Event) -> None:
        self.thread_id = threading.get_ident()
        while not stop.is_set():
            try:
                taken = [self._queue.get(timeout=POLL_S)]
            except queue.Empty:
                continue
            self._drain(taken)
            until = self._gather_until(taken)
            if until is not None:
                time.sleep(max(0.0, until - time.monotonic()))
                self._drain(taken)
            self._execute(taken)

    def _execute(self, taken: list[tuple[float, Item]]) -> None:
        """Handle one batch (taken from the queue with their put times) and count it."""
        start, cpu_start = time.monotonic(), time.thread_time()
        if self.gather_s:  # only a gathering worker needs the arrival rate
            self._follow_rate(len(taken), start)
        items = [item for _, item in taken]
        try:
            if self._handle_batch is not None and len(items) > 1:
                self._handle_batch(items)
            else:
                self._handle(items[0])
        except Exception:  # noqa: BLE001 - a bug for one item must not stop the worker
            self.stats["internal_error"] += 1
            log.exception("%s: failed on %d item(s)", self.name, len(items))
        done = time.monotonic()
        self.busy_s += done - start
        self.busy_cpu_s += time.thread_time() - cpu_start
        self.waited_s += sum(start - queued for queued, _ in taken)
        for queued, _ in taken:
            self.sojourns.record(done - queued)
        self.handled += len(items)
        self.batches += 1


class Ticker:
    """Calls ``tick`` every ``period_s`` on its own thread (give it a worker's ``put``)."""

    def __init__(self, name: str, period_s: float, tick: Callable[[], object]):
        if period_s <= 0:
            raise ValueError(f"{name}: period {period_s} s")
        self.name, self.period_s = name, period_s
        self._tick = tick
        self._thread = StoppableThread(name, self._run)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period_s):
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - a failed nudge must not stop the next one
                log.exception("%s: tick failed", self.name)
