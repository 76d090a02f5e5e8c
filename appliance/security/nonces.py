"""Random AEAD nonces from the operating system's generator, drawn a page at a time.

Why: every envelope sealed needs a fresh random nonce, and ``os.urandom`` per message is a
system call that also releases the GIL - on the matcher, a thread switch per answer that the
network thread takes (issue 17). Here one ``os.urandom`` call fills a page and nonces are cut
from it in order, each byte used once: the same OS randomness, ~340 nonces per call.

A forked child must never reuse its parent's unused bytes (two processes sealing with the same
nonce under one key would break the AEAD), so the pool is emptied in the child at ``fork``.
"""
from __future__ import annotations

import os
import threading
import weakref

PAGE_BYTES = 4096


class RandomPool:
    """Bytes of ``os.urandom`` handed out once each; safe across threads and ``fork``."""

    def __init__(self, page_bytes: int = PAGE_BYTES):
        if page_bytes <= 0:
            raise ValueError(f"page of {page_bytes} bytes")
        self.page_bytes = page_bytes
        self._page = b""
        self._used = 0
        self._lock = threading.Lock()
        _POOLS.add(self)

    def take(self, count: int) -> bytes:
        """``count`` bytes no other call (in this process or a forked one) ever gets."""
        if count > self.page_bytes:
            return os.urandom(count)
        with self._lock:
            if self._used + count > len(self._page):
                self._page, self._used = os.urandom(self.page_bytes), 0
            start = self._used
            self._used = start + count
            return self._page[start:self._used]

    def _forget(self) -> None:
        self._lock = threading.Lock()  # a lock held by another thread at fork stays held in the child
        self._page, self._used = b"", 0


_POOLS: weakref.WeakSet[RandomPool] = weakref.WeakSet()


def _forget_in_child() -> None:
    for pool in list(_POOLS):
        pool._forget()


os.register_at_fork(after_in_child=_forget_in_child)

NONCES = RandomPool()  # the process's pool for envelope nonces
