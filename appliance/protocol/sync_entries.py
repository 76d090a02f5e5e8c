"""The entries of a ``delta`` message: how a template and its subject travel to a device cache.

An upsert entry is ``{"s": subject pseudonym, "r": revision, "t": template, "n": masked name,
"c": claim hash}``, a tombstone ``{"s": ..., "r": ...}`` (docs/protocol.md). A template on
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
    vector: np.ndarray = field(compare=False, repr=False)
    display: str = ""  # masked name
    claim: str = ""  # claim hash of the subject's card, "" when none

    def to_wire(self) -> dict[str, Any]:
        return {"s": self.subject_id, "r": self.revision, "t": encode_template(self.vector), "n": self.display,
                "c": self.claim}

    @classmethod
    def from_wire(cls, entry: dict[str, Any]) -> "UpsertEntry":
        return cls(entry["s"], entry["r"], decode_template(entry["t"]), entry["n"], entry["c"])


@dataclass(frozen=True)
class TombstoneEntry:
    subject_id: str
    revision: int

    def to_wire(self) -> dict[str, Any]:
        return {"s": self.subject_id, "r": self.revision}

    @classmethod
    def from_wire(cls, entry: dict[str, Any]) -> "TombstoneEntry":
        return cls(entry["s"], entry["r"])
