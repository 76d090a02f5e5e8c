"""The entries of a ``delta`` message: how a template and its subject travel to a device cache.

An upsert entry is ``{"s": subject pseudonym, "r": revision, "t": template, "n": masked name,
"c": keyed claim hash}`` with, when set, ``"p"``: the PIN verifier and ``"f"``: refused face
recognition; a person with no template (``vector`` None) has no ``"t"``. A tombstone is
``{"s": ..., "r": ...}`` (docs/protocol.md). A template on
the wire is its little-endian float32 values in base64, as in ``match_request``. The matcher
writes entries with ``UpsertEntry.to_wire``; the device reads them with ``from_wire`` once
``messages.decode`` has validated the delta that carries them.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def encode_template(vector: np.ndarray) -> str:
    """A template's wire form: little-endian float32, base64."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_template(text: str) -> np.ndarray:
    """The float32 vector of a template's wire form; ``ValueError`` when it is not one."""
    return np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class UpsertEntry:
    subject_id: str
    revision: int
    vector: np.ndarray | None = field(compare=False, repr=False)  # None: no face template
    display: str = ""  # masked name
    claim: str = ""  # keyed claim hash of the subject's card (stores.claims), "" when none
    pin: str = field(default="", repr=False)  # PIN verifier (scrypt), "" when none
    face_refused: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"s": self.subject_id, "r": self.revision}
        if self.vector is not None:
            wire["t"] = encode_template(self.vector)
        wire.update(n=self.display, c=self.claim)
        if self.pin:
            wire["p"] = self.pin
        if self.face_refused:
            wire["f"] = True
        return wire

    @classmethod
    def from_wire(cls, entry: dict[str, Any]) -> "UpsertEntry":
        vector = decode_template(entry["t"]) if "t" in entry else None
        return cls(entry["s"], entry["r"], vector, entry["n"], entry["c"], entry.get("p", ""), entry.get("f", False))


@dataclass(frozen=True)
class TombstoneEntry:
    subject_id: str
    revision: int

    def to_wire(self) -> dict[str, Any]:
        return {"s": self.subject_id, "r": self.revision}

    @classmethod
    def from_wire(cls, entry: dict[str, Any]) -> "TombstoneEntry":
        return cls(entry["s"], entry["r"])
