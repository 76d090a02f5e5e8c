"""What the simulated doors of ``bench load`` ask, shared by the run (``load``) and the door
processes (``load_devices``): the kinds of pass, their shares of the stream, and probes that
the gallery (made here from a seed, the same in every process) accepts or refuses for certain.

An enrolled person's probe is their gallery template with noise: cosine similarity about
``ENROLLED_SIMILARITY`` to it, far above the bench threshold. A stranger's is a fresh random
unit vector: in 512 dimensions its best cosine against 10,000 random templates stays near 0.2,
below ``THRESHOLD``. Only the standard library and numpy: the door processes import it first.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

ENROLLED, STRANGER, ATTACK, CATCH_UP = "enrolled", "stranger", "attack", "catch_up"
KINDS = (ENROLLED, STRANGER, ATTACK, CATCH_UP)
# a campus at shift change: mostly staff, some visitors without a template, rare attacks, and
# now and then a door back from a network outage draining its outbox
DEFAULT_SHARES = {ENROLLED: 0.70, STRANGER: 0.20, ATTACK: 0.08, CATCH_UP: 0.02}
THRESHOLD = 0.3  # the bench pack's decision threshold (cosine)
ENROLLED_SIMILARITY = 0.8
GALLERY_SEED = 3


@dataclass(frozen=True)
class Mix:
    shares: dict[str, float]
    gallery_size: int
    gallery_seed: int = GALLERY_SEED

    def __post_init__(self) -> None:
        unknown = set(self.shares) - set(KINDS)
        if unknown or any(share < 0 for share in self.shares.values()) or sum(self.shares.values()) <= 0:
            raise ValueError(f"a mix needs non-negative shares of {KINDS}, got {self.shares}")

    @classmethod
    def from_spec(cls, spec: dict) -> Mix:
        return cls(dict(spec["shares"]), int(spec["gallery_size"]), int(spec.get("gallery_seed", GALLERY_SEED)))

    @property
    def request_share(self) -> float:
        """The share of passes that ask the matcher (a catch-up sends events instead); 1 when
        the mix is catch-ups alone (then nothing asks)."""
        requests = sum(share for kind, share in self.shares.items() if kind != CATCH_UP)
        return requests / sum(self.shares.values()) if requests > 0 else 1.0

    def spec(self) -> dict:
        return {"shares": self.shares, "gallery_size": self.gallery_size, "gallery_seed": self.gallery_seed}

    def gallery(self) -> np.ndarray:
        from appliance.bench.probes import random_templates

        return random_templates(self.gallery_size, self.gallery_seed)

    def pick(self, rng: random.Random) -> str:
        kinds = [kind for kind in KINDS if self.shares.get(kind, 0) > 0]
        return rng.choices(kinds, [self.shares[kind] for kind in kinds])[0]

    def probe(self, kind: str, rng: np.random.Generator) -> np.ndarray:
        """A unit probe for a pass of ``kind`` (an attack shows an enrolled person's face). The door
        processes draw their passes from a pool made with one generator before the run
        (``load_devices.probe_pool``): seeding one per probe cost ~30 µs of the doors' CPU."""
        noise = _unit(rng.standard_normal(self._dimension()))
        if kind == STRANGER:
            return noise
        enrolled = self._template(int(rng.integers(self.gallery_size)))
        # a unit vector at cosine ENROLLED_SIMILARITY to the template: template plus orthogonal noise
        orthogonal = _unit(noise - float(noise @ enrolled) * enrolled)
        return _unit(ENROLLED_SIMILARITY * enrolled + np.sqrt(1 - ENROLLED_SIMILARITY ** 2) * orthogonal)

    # the door processes regenerate the gallery once, lazily
    def _dimension(self) -> int:
        from appliance.bench.probes import DIMENSION

        return DIMENSION

    def _template(self, row: int) -> np.ndarray:
        cached = _GALLERIES.get((self.gallery_size, self.gallery_seed))
        if cached is None:
            cached = _GALLERIES[(self.gallery_size, self.gallery_seed)] = self.gallery()
        return cached[row]


_GALLERIES: dict[tuple[int, int], np.ndarray] = {}


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)
