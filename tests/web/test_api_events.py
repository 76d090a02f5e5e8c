"""The door log (filters, paging, CSV, server-sent events), the devices (sync state, online,
revocation) and /metrics, over events recorded in the real sync store the way the matcher's
EventRecorder records them from device outboxes."""
from __future__ import annotations

import csv
import io
import json
import time

import pytest
from fastapi.testclient import TestClient

from apikit import BASE_URL, api_config, bearer, door_event, provision_devices, record_events, running, tokens_for
from appliance.matcher.sync_store import EventRecord
from appliance.security.keys import ensure_keys
from appliance.security.roles import Role
from appliance.stores.protected import key_provider
from appliance.web.app import create_app

T0 = 1_790_000_000.0


def _events() -> list[EventRecord]:
    return [
        door_event("e1", "door-1", "accepted", T0),
        door_event("e2", "door-1", "rejected", T0 + 10),
        door_event("e3", "door-2", "accepted", T0 + 20),
        EventRecord("e4", "door-2", "event", "local_decision", T0 + 30,
                    {"accepted": False, "reason": "no_match", "subject": "", "mode": "local"}),
        EventRecord("a1", "door-2", "alarm", "decision_unavailable", T0 + 40, {"reason": "unavailable"}),
        EventRecord("e5", "door-1", "event", "=HYPERLINK(\"http://x\")", T0 + 50, {"outcome": "-1+2"}),
    ]


@pytest.fixture
def site(tmp_path):
    config = api_config()
    tokens = tokens_for(tmp_path, config)
    provision_devices(tmp_path)
    with running(tmp_path, config) as client:
        record_events(client, _events(), now=T0 + 100)  # received long ago: no device counts as online
        yield client, bearer(tokens[Role.AUDITOR]), tokens


def test_filters_and_paging(site):
    client, auth, _ = site
    everything = client.get("/api/events", headers=auth).json()
    assert everything["total"] == 6 and [e["event_id"] for e in everything["items"]][:2] == ["e5", "a1"]
    door_1 = client.get("/api/events", params={"device": "door-1"}, headers=auth).json()
    assert {e["event_id"] for e in door_1["items"]} == {"e1", "e2", "e5"}
    accepted = client.get("/api/events", params={"outcome": "accepted"}, headers=auth).json()
    assert {e["event_id"] for e in accepted["items"]} == {"e1", "e3"}
    local = client.get("/api/events", params={"outcome": "rejected", "kind": "local_decision"}, headers=auth).json()
    assert [e["event_id"] for e in local["items"]] == ["e4"]
    window = client.get("/api/events", params={"since": T0 + 10, "until": T0 + 30}, headers=auth).json()
    assert {e["event_id"] for e in window["items"]} == {"e2", "e3"}
    alarms = client.get("/api/events", params={"type": "alarm"}, headers=auth).json()
    assert [e["kind"] for e in alarms["items"]] == ["decision_unavailable"]
    page = client.get("/api/events", params={"limit": 2, "offset": 2}, headers=auth).json()
    assert page["total"] == 6 and [e["event_id"] for e in page["items"]] == ["e4", "e3"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "many"}, {"since": "yesterday"}, {"type": "other"},
                                    {"offset": -1}])
def test_wrong_types_are_422(site, params):
    client, auth, _ = site
    assert client.get("/api/events", params=params, headers=auth).status_code == 422


@pytest.mark.parametrize("path,params", [("/api/events.csv", {}), ("/api/events", {"format": "csv"})])
def test_csv_export_is_the_same_selection_and_formula_safe(site, path, params):
    client, auth, _ = site
    answer = client.get(path, params={**params, "device": "door-1"}, headers=auth)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["event_id"] for r in rows] == ["e5", "e2", "e1"]
    assert rows[0]["kind"].startswith("'=") and rows[0]["outcome"] == "'-1+2"  # never run as a formula
    assert json.loads(rows[1]["details"])["outcome"] == "rejected"


