"""Processes killed for real: the matcher mid-stream (the door keeps deciding from its cache,
the outbox drains exactly once after the restart), and the edge daemon's offline agent
SIGKILLed in a loop during delta application and during outbox writes."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.edge.offline import CACHE_FILE, OUTBOX_FILE, device_folder, open_door
from appliance.matcher.sync_store import SYNC_FILE, SyncStore
from appliance.protocol import messages, topics
from appliance.security.keys import FileKeyProvider
from appliance.stores.device import DeviceCache, Outbox
from appliance.stores.protected import KEYS_DIR
from offkit import (ADMIN, PACK, REPO, enroll_person, make_site, matcher_process, offline_config, probe_of, request,
                    start_matcher, wait_for)

KILLS = 10
AGENT = Path(__file__).with_name("agent.py")  # a camera-less door


@pytest.fixture(scope="module")
def site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("kill-site"), config, people=6)
    yield made
    made.broker.stop()
    made.data.close()


def agent(site, device: str, events: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(AGENT), "--site", str(site.folder), "--port",
                             str(site.broker.port), "--device", device, "--events", str(events)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)


def read_lines(process: subprocess.Popen, into: list, stop: threading.Event) -> threading.Thread:
    def run():
        for line in process.stdout:
            into.append(json.loads(line))
            if stop.is_set():
                break
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def check_cache_consistent(site, device: str) -> int:
    """The cache opens, passes the integrity check and holds exactly a whole revision R: every
    entry is at most R, every template enrolled at or below R and still current is there, and
    nothing deleted at or below R is."""
    cache = DeviceCache.open(device_folder(site, device) / CACHE_FILE, FileKeyProvider(device_folder(site, device)))
    try:
        assert cache.integrity_problems() == []
        revision = cache.revision
        rows = {s: r for s, _, _, r in cache.held()}
        central = {row.subject_id: row.revision for row in site.data.biometric.rows()}
        tombs = {tomb.subject_id: tomb.revision for tomb in site.data.biometric.tombstones()}
        assert all(r <= revision for r in rows.values())
        assert {s for s, r in central.items() if r <= revision} <= set(rows)
        assert not {s for s, r in tombs.items() if r <= revision} & set(rows)
        return revision
    finally:
        cache.close()


def test_sigkill_during_delta_application_leaves_a_whole_revision(site):
    matcher = start_matcher(site, snapshot_after=150)
    rng = random.Random(3)
    revisions = []
    try:
        for round_ in range(KILLS):
            for _ in range(60):  # work for the agent: new enrollments ...
                enroll_person(site.data, site.rng, "Kill Test")
            for subject in rng.sample(sorted(row.subject_id for row in site.data.biometric.rows()), 4):
                site.data.delete_subject(ADMIN, subject)  # ... and deletions
                site.people.pop(subject, None)
            if round_ % 3 == 2:  # every third round: far behind, so a snapshot is being staged
                folder = device_folder(site, "door-c")
                for suffix in ("", "-wal", "-shm"):
                    (folder / (CACHE_FILE + suffix)).unlink(missing_ok=True)
            process = agent(site, "door-c")
            lines, stop = [], threading.Event()
            read_lines(process, lines, stop)
            assert wait_for(lambda lines=lines: lines, 20), "agent did not start"
            time.sleep(rng.uniform(0.0, 0.6))  # somewhere in the middle of applying deltas
            process.send_signal(signal.SIGKILL)
            process.wait()
            stop.set()
            revisions.append(check_cache_consistent(site, "door-c"))
        # afterwards a normal run catches up to the head
        process = agent(site, "door-c")
        lines, stop = [], threading.Event()
        read_lines(process, lines, stop)
        head = site.data.biometric.revision
        assert wait_for(lambda: any(line.get("current") and line["revision"] == head for line in lines), 30), lines[-3:]
        process.terminate()
        process.wait()
        assert check_cache_consistent(site, "door-c") == head
        assert len(set(revisions)) > 1, revisions  # kills landed at different revisions
    finally:
        matcher.stop()
        matcher.store.close()


def test_sigkill_during_outbox_writes_loses_no_committed_event(site):
    matcher = start_matcher(site)
    committed: list[str] = []
    rng = random.Random(4)
    try:
        for _ in range(KILLS):
            process = agent(site, "door-b", events=1_000_000)
            lines, stop = [], threading.Event()
            read_lines(process, lines, stop)
            assert wait_for(lambda lines=lines: len(lines) >= 5, 20)
            time.sleep(rng.uniform(0.05, 0.4))
            process.send_signal(signal.SIGKILL)
            process.wait()
            stop.set()
            time.sleep(0.05)
            committed += [line["committed"] for line in lines if "committed" in line]
            folder = device_folder(site, "door-b")
            outbox = Outbox.open(folder / OUTBOX_FILE, FileKeyProvider(folder))
            try:
                assert outbox.integrity_problems() == []
                queued = {ref for _, _, ref, _ in outbox.next_after(0, 10_000_000)}
                assert outbox.depth() == len(queued)
            finally:
                outbox.close()
            recorded = set(matcher.store.event_ids("door-b"))
            assert set(committed) <= queued | recorded  # committed = still queued or already recorded
        process = agent(site, "door-b")  # a clean run drains what is left
        lines, stop = [], threading.Event()
        read_lines(process, lines, stop)
        assert wait_for(lambda: set(committed) <= set(matcher.store.event_ids("door-b")), 60)
        assert wait_for(lambda: any(line.get("depth") == 0 for line in lines), 20)
        process.terminate()
        process.wait()
        ids = matcher.store.event_ids("door-b")
        assert len(ids) == len(set(ids))  # recorded exactly once
        assert set(committed) <= set(ids) and len(committed) > 100
    finally:
        matcher.stop()
        matcher.store.close()


def test_matcher_killed_mid_stream_door_decides_from_cache_then_outbox_drains_exactly_once(site, tmp_path):
    process = matcher_process(site)
    door = open_door(site, "door-a", offline_config(mode="central", answer_timeout_ms=300, outbox_resend_s=1.0),
                     threshold=0.4)
    sent: list[str] = []
    sources: list[str] = []
    try:
        assert door.sync.wait_current(20)
        people = list(site.people.items())
        restarted = None
        for index in range(60):
            subject, vector = people[index % len(people)]
            start = time.monotonic()
            decision = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
            elapsed = time.monotonic() - start
            assert decision.accepted, (index, decision)
            assert elapsed < 0.3 + 0.3, elapsed  # within the configured timeout (+ local match)
            sources.append(door.decider.last_source)
            event = messages.Event(messages.new_id(), "door-a", "pass", time.time(), {"n": index})
            door.pump.submit(topics.EVENT, event)
            sent.append(event.event_id)
            if index == 15:
                process.send_signal(signal.SIGKILL)  # mid-stream
                process.wait()
            if index == 45:
                restarted = matcher_process(site)
            time.sleep(0.02)
        assert "central" in sources[:15] and sources[20:45].count("local") == 25
        local_decisions = door.decider.stats["local"]
        assert wait_for(lambda: door.outbox.depth() == 0, 60), door.outbox.depth()
        assert wait_for(lambda: "central" in sources[46:] or door.decider.stats["central"] > 0, 1)
    finally:
        door.close()
        for proc in (process, restarted):
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
    store = SyncStore.open(site.central / SYNC_FILE, FileKeyProvider(site.central / KEYS_DIR))
    try:
        ids = store.event_ids("door-a")
        kinds = [event.kind for event in store.events("door-a")]
    finally:
        store.close()
    assert len(ids) == len(set(ids))  # no duplicate
    assert set(sent) <= set(ids)  # none lost
    assert kinds.count("local_decision") == local_decisions  # the offline decisions reached the matcher
    order = [i for i in ids if i in set(sent)]
    assert order == sent  # delivered in order
