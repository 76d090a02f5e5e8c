"""Envelope throughput against a peer measured in the same run.

The peer is a bare AES-256-GCM encryption of the same payload with a fixed key: the cost of
confidentiality alone. The ratio shows what sender authentication, per-message key agreement
and anti-replay cost on this machine; absolute numbers vary with the CPU and its load, the
ratio much less. Not a unit test: run it with ``appliance bench envelope``.

``appliance bench envelope --suite sm`` measures the SM suite beside the default one instead:
the same payload, messages and repeats, the two suites' runs interleaved in one process.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass

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


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _seal_open(sender: NodeKeys, recipient: NodeKeys, payload: bytes, messages: int,
               aead: Aead = Aead.AES_256_GCM) -> tuple[float, float]:
    """Seals then opens ``messages`` envelopes: (seals/s, opens/s)."""
    sealer = Sealer(sender, aead)
    start = time.perf_counter()
    sealed = [sealer.seal(recipient.public(), MessageType.TEMPLATE, payload, "bench", "1") for _ in range(messages)]
    seals = _rate(messages, time.perf_counter() - start)
    opener = Opener(recipient, [sender.public()], guard=ReplayGuard(window=messages * 2))
    start = time.perf_counter()
    for envelope in sealed:
        opener.open(envelope)
    return seals, _rate(messages, time.perf_counter() - start)


def run_envelope_bench(payload_bytes: int = DEFAULT_PAYLOAD_BYTES, messages: int = DEFAULT_MESSAGES,
                       repeats: int = DEFAULT_REPEATS, aead: Aead = Aead.AES_256_GCM) -> EnvelopeBench:
    """Interleave envelope and peer runs so both see the same machine load."""
    device, matcher = NodeKeys.generate("bench-device"), NodeKeys.generate("bench-matcher")
    recipient = matcher.public()
    payload = os.urandom(payload_bytes)
    peer = AESGCM(os.urandom(32))
    seals, opens, peers, floors = [], [], [], []
    for _ in range(repeats):
        sealer = Sealer(device, aead)
        start = time.perf_counter()
        sealed = [sealer.seal(recipient, MessageType.TEMPLATE, payload, "bench", "1") for _ in range(messages)]
        seals.append(_rate(messages, time.perf_counter() - start))

        opener = Opener(matcher, [device.public()], guard=ReplayGuard(window=messages * 2))
        start = time.perf_counter()
        for envelope in sealed:
            opener.open(envelope)
        opens.append(_rate(messages, time.perf_counter() - start))

        start = time.perf_counter()
        for _ in range(messages):
            peer.encrypt(os.urandom(NONCE_BYTES), payload, None)
        peers.append(_rate(messages, time.perf_counter() - start))

        # the asymmetric operations a seal cannot avoid, without any framing or AEAD
        start = time.perf_counter()
        for _ in range(messages):
            ephemeral = X25519PrivateKey.generate()
            ephemeral.public_key().public_bytes_raw()
            ephemeral.exchange(recipient.agreement)
            device.signing.sign(payload)
        floors.append(_rate(messages, time.perf_counter() - start))
    return EnvelopeBench(payload_bytes, messages, repeats, aead.name, seals, opens, peers, floors)


def markdown_report(result: EnvelopeBench) -> str:
    import cryptography

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [
        ("envelope seal (X25519 + HKDF + AEAD + Ed25519)", result.seal_median, result.seals_per_s),
        ("envelope open (verify + X25519 + AEAD + replay check)", result.open_median, result.opens_per_s),
        ("peer: plain AES-256-GCM encrypt, fixed key", result.peer_median, result.peer_per_s),
        ("floor: X25519 key pair + agreement + Ed25519 sign only", result.floor_median, result.floor_per_s),
    ]
    lines = [
        "# Envelope throughput",
        "",
        f"Payload {result.payload_bytes} bytes, {result.messages} messages per run, {result.repeats} runs, "
        f"cipher {result.aead}, one thread. Median over runs; the peer ran interleaved in the same process.",
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
