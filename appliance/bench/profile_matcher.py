"""Where one matcher replica's time goes under load: CPU per thread and per stage of a request.

Two views, both taken while ``bench load`` runs, in the matcher's own process:

* ``ThreadClock``: CPU seconds and thread switches of every thread of the process over the run
  (Linux per-thread clocks and ``/proc``), grouped by role: the MQTT network thread (TLS, MQTT
  framing, the gate's router), the request batches it runs (``split_inline``), the event
  worker, the audit group-commit writer, the rest.
* ``StageTimer``: CPU microseconds per request of each stage of the request batches (run by the
  MQTT network thread, ``matcher.requests``) - open the
  envelope (with the sender check), liveness re-judge, search (with the failure tracker),
  access rules, seal, publish, audit (queueing the entry; its commit is the writer's thread) -
  by wrapping those calls on one composed replica. What is left of the worker's time is message
  decoding and bookkeeping. Queueing and the broker round trip are wall time, from the worker's
  own counts (``workers.QueueWorker``) and the doors' round trips.

``StageTimer`` times one batch in ``SAMPLE_EVERY`` (drawn at random): reading a thread's CPU clock is a system
call, and timing every stage of every request cost ~35 µs per request (issue 17: 6 % of the very
CPU per request the run reports); a batch that is not sampled pays an attribute check per
wrapped call. Nothing here changes what the replica decides.
"""
from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

US_PER_S = 1e6
SAMPLE_EVERY = 8  # StageTimer times the stages of one request batch in this many
STAGES = ("open", "liveness", "search", "access", "seal", "publish", "audit")
STAGE_NOTES = {
    "open": "sender check, envelope parse and open (an AEAD open within a known epoch), replay check",
    "decode": "MatchRequest decoding, the failure tracker, the Decision and the handler's bookkeeping (the rest)",
    "liveness": "second liveness judgement: the device's evidence and the level's policy",
    "search": "1:N search of the gallery: one matrix product for the probes of a batch",
    "access": "site access rules for an accepted match",
    "seal": "Decision sealed to the door (an AEAD seal within the replica's epoch)",
    "publish": "handing the sealed answer to paho (QoS 0: a door that misses it asks again)",
    "audit": "queueing the decision's audit entry (the commit is the writer thread's)",
}
NETWORK_ROLE = "MQTT network thread (TLS, MQTT, router and gate)"
REQUEST_BATCHES = "request batches (run by the MQTT network thread)"
THREAD_ROLES = (("paho", NETWORK_ROLE),
                ("-worker", "request worker"),
                ("-events", "event worker"),
                ("audit-writer", "audit group commit (SQLCipher, hash chain, signed head)"))
OTHER = "other threads (sync poll, gate flush, stores, the bench itself)"
SWITCH_FIELDS = ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")  # /proc/<pid>/task/<tid>/status


class ThreadClock:
    """CPU seconds and thread switches per thread of this process between ``start`` and ``stop``.

    Switches are counted because they were a cost of their own: on this virtual machine a
    quarter of the replica's CPU was the kernel switching threads (issue 17). "Waited" are the
    thread's own (a lock, the GIL, a socket), "pre-empted" the scheduler's (the CPUs were full)."""

    def __init__(self) -> None:
        self._start: dict[int, tuple[float, int, int]] = {}  # thread -> (CPU s, waited, pre-empted)
        self.seconds: dict[str, float] = {}
        self.switches: dict[str, tuple[int, int]] = {}  # role -> (waited, pre-empted)

    @staticmethod
    def _now() -> dict[int, tuple[str, tuple[float, int, int]]]:
        out = {}
        for thread in threading.enumerate():
            if thread.ident is None:
                continue
            try:
                clock = time.pthread_getcpuclockid(thread.ident)
                out[thread.ident] = (thread.name, (time.clock_gettime(clock), *_switches(thread.native_id)))
            except (OSError, ProcessLookupError):  # ended in between
                continue
        return out

    def start(self) -> None:
        self._start = {ident: counts for ident, (_, counts) in self._now().items()}

    def stop(self) -> dict[str, float]:
        """CPU seconds per role (``THREAD_ROLES``); threads started during the run count whole."""
        totals: dict[str, tuple[float, ...]] = {}  # role -> (CPU s, waited, pre-empted)
        for ident, (name, counts) in self._now().items():
            role = next((label for marker, label in THREAD_ROLES if marker in name), OTHER)
            before, total = self._start.get(ident, (0.0, 0, 0)), totals.get(role, (0.0, 0, 0))
            totals[role] = tuple(sum_ + now - then for sum_, now, then in zip(total, counts, before))
        self.seconds = {role: cpu for role, (cpu, _, _) in totals.items()}
        self.switches = {role: (waited, preempted) for role, (_, waited, preempted) in totals.items()}
        return self.seconds


