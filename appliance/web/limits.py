"""Request limits: a token bucket per client address and per account.

A console faces guessing (logins, tokens) and floods (uploads): each client address gets a
bucket of ``[console] request_burst`` requests refilled at ``requests_per_s``, and so does each
authenticated account (so one account cannot spread a flood over many addresses). An empty
bucket answers 429 with ``Retry-After``. The body size limits are FastAPI's own
(``max_body_size``: 413 before the body is read when its declared length is too big, or as
soon as the bytes read pass the limit).
"""
from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_TRACKED = 10_000  # buckets kept; the least recently used go first (a full bucket is the default anyway)
TOO_MANY = 429
UNLIMITED_PREFIXES = ("/static/",)  # the console's stylesheet and scripts


class RateLimiter:
    """Token buckets by key (``client:<address>``, ``account:<name>``); thread-safe."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate_per_s, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        """Take one token for ``key``: 0 when there was one, else the seconds until there is."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        return wait

    def check(self, key: str) -> None:
        """Raise 429 (with ``Retry-After``) when ``key`` has no token left."""
        wait = self.wait_s(key)
        if wait:
            raise HTTPException(TOO_MANY, too_many_detail(wait), headers=retry_after(wait))


def retry_after(wait_s: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait_s)))}


def too_many_detail(wait_s: float) -> str:
    return f"too many requests; retry in {max(1, math.ceil(wait_s))} s"


class ClientRateLimit:
    """ASGI middleware: one bucket per client address for every HTTP request (static files
    aside), checked before any route runs or any body is read."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNLIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("unknown", 0)
        wait = self.limiter.wait_s(f"client:{client[0]}")
        if not wait:
            await self.app(scope, receive, send)
            return
        await JSONResponse({"detail": too_many_detail(wait)}, TOO_MANY, headers=retry_after(wait))(scope, receive, send)
