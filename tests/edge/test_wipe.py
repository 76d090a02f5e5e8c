"""The door's remote wipe without a broker: real PKI, envelope keys, SQLCipher cache and outbox,
a real (unconnected) link. Orders are sealed as the matcher seals them; the broker-backed run,
from ``appliance provision revoke`` to the door, is tests/transport/test_wipe_e2e.py."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from appliance.edge.offline import CACHE_FILE, OUTBOX_FILE, device_folder, open_door
from appliance.edge.wipe import WIPED, WIPED_MARKER
from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages, topics
from appliance.protocol.directory import MATCHER_NODE
from appliance.protocol.wipe_messages import WipeOrder
from appliance.security.envelope import MessageType, Sealer
from appliance.security.keys import CACHE_DB, OUTBOX_DB, FileKeyProvider, ensure_keys
from appliance.site import Site
from appliance.stores.device import CacheEntry, DeviceCache
from appliance.transport.mqtt import Incoming
from appliance.vision.templates import Template
from diskkit import fill, small_disk
from offkit import PACK, offline_config, probe_of, request, unit, wait_for

DOOR, OTHER = "door-a", "door-b"


@pytest.fixture
def site(tmp_path):
    made = Site(tmp_path / "site")
    made.provision((DOOR, OTHER))
    return made


def _fill(door, rng, people: int = 3) -> list[np.ndarray]:
    """Templates in the door's cache, confirmed current: the door decides locally from them."""
    vectors = [unit(rng) for _ in range(people)]
    entries = [CacheEntry(f"s{i}", Template(v, *PACK), i + 1, "P****", "") for i, v in enumerate(vectors)]
    assert door.cache.apply_changes(0, people, entries, [])
    door.cache.confirm_current()
    door.sync.current.set()
    return vectors


def _order(site, door: str, signer: str = MATCHER_NODE, names: str | None = None) -> Incoming:
    keys = site.central_keys().renamed(signer) if signer == MATCHER_NODE else site.device_keys(signer)
    order = WipeOrder(messages.new_id(), names or door, time.time(), "secadmin")
    sealed = Sealer(keys).seal(site.directory.get(door), MessageType.WIPE, order.encode())
    return Incoming(topics.device_topic(door, topics.WIPE), sealed, 1, False)


def test_a_valid_order_shreds_the_cache_key_first_and_the_door_stops_deciding(site):
    door = open_door(site, DOOR, offline_config(mode="local"), threshold=0.4, connect=False)
    folder, provider = device_folder(site, DOOR), FileKeyProvider(device_folder(site, DOOR))
    try:
        rng = np.random.default_rng(3)
        vector = _fill(door, rng)[0]
        assert door.decider.request(request(DOOR, probe_of(vector, rng)), PACK).accepted
        door.cache.checkpoint()  # every template in the main file, as a thief would copy it
        stolen = shutil.copy(folder / CACHE_FILE, folder.parent / "stolen-cache.db")
        order = _order(site, DOOR)
        door.wipe.on_message(order)
        # shredded, then the confirmation (which this unconnected link cannot deliver)
        assert wait_for(lambda: door.wipe.last_done is not None)
        assert not provider.exists(CACHE_DB) and not provider.exists(OUTBOX_DB)
        assert not [p.name for p in folder.iterdir() if p.name.startswith((CACHE_FILE, OUTBOX_FILE))]
        assert (folder / WIPED_MARKER).exists()
        done = door.wipe.last_done
        assert done.key_destroyed and CACHE_FILE in done.files_removed and done.device_id == DOOR
        decision = door.decider.request(request(DOOR, probe_of(vector, rng)), PACK)
        assert not decision.accepted and decision.reason == messages.Reason.UNAVAILABLE
        assert door.decider.status.cache == WIPED and not door.decider.decision_available
        door.wipe.on_message(order)  # the same order again: refused as a replay, nothing else happens
        assert door.wipe.stats["rejected"] == 1 and door.wipe.stats["wiped"] == 1
    finally:
        door.close()
    # the copy taken before the wipe opens with no key there is now
    ensure_keys(provider, (CACHE_DB,))
    with pytest.raises(ApplianceError) as unreadable:
        DeviceCache.open(stolen, provider)
    assert unreadable.value.code is ErrorCode.STORE_UNREADABLE
    provider.destroy(CACHE_DB)
    with pytest.raises(ApplianceError) as refused:
        open_door(site, DOOR, offline_config(), threshold=0.4, connect=False)
    assert refused.value.code is ErrorCode.PKI_ERROR and "wiped remotely" in refused.value.detail
    assert not provider.exists(CACHE_DB)  # refusing to start created no new key either