def _switches(native_id: int | None) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of one thread so far, from Linux's
    ``/proc/self/task/<id>/status``; (0, 0) where that cannot be read."""
    try:
        text = Path(f"/proc/self/task/{native_id}/status").read_text()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in text.splitlines() if line.startswith(SWITCH_FIELDS))
    return int(fields.get(SWITCH_FIELDS[0], 0)), int(fields.get(SWITCH_FIELDS[1], 0))


def split_inline(seconds: dict[str, float], batches_cpu_s: float) -> dict[str, float]:
    """``seconds`` (per role) with the request batches the network thread ran itself (an inline
    worker's ``busy_cpu_s`` over the run) as a row of their own, out of the network thread's."""
    out = dict(seconds)
    out[NETWORK_ROLE] = out.get(NETWORK_ROLE, 0.0) - batches_cpu_s
    out[REQUEST_BATCHES] = batches_cpu_s
    return out


class StageTimer:
    """CPU time per stage of the request batches of one composed replica (``Matcher``), on the
    thread that runs them, sampled: the stages of one batch in ``every`` on average, drawn at random
    per batch (``seed``: the draw's, for a test)."""

    def __init__(self, matcher: Any, every: int = SAMPLE_EVERY, seed: int | None = None):
        if every < 1:
            raise ValueError(f"sample one batch in {every}?")
        self.matcher = matcher
        self.every = every
        self.cpu_s: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._worker = matcher.requests.route.worker
        self._draw = random.Random(seed)
        self._batch, self._sampling = -1, False  # the worker's batch count last seen, and its draw

    def install(self) -> StageTimer:
        handler = self.matcher.requests
        gate, courier = handler.gate, handler.courier
        self._wrap(gate, "admit", "open")
        if handler.liveness_check is not None:
            handler.liveness_check = self._timed(handler.liveness_check, "liveness")
        self._wrap(handler, "search", "search")
        self._wrap(handler, "admit", "access")
        self._wrap(courier, "seal", "seal")
        self._wrap(courier, "send", "publish")
        handler.audit = self._timed(handler.audit, "audit")
        return self

    def _wrap(self, owner: Any, attribute: str, stage: str) -> None:
        setattr(owner, attribute, self._timed(getattr(owner, attribute), stage))

    def _sampled(self) -> bool:
        """Whether the worker's current batch is timed: drawn once per batch, at random, as a fixed
        stride could fall in step with a pattern of the batches (under load a big batch can leave
        a small one behind it) and time one kind only."""
        batch = self._worker.batches
        if batch != self._batch:
            self._batch, self._sampling = batch, self._draw.random() * self.every < 1
        return self._sampling

    def _timed(self, function: Callable, stage: str) -> Callable:
        worker = self._worker

        def timed(*args, **kwargs):
            # another handler's call (another thread), or a batch not sampled
            if threading.get_ident() != worker.thread_id or not self._sampled():
                return function(*args, **kwargs)
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.cpu_s[stage] += time.thread_time() - start
                self.calls[stage] += 1

        return timed

    @property
    def sampled_requests(self) -> int:
        """Requests of the sampled batches: each one is opened once (``Gate.admit``), refused or not."""
        return self.calls.get("open", 0)

    def per_request_us(self, requests: int, worker_cpu_s: float) -> dict[str, float]:
        """Microseconds of CPU per request for each stage (over the sampled batches' requests), and
        ``decode`` for the rest of the worker's CPU (``worker_cpu_s``: the CPU seconds of all its
        batches over the run, ``requests`` of them)."""
        sampled = self.sampled_requests
        if requests <= 0 or sampled <= 0:
            return {}
        out = {stage: self.cpu_s.get(stage, 0.0) / sampled * US_PER_S for stage in STAGES}
        out["decode"] = max(0.0, worker_cpu_s / requests * US_PER_S - sum(out.values()))
        return out
