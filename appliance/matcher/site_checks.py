"""``SiteChecks``: the site's sender and matching-mode checks (``ops.provisioning``) answered
from memory while the PKI registry and the device policies are unchanged on disk; the gate
(``matcher.gate``) asks them for every message a worker opens."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from appliance.filecache import file_stamp

# The provisioning files (PKI registry, device policies) are looked at this often at most, not
# for every check: a revocation or a policy change reaches the matcher's checks within it (the
# broker's own cut needs its restart, seconds). At most 1 s; 0: at every check (issue 17).
PROVISIONING_RECHECK_S, MAX_PROVISIONING_RECHECK_S = 0.25, 1.0


class SiteChecks:
    """The site's sender and matching-mode checks (``ops.provisioning.may_send`` and
    ``is_allowed``) answered from memory while the PKI registry and the device policies are
    unchanged on disk. Each check builds every identity and policy of the site, so it cost
    ~0.3-0.4 ms per call with 100 doors and grows with the site (issue 17's profile); a
    revocation or a policy change replaces a file, which empties the memo when the files are
    next looked at. They are looked at (two ``os.stat``, 2-5 us each) at most every
    ``recheck_s`` rather than for each of the two checks of every request, so an answer
    outlives the files it came from by at most ``recheck_s`` (``PROVISIONING_RECHECK_S``)."""

    def __init__(self, pki, recheck_s: float = PROVISIONING_RECHECK_S, clock: Callable[[], float] = time.monotonic):
        from appliance.broker.pki import REGISTRY
        from appliance.ops import provisioning

        if not 0.0 <= recheck_s <= MAX_PROVISIONING_RECHECK_S:
            raise ValueError(f"recheck_s {recheck_s} outside 0-{MAX_PROVISIONING_RECHECK_S} s")
        self.pki, self._provisioning = pki, provisioning
        # as strings for ``os.stat`` (pathlib's wrappers doubled the cost of the two stats per check)
        self._files = (str(pki.folder / REGISTRY), str(pki.folder / provisioning.POLICY_FILE))
        self.recheck_s, self._clock = recheck_s, clock
        self._recheck_at = -math.inf  # when the files are next looked at
        self._stamp: tuple = ()
        self._memo: dict[tuple[str, str, str], bool] = {}
        self._lock = threading.Lock()

    def _current(self) -> dict[tuple[str, str, str], bool]:
        now = self._clock()
        if now >= self._recheck_at:  # the stats come before any answer they label is worked out
            stamp = tuple(file_stamp(path) for path in self._files)
            with self._lock:
                self._recheck_at = now + self.recheck_s
                if stamp != self._stamp:
                    self._stamp, self._memo = stamp, {}
        return self._memo

    def may_send(self, device: str, topic: str) -> bool:
        memo = self._current()
        key = ("send", device, topic)
        if key not in memo:
            memo[key] = bool(self._provisioning.may_send(self.pki, device, topic))
        return memo[key]

    def device_allowed(self, device: str, mode: str) -> bool:
        memo = self._current()
        key = ("mode", device, mode)
        if key not in memo:
            memo[key] = bool(self._provisioning.is_allowed(self.pki, device, mode))
        return memo[key]

