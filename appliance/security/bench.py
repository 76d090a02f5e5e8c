"""Envelope throughput against a peer measured in the same run.

The peer is a bare AES-256-GCM encryption of the same payload with a fixed key: the cost of
confidentiality alone. The ratio shows what sender authentication, per-message key agreement
and anti-replay cost on this machine; absolute numbers vary with the CPU and its load, the
ratio much less. Both envelope formats run interleaved: per-message (format 1) and session
(format 3) in a warm epoch (its one signature and agreement made before the timed messages,
as they are for all but the first message of an epoch). Rates are from the benchmark thread's
CPU time (``time.thread_time``), so other processes on the machine move them little. Not a
unit test: run it with ``appliance bench envelope``.

``appliance bench envelope --suite sm`` measures the SM suite beside the default one instead:
the same payload, messages and repeats, the two suites' runs interleaved in one process.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.security.envelope import Aead, MessageType, NodeKeys, Opener, ReplayGuard, Sealer
from appliance.security.suites import Suite

DEFAULT_PAYLOAD_BYTES = 2048
DEFAULT_MESSAGES = 400
DEFAULT_REPEATS = 5
# the SM suite's SM2 is pure Python (tens of operations per second): fewer messages keep a run short
SUITE_MESSAGES = 40
NONCE_BYTES = 12
US_PER_S = 1_000_000


@dataclass(frozen=True)
class EnvelopeBench:
    payload_bytes: int
    messages: int
    repeats: int
    aead: str
    seals_per_s: list[float]
    opens_per_s: list[float]
    peer_per_s: list[float]
    floor_per_s: list[float]
    session_seals_per_s: list[float] = field(default_factory=list)  # warm epoch
    session_opens_per_s: list[float] = field(default_factory=list)

    @property
    def seal_median(self) -> float:
        return statistics.median(self.seals_per_s)

    @property
    def open_median(self) -> float:
        return statistics.median(self.opens_per_s)

    @property
    def peer_median(self) -> float:
        return statistics.median(self.peer_per_s)

    @property
    def floor_median(self) -> float:
        return statistics.median(self.floor_per_s)

    @property
    def session_seal_median(self) -> float:
        return statistics.median(self.session_seals_per_s)

    @property
    def session_open_median(self) -> float:
        return statistics.median(self.session_opens_per_s)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _seal_open(sender: NodeKeys, recipient: NodeKeys, payload: bytes, messages: int,
               aead: Aead = Aead.AES_256_GCM) -> tuple[float, float]:
    """Seals then opens ``messages`` per-message envelopes (each suite's format 1 or 2, so the
    suites compare like for like): (seals/s, opens/s)."""
    return _timed_seal_open(Sealer(sender, aead, session=False), sender, recipient, payload, messages, warm=False)


def _timed_seal_open(sealer: Sealer, sender: NodeKeys, recipient: NodeKeys, payload: bytes, messages: int,
                     warm: bool) -> tuple[float, float]:
    """(seals/s, opens/s) in thread CPU time; ``warm``: one message sealed and opened first,
    outside the timing (a session's epoch is then set up on both sides)."""
    public = recipient.public()
    opener = Opener(recipient, [sender.public()], guard=ReplayGuard(window=messages * 2))
    if warm:
        opener.open(sealer.seal(public, MessageType.TEMPLATE, payload, "bench", "1"))
    start = time.thread_time()
    sealed = [sealer.seal(public, MessageType.TEMPLATE, payload, "bench", "1") for _ in range(messages)]
    seals = _rate(messages, time.thread_time() - start)
    start = time.thread_time()
    for envelope in sealed:
        opener.open(envelope)
    return seals, _rate(messages, time.thread_time() - start)


def run_envelope_bench(payload_bytes: int = DEFAULT_PAYLOAD_BYTES, messages: int = DEFAULT_MESSAGES,
                       repeats: int = DEFAULT_REPEATS, aead: Aead = Aead.AES_256_GCM) -> EnvelopeBench:
    """Interleave envelope and peer runs so both see the same machine load."""
    device, matcher = NodeKeys.generate("bench-device"), NodeKeys.generate("bench-matcher")
    recipient = matcher.public()
    payload = os.urandom(payload_bytes)
    peer = AESGCM(os.urandom(32))
    seals, opens, peers, floors, session_seals, session_opens = [], [], [], [], [], []
    for _ in range(repeats):
        sealed, opened = _timed_seal_open(Sealer(device, aead, session=False), device, matcher, payload, messages,
                                          warm=False)
        seals.append(sealed)
        opens.append(opened)
        sealed, opened = _timed_seal_open(Sealer(device, aead), device, matcher, payload, messages, warm=True)
        session_seals.append(sealed)
        session_opens.append(opened)

        start = time.thread_time()
        for _ in range(messages):
            peer.encrypt(os.urandom(NONCE_BYTES), payload, None)
        peers.append(_rate(messages, time.thread_time() - start))

        # the asymmetric operations a per-message seal cannot avoid, without any framing or AEAD
        start = time.thread_time()
        for _ in range(messages):
            ephemeral = X25519PrivateKey.generate()
            ephemeral.public_key().public_bytes_raw()
            ephemeral.exchange(recipient.agreement)
            device.signing.sign(payload)
        floors.append(_rate(messages, time.thread_time() - start))
    return EnvelopeBench(payload_bytes, messages, repeats, aead.name, seals, opens, peers, floors,
                         session_seals, session_opens)


def markdown_report(result: EnvelopeBench) -> str:
    import cryptography

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [
        ("envelope seal, per-message format 1 (X25519 + HKDF + AEAD + Ed25519)", result.seal_median,
         result.seals_per_s),
        ("envelope open, per-message format 1 (verify + X25519 + AEAD + replay check)", result.open_median,
         result.opens_per_s),
        ("envelope seal, session format 3, warm epoch (AEAD)", result.session_seal_median,
         result.session_seals_per_s),
        ("envelope open, session format 3, warm epoch (epoch cache + AEAD + replay check)",
         result.session_open_median, result.session_opens_per_s),
        ("peer: plain AES-256-GCM encrypt, fixed key", result.peer_median, result.peer_per_s),
        ("floor: X25519 key pair + agreement + Ed25519 sign only", result.floor_median, result.floor_per_s),
    ]
    per_message_us = US_PER_S / result.seal_median + US_PER_S / result.open_median
    session_us = US_PER_S / result.session_seal_median + US_PER_S / result.session_open_median
    lines = [
        "# Envelope throughput",
        "",
        f"Payload {result.payload_bytes} bytes, {result.messages} messages per run, {result.repeats} runs, "
        f"cipher {result.aead}, one thread, rates from its CPU time. Median over runs; both formats and the "
        "peer ran interleaved in the same process.",
        "",
        "| operation | median ops/s | runs (ops/s) |",
        "| --- | ---: | --- |",
    ]
    for name, median, runs in rows:
        lines.append(f"| {name} | {median:,.0f} | {', '.join(f'{r:,.0f}' for r in runs)} |")
    lines += [
        "",
        f"Seal costs {result.peer_median / result.seal_median:,.1f}x a bare AES-GCM encryption and open "
        f"{result.peer_median / result.open_median:,.1f}x: the price of per-message key agreement and a signature. "
        f"The seal runs at {100 * result.seal_median / result.floor_median:.0f} % of its asymmetric-crypto floor, "
        "so framing, HKDF and AEAD add little.",
        "",
        f"In a warm epoch the session format seals {result.session_seal_median / result.seal_median:,.1f}x and "
        f"opens {result.session_open_median / result.open_median:,.1f}x as fast: one open and one seal (a "
        f"matcher's request and answer) cost {per_message_us:,.0f} µs per-message and {session_us:,.0f} µs in "
        "session format (plus one statement signature and verification per epoch and peer).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load:.2f}; Python "
        f"{platform.python_version()}, cryptography {cryptography.__version__}.",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class SuiteBench:
    """Seal and open rates of both suites, measured interleaved in one run."""

    payload_bytes: int
    messages: int
    repeats: int
    seals_per_s: dict[str, list[float]]  # suite label -> runs
    opens_per_s: dict[str, list[float]]
    load_average: float  # 1-minute load average at the end of the run

    def median(self, rates: dict[str, list[float]], suite: Suite) -> float:
        return statistics.median(rates[suite.label])

    def ratio(self, rates: dict[str, list[float]]) -> float:
        """How many times faster the default suite is than the SM suite."""
        return self.median(rates, Suite.DEFAULT) / self.median(rates, Suite.SM)

    def as_dict(self) -> dict:
        return {"payload_bytes": self.payload_bytes, "messages": self.messages, "repeats": self.repeats,
                "load_average": self.load_average,
                **{f"{what}_median_per_s": {s.label: self.median(rates, s) for s in Suite}
                   for what, rates in (("seal", self.seals_per_s), ("open", self.opens_per_s))}}


def run_suite_bench(payload_bytes: int = DEFAULT_PAYLOAD_BYTES, messages: int = SUITE_MESSAGES,
                    repeats: int = DEFAULT_REPEATS) -> SuiteBench:
    """Both suites, each repeat running the default suite then the SM suite on the same payload."""
    payload = os.urandom(payload_bytes)
    pairs = {suite: (NodeKeys.generate("bench-device", suite), NodeKeys.generate("bench-matcher", suite))
             for suite in Suite}
    seals: dict[str, list[float]] = {suite.label: [] for suite in Suite}
    opens: dict[str, list[float]] = {suite.label: [] for suite in Suite}
    for _ in range(repeats):
        for suite, (device, matcher) in pairs.items():
            sealed, opened = _seal_open(device, matcher, payload, messages)
            seals[suite.label].append(sealed)
            opens[suite.label].append(opened)
    return SuiteBench(payload_bytes, messages, repeats, seals, opens, _load_average())


def _load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def suite_markdown_report(result: SuiteBench) -> str:
    import cryptography

    from appliance.security.sm import library_version

    rows = [(f"{what} ({suite.label})", result.median(rates, suite), rates[suite.label])
            for what, rates in (("seal", result.seals_per_s), ("open", result.opens_per_s)) for suite in Suite]
    lines = [
        "# Envelope throughput: the SM suite beside the default suite",
        "",
        f"Payload {result.payload_bytes} bytes, {result.messages} messages per run, {result.repeats} runs per "
        "suite, one thread; the two suites' runs interleaved in one process. Default: X25519 + HKDF-SHA256 + "
        "AES-256-GCM + Ed25519. SM: SM2 encryption of an SM4 key + SM4-GCM + SM2 signature.",
        "",
        "| operation | median ops/s | runs (ops/s) |",
        "| --- | ---: | --- |",
    ]
    lines += [f"| {name} | {median:,.1f} | {', '.join(f'{r:,.1f}' for r in runs)} |" for name, median, runs in rows]
    lines += [
        "",
        f"The default suite seals {result.ratio(result.seals_per_s):,.0f}x and opens "
        f"{result.ratio(result.opens_per_s):,.0f}x as fast as the SM suite here: SM2 runs in pure Python "
        "(SM3 and SM4-GCM come from OpenSSL through cryptography).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {result.load_average:.2f}; Python "
        f"{platform.python_version()}, cryptography {cryptography.__version__}, {library_version()}.",
        "",
    ]
    return "\n".join(lines)
