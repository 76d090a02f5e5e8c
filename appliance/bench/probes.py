"""What the matcher benchmarks share: the synthetic pack, unit-norm random templates, match
requests made of them, and median/p95 of a list of timings. Its own module so that the
benchmark (``matcher_bench``), the load test (``flood_load``) and the load generators
(``device_load``, run as processes) use the same probes without importing one another."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from appliance.protocol import messages

DIMENSION = 512
CHUNK = 100_000  # templates generated at once (bounds the temporary memory for 1M)
PACK = ("bench-pack", "1")
P95 = 0.95


@dataclass
class Timing:
    samples_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms) if self.samples_ms else float("nan")

    @property
    def p95(self) -> float:
        if not self.samples_ms:
            return float("nan")
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(round(P95 * (len(ordered) - 1))))]


def random_templates(count: int, seed: int, dimension: int = DIMENSION) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((count, dimension), dtype=np.float32)
    for start in range(0, count, CHUNK):
        block = rng.standard_normal((min(CHUNK, count - start), dimension), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def probe(device: str, vector: np.ndarray) -> messages.MatchRequest:
    """A 1:N request of ``device`` for ``vector`` (synthetic: it never matches)."""
    packed = messages.MatchRequest.pack_vector(vector)
    return messages.MatchRequest(messages.new_id(), device, "identify", packed, time.time())
