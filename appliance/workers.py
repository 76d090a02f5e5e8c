"""One background worker: a thread that takes items from a bounded queue until stopped.

The matcher, its sync and event handlers, the device's sync client and outbox pump all need
the same thing: hand work to a thread without blocking the MQTT network loop, drop (and
count) what does not fit rather than grow without bound, survive a bug in one item, and stop
promptly. Compose a ``QueueWorker`` (do not subclass it): give it the function for one item.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
POLL_S = 0.2  # how often an idle worker looks at its stop flag
JOIN_TIMEOUT_S = 5.0


class QueueWorker(Generic[Item]):
    """``put`` items from any thread; ``handle(item)`` runs on the worker thread, in order."""

    def __init__(self, name: str, handle: Callable[[Item], None], limit: int,
                 stats: Counter[str] | None = None):
        self.name = name
        self._handle = handle
        self._queue: queue.Queue[Item] = queue.Queue(limit)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.stats: Counter[str] = stats if stats is not None else Counter()

    def start(self) -> "QueueWorker[Item]":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=JOIN_TIMEOUT_S)

    def put(self, item: Item) -> bool:
        """Queue ``item``; False (and ``dropped_overload`` counted) when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats["dropped_overload"] += 1
            return False
        return True

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            try:
                self._handle(item)
            except Exception:  # noqa: BLE001 - a bug for one item must not stop the worker
                self.stats["internal_error"] += 1
                log.exception("%s: failed on one item", self.name)