@pytest.mark.parametrize("forgery", ["device-signed", "other-door", "other-topic"])
def test_a_forged_or_misdirected_order_is_refused_and_changes_nothing(site, forgery):
    door = open_door(site, DOOR, offline_config(mode="local"), threshold=0.4, connect=False)
    try:
        rng = np.random.default_rng(4)
        vector = _fill(door, rng)[0]
        if forgery == "device-signed":  # another provisioned door signs an order for this one
            incoming = _order(site, DOOR, signer=OTHER)
        elif forgery == "other-door":  # a matcher's order for another door, replayed at this one
            incoming = _order(site, DOOR, names=OTHER)
        else:  # an order sealed to this door, arriving on another door's topic
            order = _order(site, DOOR)
            incoming = Incoming(topics.device_topic(OTHER, topics.WIPE), order.payload, 1, False)
        door.wipe.on_message(incoming)
        assert door.wipe.stats["rejected"] == 1 and not door.wipe.done.is_set()
        assert FileKeyProvider(device_folder(site, DOOR)).exists(CACHE_DB)
        assert door.decider.request(request(DOOR, probe_of(vector, rng)), PACK).accepted
    finally:
        door.close()


def test_a_door_whose_disk_is_full_is_wiped_all_the_same(site):
    """A stolen door may have a full disk: its marker cannot be written then, but destroying the
    keys and the stores needs no room, and the door stops deciding at once."""
    with small_disk(device_folder(site, DOOR)) as folder:
        door = open_door(site, DOOR, offline_config(mode="local"), threshold=0.4, connect=False)
        provider = FileKeyProvider(folder)
        try:
            rng = np.random.default_rng(6)
            vector = _fill(door, rng)[0]
            filler = fill(folder)
            door.wipe.on_message(_order(site, DOOR))
            assert wait_for(lambda: door.wipe.last_done is not None)
            assert door.wipe.stats["marker_not_written"] == 1 and not (folder / WIPED_MARKER).exists()
            assert door.wipe.last_done.key_destroyed and door.wipe.stats.get("wipe_failed", 0) == 0
            assert not provider.exists(CACHE_DB) and not provider.exists(OUTBOX_DB)
            assert not [p.name for p in folder.iterdir() if p.name.startswith((CACHE_FILE, OUTBOX_FILE))]
            decision = door.decider.request(request(DOOR, probe_of(vector, rng)), PACK)
            assert not decision.accepted and decision.reason == messages.Reason.UNAVAILABLE
            filler.unlink()
        finally:
            door.close()


def test_a_wipe_cut_by_a_power_loss_is_finished_at_the_next_start_which_then_refuses(site):
    door = open_door(site, DOOR, offline_config(), threshold=0.4, connect=False)
    _fill(door, np.random.default_rng(5))
    door.close()
    folder, provider = device_folder(site, DOOR), FileKeyProvider(device_folder(site, DOOR))
    # the marker was written, then the power went: key and file are still there
    (folder / WIPED_MARKER).write_text('{"wipe_id": "0123", "at": 0}')
    assert provider.exists(CACHE_DB) and (folder / CACHE_FILE).exists()
    with pytest.raises(ApplianceError) as refused:
        open_door(site, DOOR, offline_config(), threshold=0.4, connect=False)
    assert refused.value.code is ErrorCode.PKI_ERROR and "re-provision" in refused.value.detail
    assert not provider.exists(CACHE_DB) and not provider.exists(OUTBOX_DB)
    assert not (folder / CACHE_FILE).exists() and not (folder / OUTBOX_FILE).exists()


def test_destroying_a_key_overwrites_and_removes_it_and_its_staged_replacement(tmp_path):
    from appliance.security.keys import generate_key

    provider = FileKeyProvider(tmp_path / "keys")
    ensure_keys(provider, (CACHE_DB,))
    provider.stage(generate_key(CACHE_DB))
    provider.destroy(CACHE_DB)
    assert not provider.exists(CACHE_DB) and provider.staged(CACHE_DB) is None
    assert list((tmp_path / "keys").iterdir()) == []
    provider.destroy(CACHE_DB)  # idempotent: a wipe finished twice
