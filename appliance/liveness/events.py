"""Alarm events of the liveness check, handed to a sink (audit log, MQTT alarm topic).

The event carries the decision summary (scores, reasons, challenge outcome): never images,
never a template. The edge daemon routes it; here a sink is any callable, and
``CollectingSink`` keeps events for tests and the CLI.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

ATTACK = "presentation_attack"  # a cue judged the presentation an artefact
FAILED = "liveness_failed"  # no decision could be reached in time (challenge timeout, no face)


@dataclass(frozen=True)
class AlarmEvent:
    kind: str
    session_id: str
    level: str
    reasons: tuple[str, ...]
    summary: dict  # the liveness summary, as in the signed evidence
    device_time: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "session_id": self.session_id, "level": self.level,
                "reasons": list(self.reasons), "summary": self.summary, "device_time": self.device_time}


AlarmSink = Callable[[AlarmEvent], None]


class CollectingSink:
    def __init__(self) -> None:
        self.events: list[AlarmEvent] = []

    def __call__(self, event: AlarmEvent) -> None:
        self.events.append(event)
