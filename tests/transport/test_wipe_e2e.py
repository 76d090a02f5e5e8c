"""Revocation wipes the door, on a real Mosquitto with TLS and ACLs, real SQLCipher stores, a
real matcher replica and doors synced from it (tests/offline/offkit.py), driven through
``appliance provision revoke`` as an authenticated security administrator.

A door that is online confirms the wipe: its cache key, cache.db and outbox are gone, it
refuses every pass and refuses to start again. A door that is offline does not hold up the
revocation: the audit entry says the wipe was not confirmed. A wipe order from a device
identity is refused by the broker (PUBACK 135) and, delivered anyway, by the door."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "offline"))  # offkit: a synced site

from appliance.cli.main import main  # noqa: E402
from appliance.config import load_config  # noqa: E402
from appliance.edge.offline import CACHE_FILE, OUTBOX_FILE, device_folder, open_door  # noqa: E402
from appliance.errors import ApplianceError, ErrorCode  # noqa: E402
from appliance.protocol import messages, topics  # noqa: E402
from appliance.protocol.wipe_messages import WipeOrder  # noqa: E402
from appliance.security.envelope import MessageType, Sealer  # noqa: E402
from appliance.security.keys import CACHE_DB, OUTBOX_DB, FileKeyProvider  # noqa: E402
from appliance.security.roles import Principal, Role  # noqa: E402
from appliance.stores.protected import ProtectedData  # noqa: E402
from appliance.transport.mqtt import Incoming, MqttEndpoint  # noqa: E402
from authkit import make_token  # noqa: E402
from offkit import PACK, make_site, offline_config, probe_of, request, start_matcher  # noqa: E402

SENDER = "matcher-2"  # the revoking command's matcher identity; matcher-1 runs the replica
WIPE_WAIT_S = 2.0  # [ops] wipe_confirm_s for the offline door: the wait is what is checked, not its default


@pytest.fixture(scope="module")
def wipe_site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("wipe-site"), config, people=4)
    replica = start_matcher(made)
    settings = made.folder / "appliance.toml"
    settings.write_text(f'[security]\nnode_id = "matcher"\n[matcher]\nname = "{SENDER}"\n'
                        f'[ops]\nbroker_host = "127.0.0.1"\nbroker_port = {made.broker.port}\n')
    made.settings = settings
    made.token = make_token(made.folder, Role.SECURITY_ADMIN, config=load_config(settings))
    yield made
    replica.stop()
    replica.store.close()
    made.broker.stop()
    made.data.close()


def _revoke(site, monkeypatch, device: str) -> int:
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(site.folder))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(site.folder))  # no 'appliance login' session here
    return main(["--config", str(site.settings), "--token", site.token, "provision", "revoke", device])


def _revocation_detail(site, device: str) -> str:
    with ProtectedData.from_config(load_config(site.settings), site.folder) as data:
        entries = [e for e in data.audit.export(Principal("test-auditor", Role.AUDITOR))
                   if e["action"] == "device.revoke" and e["object"] == device and e["result"] == "ok"]
    assert len(entries) == 1, entries
    return entries[0]["detail"]


def _synced_door(site, device: str):
    door = open_door(site, device, offline_config(mode="local"), threshold=0.4)
    assert door.sync.wait_current(10) and door.cache.count() > 0  # templates to match locally
    return door


def _accepted(site, door, device: str) -> bool:
    vector = next(iter(site.people.values()))
    return door.decider.request(request(device, probe_of(vector, site.rng)), PACK).accepted


def test_a_wipe_order_from_a_device_is_refused_by_the_broker_and_by_the_door(wipe_site):
    site = wipe_site
    door = _synced_door(site, "door-c")
    forger = MqttEndpoint(site.mqtt("door-b"))
    try:
        order = WipeOrder(messages.new_id(), "door-c", time.time(), "intruder")
        sealed = Sealer(site.device_keys("door-b")).seal(site.directory.get("door-c"), MessageType.WIPE,
                                                         order.encode())
        wipe_topic = topics.device_topic("door-c", topics.WIPE)
        forger.connect()
        with pytest.raises(ApplianceError) as refused:
            forger.publish(wipe_topic, sealed)
        assert refused.value.code is ErrorCode.MESSAGE_REJECTED  # PUBACK 135: not a matcher
        door.wipe.on_message(Incoming(wipe_topic, sealed, 1, False))  # as if a broker let it through
        assert door.wipe.stats["rejected"] == 1 and not door.wipe.done.is_set()
        assert FileKeyProvider(device_folder(site, "door-c")).exists(CACHE_DB)
        assert _accepted(site, door, "door-c")
    finally:
        forger.close(announce_offline=False)
        door.close()


def test_revoking_an_online_door_wipes_its_cache_before_the_certificate_goes(wipe_site, monkeypatch):
    site = wipe_site
    door = _synced_door(site, "door-a")
    folder, provider = device_folder(site, "door-a"), FileKeyProvider(device_folder(site, "door-a"))
    try:
        assert _accepted(site, door, "door-a")
        assert _revoke(site, monkeypatch, "door-a") in (0, ErrorCode.BROKER_UNAVAILABLE.exit_status)
        assert site.broker.pki.identities()["door-a"].revoked
        assert door.wipe.done.is_set() and door.wipe.finished.wait(5)  # confirmed: shredded before it answered
        assert not provider.exists(CACHE_DB) and not provider.exists(OUTBOX_DB)
        assert not [p.name for p in folder.iterdir() if p.name.startswith((CACHE_FILE, OUTBOX_FILE))]
        decision = door.decider.request(request("door-a", probe_of(next(iter(site.people.values())), site.rng)),
                                        PACK)
        assert not decision.accepted and decision.reason == messages.Reason.UNAVAILABLE
        detail = _revocation_detail(site, "door-a")
        assert detail.startswith("wipe confirmed: door-a destroyed its cache key") and CACHE_FILE in detail
    finally:
        door.close()
    with pytest.raises(ApplianceError) as restart:
        open_door(site, "door-a", offline_config(), threshold=0.4)
    assert restart.value.code is ErrorCode.PKI_ERROR and "wiped remotely" in restart.value.detail


def test_revoking_an_offline_door_completes_and_records_the_wipe_unconfirmed(wipe_site, monkeypatch):
    site = wipe_site
    _synced_door(site, "door-b").close()  # synced once, then gone: powered off, or stolen
    monkeypatch.setenv("APPLIANCE__OPS__WIPE_CONFIRM_S", str(WIPE_WAIT_S))
    started = time.monotonic()
    assert _revoke(site, monkeypatch, "door-b") in (0, ErrorCode.BROKER_UNAVAILABLE.exit_status)
    waited = time.monotonic() - started
    assert WIPE_WAIT_S <= waited < WIPE_WAIT_S + 20  # the configured wait, then the revocation went on
    assert site.broker.pki.identities()["door-b"].revoked
    detail = _revocation_detail(site, "door-b")
    assert detail.startswith("wipe not confirmed: door-b did not answer"), detail
    # the door's cache stays behind, encrypted under a key only the door holds; it can no longer sync
    assert (device_folder(site, "door-b") / CACHE_FILE).exists()