def test_stream_sends_recorded_events_in_order(site):
    client, auth, _ = site
    with client.stream("GET", "/api/events/stream", params={"after_seq": 1, "max_events": 2},
                       headers=auth) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    blocks = [b for b in text.split("\n\n") if b.strip()]
    first = dict(line.split(": ", 1) for line in blocks[0].splitlines())
    assert first["id"] == "2" and first["event"] == "event"
    assert json.loads(first["data"])["event_id"] == "e2"
    assert len(blocks) == 2


def test_stream_resumes_after_last_event_id_and_sees_new_events(site):
    client, auth, _ = site
    with client.stream("GET", "/api/events/stream", params={"max_events": 1, "device": "door-2"},
                       headers={**auth, "Last-Event-ID": "6"}) as stream:
        record_events(client, [door_event("late", "door-2", "accepted", T0 + 60)])
        text = "".join(stream.iter_text())
    assert json.loads(text.split("data: ", 1)[1].split("\n", 1)[0])["event_id"] == "late"


def test_devices_show_policy_sync_state_and_can_be_revoked(site):
    client, _, tokens = site
    auth = bearer(tokens[Role.SYSTEM_ADMIN])
    services = client.app.state.services
    with services.stores():
        services.sync.record_ack("door-1", 0, [], time.time())
    devices = {d["name"]: d for d in client.get("/api/devices", headers=auth).json()}
    assert devices["door-1"]["group"] == "lobby" and devices["door-1"]["modes"] == ["verify"]
    assert devices["door-1"]["online"] and devices["door-1"]["acked_revision"] == 0
    assert not devices["door-2"]["online"] and devices["door-2"]["modes"] == ["verify", "identify"]
    revoked = client.post("/api/devices/door-2/revoke", headers=auth)
    assert revoked.status_code == 200 and revoked.json()["revoked"]
    assert revoked.json()["broker_restarted"] or "restart appliance-broker.service" in revoked.json()["detail"]
    assert services.pki.identities()["door-2"].revoked
    assert {d["name"]: d for d in client.get("/api/devices", headers=auth).json()}["door-2"]["revoked"]
    assert client.post("/api/devices/door-9/revoke", headers=auth).status_code == 409
    assert client.post("/api/devices/door-1/revoke", headers=bearer(tokens[Role.OPERATOR])).status_code == 403


def test_metrics_need_a_token_off_loopback_and_count_what_happened(site):
    client, auth, tokens = site
    client.get("/api/people", headers=auth)  # a 403, counted as a refusal
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(tokens[Role.SECURITY_ADMIN])).status_code == 200
    text = client.get("/metrics", headers=auth).text
    assert 'appliance_door_events_total{kind="pass",outcome="accepted",type="event"} 2.0' in text
    assert 'appliance_door_events_total{kind="local_decision",outcome="rejected",type="event"} 1.0' in text
    assert "appliance_gallery_subjects 0.0" in text and "appliance_devices 2.0" in text
    assert "appliance_devices_online 0.0" in text and "appliance_sync_lag_revisions 0.0" in text
    assert 'appliance_api_requests_total{method="GET",route="/api/events",status="200"}' not in text  # none yet
    assert 'appliance_api_refusals_total{status="403"} 1.0' in text
    assert 'appliance_api_refusals_total{status="401"} 1.0' in text
    assert 'appliance_api_request_seconds_bucket{le="0.005",route="/api/people"}' in text
    assert "door-1" not in text  # counts, never names or ids


def test_metrics_are_open_to_loopback_only_when_configured(tmp_path):
    ensure_keys(key_provider(api_config().security, tmp_path))  # 'appliance keys init'
    for open_to_loopback, status in ((True, 200), (False, 401)):
        config = api_config(metrics_loopback=open_to_loopback)
        with TestClient(create_app(config, tmp_path), base_url=BASE_URL, client=("127.0.0.1", 40000)) as client:
            assert client.get("/metrics").status_code == status
