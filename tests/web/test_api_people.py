"""People over HTTP with the real enrollment desk: real models, real photos from the shared
faces, real stores. Enrollment answers 201, 409 (duplicate) or 422 (failed to enrol, with
per-image guidance); names leave masked unless a security administrator unmasks one (logged);
identify and verify answer a decision, never a score; deletion returns the signed receipt."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from apikit import api_config, bearer, running, tokens_for
from appliance.ops import totp
from appliance.security.roles import Role
from authkit import login_session

FULL_NAME = "Ouyang Mingzhu"  # the masked form keeps only the family name's first letter
SURNAME_TAIL = "Mingzhu"
PERSON_A, PERSON_B, STRANGER = "id07201", "id07206", "id07211"  # every capture used here passes the profile
CONSENT = {"consent_ref": "form-2026-0042"}


def photos(faces: Path, identity: str, start: int = 0, count: int = 3) -> list[tuple[str, tuple[str, bytes, str]]]:
    files = sorted((faces / "celeba-dev" / identity).glob("*.jpg"))[start:start + count]
    return [("images", (f.name, f.read_bytes(), "image/jpeg")) for f in files]


def flat_png(value: int = 128) -> bytes:
    ok, buffer = cv2.imencode(".png", np.full((240, 240, 3), value, np.uint8))
    assert ok
    return buffer.tobytes()


@pytest.fixture(scope="module")
def site(tmp_path_factory, faces):
    root = tmp_path_factory.mktemp("people")
    config = api_config()
    tokens = tokens_for(root, config)
    admin = login_session(root, Role.SECURITY_ADMIN, config=config)
    with running(root, config) as client:
        enrolled = client.post("/api/people", data={"name": FULL_NAME, **CONSENT, "groups": ["lobby"]},
                               files=photos(faces, PERSON_A), headers=bearer(tokens[Role.OPERATOR]))
        yield client, tokens, enrolled, admin


def test_enrollment_creates_a_person(site):
    _, _, enrolled, _ = site
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert body["status"] == "enrolled" and body["subject_id"] and body["images_used"] >= 1
    assert FULL_NAME not in enrolled.text


def test_the_same_face_again_is_a_409_duplicate_naming_the_holder_masked(site, faces):
    client, tokens, enrolled, _ = site
    again = client.post("/api/people", data={"name": "Someone Else", **CONSENT}, files=photos(faces, PERSON_A, 3),
                        headers=bearer(tokens[Role.OPERATOR]))
    assert again.status_code == 409, again.text
    body = again.json()
    assert body["status"] == "duplicate" and enrolled.json()["subject_id"] in body["duplicate_of"]
    assert SURNAME_TAIL not in again.text


def test_no_usable_face_is_a_422_with_guidance_per_image(site):
    client, tokens, _, _ = site
    blank = [("images", (f"blank-{i}.png", flat_png(40 * i + 60), "image/png")) for i in range(3)]
    failed = client.post("/api/people", data={"name": "Nobody Here", **CONSENT}, files=blank,
                         headers=bearer(tokens[Role.OPERATOR]))
    assert failed.status_code == 422, failed.text
    body = failed.json()
    assert body["status"] == "failed_to_enroll" and len(body["rejected"]) == 3
    assert all(r["image"].startswith("blank-") and r["reason"] and r["guidance"] for r in body["rejected"])
    total = client.get("/api/people", headers=bearer(tokens[Role.OPERATOR])).json()["total"]
    assert total == 1  # nothing half-registered


def test_names_are_masked_for_every_listing_and_unmasked_only_for_the_security_administrator(site):
    client, tokens, enrolled, admin = site
    subject = enrolled.json()["subject_id"]
    operator = bearer(tokens[Role.OPERATOR])
    for answer in (client.get("/api/people", headers=operator),
                   client.post("/api/people/search", json={"q": "Ouyang"}, headers=operator),
                   client.get(f"/api/people/{subject}", headers=operator)):
        assert answer.status_code == 200 and SURNAME_TAIL not in answer.text and subject in answer.text
    listed = client.post("/api/people/search", json={"q": "Ouyang"}, headers=operator).json()
    assert listed["total"] == 1 and listed["items"][0]["groups"] == ["lobby"]
    assert client.get(f"/api/people/{subject}", params={"unmasked": True}, headers=operator).status_code == 403
    # no token scope grants unmasked reading: it takes a security administrator's session
    assert client.get(f"/api/people/{subject}", params={"unmasked": True},
                      headers=bearer(tokens[Role.SECURITY_ADMIN])).status_code == 403
    account, password, secret = admin
    session = client.post("/api/session", json={"account": account, "password": password,
                                                "totp": totp.totp(secret)}).json()["token"]
    client.cookies.clear()
    revealed = client.get(f"/api/people/{subject}", params={"unmasked": True}, headers=bearer(session))
    assert revealed.status_code == 200 and revealed.json()["name"] == FULL_NAME
    audit = client.get("/api/audit", params={"limit": 1000}, headers=bearer(tokens[Role.AUDITOR])).json()["items"]
    assert any(e["action"] == "identity.reveal" and e["object"] == subject and e["result"] == "ok" for e in audit)
    assert SURNAME_TAIL not in str(audit)
    assert client.get("/api/people/no-such-subject", headers=operator).status_code == 404


def test_identify_and_verify_answer_a_decision_never_a_score(site, faces):
    client, tokens, enrolled, _ = site
    subject = enrolled.json()["subject_id"]
    operator = bearer(tokens[Role.OPERATOR])
    probe = photos(faces, PERSON_A, 6, 1)[0][1]
    stranger = photos(faces, STRANGER, 0, 1)[0][1]
    found = client.post("/api/identify", files={"image": probe}, headers=operator)
    assert found.status_code == 200, found.text
    assert found.json()["decision"] == "match" and found.json()["subject_id"] == subject
    assert "score" not in found.text and SURNAME_TAIL not in found.text
    assert client.post("/api/identify", files={"image": stranger}, headers=operator).json()["decision"] == "no_match"
    same = client.post("/api/verify", data={"subject_id": subject}, files={"image": probe}, headers=operator)
    assert same.json() == {"decision": "match", "subject_id": subject, "name": ""}
    other = client.post("/api/verify", data={"subject_id": subject}, files={"image": stranger}, headers=operator)
    assert other.json()["decision"] == "no_match" and "score" not in other.text
    assert client.post("/api/identify", files={"image": probe},
                       headers=bearer(tokens[Role.AUDITOR])).status_code == 403


def test_groups_are_set_checked_and_audited(site):
    client, tokens, enrolled, _ = site
    subject = enrolled.json()["subject_id"]
    operator = bearer(tokens[Role.OPERATOR])
    done = client.put(f"/api/people/{subject}/groups", json={"groups": ["lab", "lobby"]}, headers=operator)
    assert done.status_code == 200 and done.json()["groups"] == ["lab", "lobby"]
    assert client.put(f"/api/people/{subject}/groups", json={"groups": ["no spaces"]}, headers=operator
                      ).status_code == 422
    assert client.put(f"/api/people/{subject}/groups", json={"groups": "lab"}, headers=operator).status_code == 422
    assert client.put("/api/people/nobody/groups", json={"groups": []}, headers=operator).status_code == 404


def test_delete_returns_the_signed_receipt_once(site, faces):
    client, tokens, _, _ = site
    operator, security = bearer(tokens[Role.OPERATOR]), bearer(tokens[Role.SECURITY_ADMIN])
    made = client.post("/api/people", data={"name": "Short Stay", **CONSENT}, files=photos(faces, STRANGER, 3),
                       headers=operator)
    subject = made.json()["subject_id"]
    assert client.delete(f"/api/people/{subject}", headers=operator).status_code == 403
    deleted = client.delete(f"/api/people/{subject}", headers=security)
    assert deleted.status_code == 200, deleted.text
    receipt = deleted.json()["receipt"]
    assert receipt["subject_id"] == subject and receipt["signature"] and receipt["items"]
    again = client.delete(f"/api/people/{subject}", headers=security)
    assert again.status_code == 410 and again.json()["error"]["name"] == "SUBJECT_ALREADY_DELETED"


def test_enrollment_and_people_say_where_the_face_works(site, faces):
    """No justification for central matching on this site: a face without local-matching
    consent opens no door, and the answer says why and what to do; with the consent, the door
    caches of its groups hold it. The listing shows the same."""
    client, tokens, enrolled, _ = site
    operator = bearer(tokens[Role.OPERATOR])
    body = enrolled.json()
    assert body["usable_at"]["where"] == "nowhere" and not body["usable_at"]["local_matching"]
    assert "no local-matching consent" in body["usable_at"]["reason"]
    assert "appliance site matching justify" in body["usable_at"]["action"]
    (warning,) = body["warnings"]
    assert "usable at no door" in warning and body["usable_at"]["action"] in warning
    local = client.post("/api/people", data={"name": "Lu Xun", **CONSENT, "groups": ["lab"], "local_matching": "true"},
                        files=photos(faces, PERSON_B), headers=operator)
    assert local.status_code == 201, local.text
    assert local.json()["usable_at"]["where"] == "doors" and local.json()["usable_at"]["groups"] == ["lab"]
    assert local.json()["warnings"] == []
    listed = {p["subject_id"]: p["usable_at"] for p in client.get("/api/people", headers=operator).json()["items"]}
    assert listed[body["subject_id"]]["where"] == "nowhere" and listed[local.json()["subject_id"]]["where"] == "doors"
    one = client.get(f"/api/people/{local.json()['subject_id']}", headers=operator).json()
    assert one["usable_at"] == local.json()["usable_at"]
    schema = client.get("/api/openapi.json").json()["components"]["schemas"]
    assert {"usable_at", "warnings"} <= set(schema["Enrollment"]["properties"]) and "Usability" in schema


@pytest.fixture
def small(tmp_path):
    config = api_config(max_upload_mb=0.5, max_image_mb=0.1)
    token = tokens_for(tmp_path, config)[Role.OPERATOR]
    with running(tmp_path, config) as client:
        yield client, bearer(token)


def test_an_oversized_body_is_413_before_it_is_read(small):
    client, auth = small
    big = [("images", ("big.jpg", b"\xff\xd8" + b"0" * 700_000, "image/jpeg"))]
    answer = client.post("/api/people", data={"name": "A B", **CONSENT}, files=big, headers=auth)
    assert answer.status_code == 413


def test_an_oversized_image_is_413(small):
    client, auth = small
    image = [("images", ("large.png", flat_png() + b"\0" * 150_000, "image/png"))]
    answer = client.post("/api/people", data={"name": "A B", **CONSENT}, files=image, headers=auth)
    assert answer.status_code == 413 and "large.png" in answer.text


@pytest.mark.parametrize("upload,status", [
    (("notes.txt", b"hello, not a face", "text/plain"), 415),
    (("fake.jpg", b"hello, not a face", "image/jpeg"), 415),
    (("empty.png", b"", "image/png"), 415),
])
def test_non_images_are_refused_with_a_reason(small, upload, status):
    client, auth = small
    answer = client.post("/api/people", data={"name": "A B", **CONSENT}, files=[("images", upload)], headers=auth)
    assert answer.status_code == status, answer.text
    assert upload[0] in answer.text


@pytest.mark.parametrize("fields", [
    {"name": "A B", **CONSENT, "local_matching": "perhaps"},
    {"name": "A B", **CONSENT, "age_band": "ancient"},
    {"name": "A B"},  # no consent reference
])
def test_wrong_form_fields_are_422(small, fields):
    client, auth = small
    files = [("images", ("face.png", flat_png(), "image/png"))]
    assert client.post("/api/people", data=fields, files=files, headers=auth).status_code == 422


def test_no_images_is_422(small):
    client, auth = small
    assert client.post("/api/people", data={"name": "A B", **CONSENT}, headers=auth).status_code == 422
