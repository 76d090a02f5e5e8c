"""The matcher's second liveness judgement, made on the device's signed evidence.

The rules live in ``appliance.liveness.server`` (signature by the device's key, freshness,
site policy level, self-consistency, human-speed challenge answers); this adapter finds the
device's public key in the node directory and turns the transport form back into evidence.
A device that skipped or weakened liveness, or sends evidence signed by another key, is
refused here whatever its own verdict. A caller whose envelope already authenticated
``device`` (the request handler) passes ``origin_authenticated=True``: the evidence is signed
by that same node key, so its signature is not verified a second time
(``liveness.server.judge_evidence``).
"""
from __future__ import annotations

import time
from collections.abc import Callable

from appliance.errors import ApplianceError
from appliance.liveness.evidence import from_transport
from appliance.liveness.server import ServerPolicy, judge_evidence
from appliance.protocol.directory import NodeDirectory

OFF = "off"


def second_liveness_judgement(required_level: str, directory: NodeDirectory,
                              clock: Callable[[], float] = time.time) -> Callable[..., bool]:
    policy = ServerPolicy(min_level=required_level)

    def judge(device: str, evidence: dict, origin_authenticated: bool = False) -> bool:
        if required_level == OFF:
            return True
        try:
            signed = from_transport(evidence)
            public_key = directory.get(device).signing.public_bytes_raw()
        except ApplianceError:
            return False
        return judge_evidence(signed, public_key, policy, clock(), origin_authenticated).accepted

    return judge
