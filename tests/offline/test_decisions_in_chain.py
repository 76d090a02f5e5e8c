"""Door decisions taken while the door was cut off, faces and cards alike, reach the
tamper-evident audit log when it reconnects: on a real broker, with real stores, the real door
pieces and the real ``appliance audit verify`` run with an auditor's token. Each decision is entered once, with
the time the door decided and the door's own signature; tampering with one fails the check."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from appliance.config import load_config
from appliance.config.mode_tables import DoorMode
from appliance.edge.door_modes import CARD, Credential, CredentialDecider, DoorModeSchedule
from appliance.edge.offline import open_door
from appliance.errors import ErrorCode
from appliance.protocol.directory import MATCHER_NODE
from appliance.security.roles import Role
from appliance.stores import audit_devices
from authkit import make_token
from offkit import PACK, make_site, offline_config, probe_of, request, start_matcher, unit, wait_for

RECONNECT_S = 40  # paho's reconnect back-off (up to 30 s) after the broker comes back
CLI_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("chain-site"), config, people=3)
    yield made
    made.broker.stop()
    made.data.close()


def audit_cli(site, token: str, *args: str) -> subprocess.CompletedProcess:
    site_config = site.folder / "site.toml"
    site_config.write_text(f'[security]\nnode_id = "{MATCHER_NODE}"\n')
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(site.folder), "APPLIANCE_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "appliance", "--config", str(site_config), "audit", *args],
                          capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S)


def door_decisions(site, device: str) -> list:
    return [e for e in audit_devices.device_decisions(site.data.audit.entries()) if e.device == device]


def test_offline_decisions_are_in_the_chain_after_sync_and_verify_passes_until_one_is_changed(site):
    matcher = start_matcher(site)
    door = open_door(site, "door-a", offline_config(mode="local"), threshold=0.4)
    try:
        assert door.sync.wait_current(10)
        matcher.stop()
        matcher.store.close()
        matcher = None
        site.broker.stop()  # the door is cut off: it decides from its cache and queues the events
        assert wait_for(lambda: not door.link.online)
        before = time.time()
        people = list(site.people.items())[:2]
        for subject, vector in people:
            decision = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
            assert decision.accepted and decision.subject == subject
        stranger = door.decider.request(request("door-a", unit(site.rng)), PACK)
        assert not stranger.accepted and stranger.subject == ""
        card_holder = list(site.people)[2]  # a card at the same door, decided from the cache too
        cards = CredentialDecider(door.link, door.cache, DoorModeSchedule(DoorMode.CARD_OR_PIN), pin_attempts=3,
                                  pin_lockout_s=300.0, answer_timeout_s=1.0, pump=door.pump)
        card = cards.decide(Credential(CARD, "C-0002"), "door-a")
        assert (card.accepted, card.subject, cards.last_source) == (True, card_holder, "local")
        assert door.outbox.depth() == 4 and door_decisions(site, "door-a") == []
        decided = (before, time.time())

        site.broker.start()
        matcher = start_matcher(site)
        assert wait_for(lambda: door.outbox.depth() == 0, RECONNECT_S), dict(matcher.stats)
        assert wait_for(lambda: len(door_decisions(site, "door-a")) == 4)
        entries = door_decisions(site, "door-a")
        assert sorted(e.object for e in entries) == sorted(["-", card_holder, *(s for s, _ in people)])
        assert sorted(e.result for e in entries) == ["accepted", "accepted", "accepted", "rejected"]
        device_key = site.directory.get("door-a").signing
        for entry in entries:
            assert decided[0] <= entry.origin_at <= decided[1] < entry.time  # the door's time, kept apart
            assert audit_devices.evidence_problem(entry, lambda device: device_key) == ""
        kinds = sorted(json.loads(e.evidence)["event"]["kind"] for e in entries)
        assert kinds == ["credential_decision", "local_decision", "local_decision", "local_decision"]
        assert "C-0002" not in "".join(e.evidence + e.detail for e in entries)  # never the card number
        assert matcher.stats["decisions_signed"] == 4 and matcher.stats["decisions_unsigned"] == 0
    finally:
        door.close()
        if matcher is not None:
            matcher.stop()
            matcher.store.close()
    token = make_token(site.folder, Role.AUDITOR, config=load_config())
    verified = audit_cli(site, token, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit log ok" in verified.stdout and "4 door decisions signed by their doors" in verified.stdout

    # someone with the database key moves one decision an hour earlier
    target = entries[0].seq
    audit = site.data.audit
    audit.conn.executescript("DROP TRIGGER IF EXISTS entries_append_only;")
    audit.execute("UPDATE entries SET origin_at = origin_at - 3600 WHERE seq = ?", (target,))
    refused = audit_cli(site, token, "verify")
    assert refused.returncode == ErrorCode.AUDIT_TAMPERED.exit_status, refused.stdout + refused.stderr
    assert f"first bad entry {target}" in refused.stderr
