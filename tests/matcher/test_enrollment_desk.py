"""The enrollment desk with real parts: the real pipeline and models, real photos from the
shared faces, real SQLCipher stores in the test's folder, the real audit log."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.config import SecurityConfig
from appliance.enrollment import MAX_ENROLLMENT_CAPTURES, enroll_labelled
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.eligibility import LOCAL_MATCH_SCOPE, Profiles
from appliance.matcher.enrollment_desk import (
    DUPLICATE, ENROLLED, FAILED_TO_ENROL, MATCH, NO_MATCH, EnrollmentDesk, EnrollmentRequest,
)
from appliance.matcher.enrollment_types import ACCESS_COMMAND, CENTRAL, DOORS, JUSTIFY_COMMAND, NOWHERE, Usability
from appliance.matcher.site_policy import justify, revoke
from appliance.matcher.sync_store import SyncStore
from appliance.security.consent import ENROLL_SCOPE, notice
from appliance.security.roles import Principal, Role
from appliance.stores.protected import ProtectedData
from appliance.vision.templates import Template

OPERATOR = Principal("desk-operator", Role.OPERATOR, "console")
SECURITY = Principal("desk-secadmin", Role.SECURITY_ADMIN, "console")
AUDITOR = Principal("desk-auditor", Role.AUDITOR)
READER = Principal("desk-reader", Role.OPERATOR, "api", frozenset({"people:read"}))
PERSON_A, PERSON_B, STRANGER = "id07201", "id07206", "id07211"  # every capture used here passes


@pytest.fixture
def desk(tmp_path, keys, pipeline, config):
    data = ProtectedData(tmp_path / "central", keys, SecurityConfig())
    sync = SyncStore.open(tmp_path / "central" / "sync.db", keys)
    yield EnrollmentDesk(data, sync, pipeline, config)
    sync.close()
    data.close()


def photos(faces: Path, identity: str, start: int = 0, count: int = 3) -> list[tuple[str, bytes]]:
    files = sorted((faces / "celeba-dev" / identity).glob("*.jpg"))[start:start + count]
    return [(f.name, f.read_bytes()) for f in files]


def encoded(image: np.ndarray, suffix: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(suffix, image)
    assert ok
    return buffer.tobytes()


def attempts(desk: EnrollmentDesk) -> set[str]:
    """The pseudonyms the desk gave its attempts (the objects of its audit entries)."""
    return {e.object for e in audit(desk) if e.object.startswith("s-")}


def nobody(desk: EnrollmentDesk, groups: bool = True) -> bool:
    """Nothing of anyone on record: no person, no consent, no template, no data key, no group."""
    tried = attempts(desk)
    assert tried, "no attempt was audited"
    return (not desk.data.identity.subject_ids(OPERATOR) and not desk.data.biometric.rows()
            and not any(desk.data.identity.consents(OPERATOR, s) or desk.data.vault.has_key(s) for s in tried)
            and not (groups and any(desk.sync.groups(s) for s in tried)))


def audit(desk: EnrollmentDesk) -> list:
    return desk.data.audit.entries()


def request(name: str = "Zhang San", **fields) -> EnrollmentRequest:
    return EnrollmentRequest(name=name, consent_ref=fields.pop("consent_ref", "form-2026-0042"), **fields)


def test_consent_comes_first(desk, faces):
    with pytest.raises(ApplianceError) as missing:
        request(consent_ref="  ")
    assert missing.value.code is ErrorCode.CONSENT_MISSING and "consent reference" in missing.value.detail
    child = request("Li Xiaoming", age_band="under_14")
    with pytest.raises(ApplianceError) as refused:
        desk.enroll(OPERATOR, child, [("never-decoded", b"not even an image")])
    assert refused.value.code is ErrorCode.CONSENT_MISSING and "guardian" in refused.value.detail
    old = request(notice_version="face-enrollment-1999")
    with pytest.raises(ApplianceError) as stale:
        desk.enroll(OPERATOR, old, photos(faces, PERSON_A))
    assert stale.value.code is ErrorCode.CONSENT_MISSING and "current notice" in stale.value.detail
    with pytest.raises(ApplianceError) as denied:
        desk.enroll(AUDITOR, request(), photos(faces, PERSON_A))
    assert denied.value.code is ErrorCode.PERMISSION_DENIED
    assert nobody(desk)
    results = [(e.action, e.result) for e in audit(desk)]
    assert results.count(("enrollment.consent", "refused")) == 2
    assert ("enrollment.start", "denied") in results


def test_enrolled_with_consent_reference_notice_groups_and_local_matching(desk, faces):
    current = notice("en")
    assert current.version == notice("zh-CN").version and "consent" in current.text
    outcome = desk.enroll(OPERATOR, request("王小明", age_band="under_14", guardian_name="王大明",
                                            staff_no="ST-2026-00042", groups=("lobby", "lab-2", "lobby"),
                                            local_matching=True, notice_version=current.version),
                          photos(faces, PERSON_A))
    assert outcome.status == ENROLLED and outcome.images_used == 3 and not outcome.rejected
    subject = outcome.subject_id
    record = desk.person(OPERATOR, subject)
    assert record["name"] == "王**" and record["templates"] == 1 and record["groups"] == ["lab-2", "lobby"]
    assert record["staff_no"] != "ST-2026-00042"  # masked
    consents = {c["scope"]: c for c in record["consents"]}
    assert set(consents) == {ENROLL_SCOPE, LOCAL_MATCH_SCOPE}
    assert consents[ENROLL_SCOPE]["reference"] == "form-****-**42"  # number-like text is masked in listings
    assert consents[ENROLL_SCOPE]["text_version"] == current.version and consents[ENROLL_SCOPE]["by_guardian"]
    stored = desk.data.identity.consents(OPERATOR, subject)
    assert {(c.consented_by, c.reference) for c in stored} == {("王大明", "form-2026-0042")}
    profile = Profiles(desk.data.identity, desk.sync.groups, OPERATOR).get(subject, 1)
    assert profile.allows("lobby") and not profile.allows("garage")
    trail = [(e.action, e.object, e.actor) for e in audit(desk)]
    for action in ("enrollment.consent", "enrollment.quality", "person.register", "consent.record",
                   "person.groups", "template.enroll", "enrollment"):
        assert (action, subject, OPERATOR.actor) in trail, action


def test_rejected_images_come_back_with_guidance(desk, faces):
    face = cv2.imdecode(np.frombuffer(photos(faces, PERSON_A, 0, 1)[0][1], np.uint8), cv2.IMREAD_COLOR)
    tiny = cv2.resize(face, (30, 36), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(face, (0, 0), 6)
    wall = np.random.default_rng(3).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    images = [("wall.png", encoded(wall)), ("tiny.png", encoded(tiny)), ("blurred.jpg", encoded(blurred, ".jpg"))]
    failed = desk.enroll(OPERATOR, request(), images)
    assert failed.status == FAILED_TO_ENROL and failed.subject_id == "" and failed.attempts == 1
    by_image = {r.image: r for r in failed.rejected}
    assert set(by_image) == {"wall.png", "tiny.png", "blurred.jpg"}
    assert by_image["wall.png"].reason == "no_face" and by_image["wall.png"].guidance == "step in front of the camera"
    assert all(r.reason and r.guidance for r in failed.rejected)
    assert "blurred" in by_image["blurred.jpg"].reason or "low_utility" in by_image["blurred.jpg"].reason
    assert nobody(desk)  # a failure to enrol leaves nothing behind
    assert ("enrollment.quality", "failed_to_enroll") in [(e.action, e.result) for e in audit(desk)]
    # a good photo in the same attempt is enough; the bad ones are still explained
    enrolled = desk.enroll(OPERATOR, request(), images[:2] + photos(faces, PERSON_A, 0, 1))
    assert enrolled.status == ENROLLED and enrolled.images_used == 1 and len(enrolled.rejected) == 2
    assert enrolled.as_dict()["rejected"][0] == {"image": "wall.png", "reason": "no_face",
                                                 "guidance": "step in front of the camera"}


def _png_header(width: int, height: int) -> bytes:
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + body
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(body)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_unreadable_uploads_are_refused_before_anything_is_written(desk, faces):
    good = photos(faces, PERSON_A, 0, 2)
    cases = {
        "text": b"name,consent\nZhang San,yes\n",
        "empty": b"",
        "bomb": _png_header(100_000, 100_000) + b"\x00" * 64,  # 10^10 pixels declared
        "cut": good[0][1][: len(good[0][1]) // 8],  # a JPEG cut short after its header
    }
    for label, data in cases.items():
        with pytest.raises(ApplianceError) as refused:
            desk.enroll(OPERATOR, request(), good + [(label, data)] if label != "cut" else [(label, data)] + good)
        assert refused.value.code is ErrorCode.IMAGE_UNREADABLE and label in refused.value.detail, label
    with pytest.raises(ApplianceError) as too_many:
        desk.enroll(OPERATOR, request(), good * MAX_ENROLLMENT_CAPTURES)
    assert too_many.value.code is ErrorCode.ENROLL_FAILED
    assert nobody(desk)


def test_a_duplicate_is_refused_and_only_a_security_administrator_overrides(desk, faces):
    first = desk.enroll(OPERATOR, request("Zhang San"), photos(faces, PERSON_A, 0))
    again = desk.enroll(OPERATOR, request("Zhang Wei"), photos(faces, PERSON_A, 3))
    assert again.status == DUPLICATE and again.subject_id == ""
    assert again.duplicate_of == f"Z**** S** ({first.subject_id})"
    assert again.message == f"already enrolled as Z**** S** ({first.subject_id})"
    assert desk.data.identity.subject_ids(OPERATOR) == [first.subject_id]
    with pytest.raises(ApplianceError) as operator:
        desk.enroll(OPERATOR, request("Zhang Wei", override_reason="identical twins, checked IDs"),
                    photos(faces, PERSON_A, 3))
    assert operator.value.code is ErrorCode.PERMISSION_DENIED and first.subject_id in operator.value.detail
    with pytest.raises(ApplianceError) as nothing_to_override:
        desk.enroll(SECURITY, request("Chen Qi", override_reason="twins"), photos(faces, PERSON_B))
    assert nothing_to_override.value.code is ErrorCode.PERMISSION_DENIED
    assert desk.data.identity.subject_ids(OPERATOR) == [first.subject_id]
    overridden = desk.enroll(SECURITY, request("Zhang Wei", override_reason="identical twins, checked IDs"),
                             photos(faces, PERSON_A, 3))
    assert overridden.status == ENROLLED and overridden.overridden
    assert set(desk.data.identity.subject_ids(OPERATOR)) == {first.subject_id, overridden.subject_id}
    entries = audit(desk)
    override = [e for e in entries if e.action == "enrollment.override" and e.result == "ok"]
    assert len(override) == 1 and override[0].actor == SECURITY.actor
    assert override[0].role == Role.SECURITY_ADMIN.value and "identical twins" in override[0].detail
    assert [e.result for e in entries if e.action == "enrollment.override"] == ["denied", "denied", "ok"]
    registered = [e for e in entries if e.action == "person.register" and e.object == overridden.subject_id]
    assert registered[0].actor == SECURITY.actor
    assert overridden.usable_at.where == NOWHERE and overridden.warnings  # read back as the writer may


def test_deleted_people_are_not_duplicates(desk, faces):
    first = desk.enroll(OPERATOR, request(), photos(faces, PERSON_A, 0))
    assert desk.identify(OPERATOR, photos(faces, PERSON_A, 5, 1)[0][1]).decision == MATCH
    desk.data.delete_subject(SECURITY, first.subject_id)
    assert desk.enroll(OPERATOR, request(), photos(faces, PERSON_A, 3)).status == ENROLLED


def test_identify_says_match_or_no_match_and_a_score_only_for_debugging(desk, faces):
    enrolled = desk.enroll(OPERATOR, request("Ana Lima"), photos(faces, PERSON_A))
    probe = photos(faces, PERSON_A, 6, 1)[0][1]
    found = desk.identify(OPERATOR, probe)
    assert (found.decision, found.subject_id, found.name, found.score) == (MATCH, enrolled.subject_id, "A** L***",
                                                                           None)
    assert set(found.as_dict()) == {"decision", "subject_id", "name"}
    debug = desk.identify(OPERATOR, probe, debug=True)
    assert isinstance(debug.score, float) and "score" in debug.as_dict()
    stranger = desk.identify(OPERATOR, photos(faces, STRANGER, 0, 1)[0][1])
    assert (stranger.decision, stranger.subject_id, stranger.name) == (NO_MATCH, "", "")
    with pytest.raises(ApplianceError) as blank:
        desk.identify(OPERATOR, np.full((200, 200, 3), 90, np.uint8))
    assert blank.value.code is ErrorCode.NO_FACE
    with pytest.raises(ApplianceError) as denied:
        desk.identify(SECURITY, probe)
    assert denied.value.code is ErrorCode.PERMISSION_DENIED
    identified = [(e.action, e.result) for e in audit(desk) if e.action == "identify"]
    assert identified == [("identify", MATCH), ("identify", MATCH), ("identify", NO_MATCH), ("identify", "no_face")]
    assert not any("score" in e.detail for e in audit(desk))


def test_a_failure_while_writing_leaves_no_half_registered_person(desk, faces):
    desk.sync.close()  # the sync store fails when the groups are assigned, after the person was written
    with pytest.raises(Exception, match="closed"):  # noqa: B017 - the database driver's own error
        desk.enroll(OPERATOR, request(groups=("lobby",)), photos(faces, PERSON_A))
    assert nobody(desk, groups=False)  # (the closed sync store cannot be asked)
    trail = [(e.action, e.result) for e in audit(desk)]
    assert ("person.register", "ok") in trail and ("consent.record", "ok") in trail  # written, then removed
    assert ("enrollment", "rolled_back") in trail


def test_people_are_paged_masked_and_found_by_name_or_staff_number(desk, faces):
    names = [("Zhang San", "ST-1001"), ("Li Si", "ST-1002"), ("Wang Wu", "X_7")]
    for index, (name, staff) in enumerate(names):
        identity = (PERSON_A, PERSON_B, STRANGER)[index]
        assert desk.enroll(OPERATOR, request(name, staff_no=staff, groups=("lobby",)),
                           photos(faces, identity)).status == ENROLLED
    rows, total = desk.people_page(OPERATOR, limit=2)
    assert total == 3 and [r["name"] for r in rows] == ["W*** W*", "L* S*"]  # newest first
    assert rows[0]["templates"] == 1 and rows[0]["groups"] == ["lobby"]
    rows, total = desk.people_page(OPERATOR, offset=2, limit=2)
    assert total == 3 and [r["name"] for r in rows] == ["Z**** S**"]
    assert desk.data.people_page(READER, "zhang")[1] == 1
    assert desk.data.people_page(OPERATOR, "1002")[0][0]["name"] == "L* S*"
    assert desk.data.people_page(OPERATOR, "_")[1] == 1  # "_" is a character, not a wildcard
    assert desk.data.people_page(OPERATOR, "%")[1] == 0
    with pytest.raises(ApplianceError):
        desk.data.people_page(AUDITOR)


def test_a_template_fused_on_the_door_goes_through_the_same_checks(desk, faces, pipeline):
    def captured(identity: str, start: int = 0):  # what the device's EnrollmentSession hands over
        frames = [(name, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
                  for name, data in photos(faces, identity, start)]
        return enroll_labelled(pipeline, frames)

    first = desk.enroll_templates(OPERATOR, request("Ana Lima", groups=("lobby",)), captured(PERSON_B))
    assert first.status == ENROLLED and desk.person(OPERATOR, first.subject_id)["groups"] == ["lobby"]
    again = desk.enroll_templates(OPERATOR, request("Ana Lima"), captured(PERSON_B, 3))
    assert again.status == DUPLICATE and first.subject_id in again.duplicate_of
    blank = np.full((200, 200, 3), 100, np.uint8)
    failed = desk.enroll_templates(OPERATOR, request("Li Si"), enroll_labelled(pipeline, [("frame-1", blank)]))
    assert failed.status == FAILED_TO_ENROL and failed.rejected[0].image == "frame-1"
    foreign = captured(PERSON_A)
    foreign.template = Template(foreign.template.vector, "other-pack", "9")
    with pytest.raises(ApplianceError) as mismatch:
        desk.enroll_templates(OPERATOR, request("Wang Wu"), foreign)
    assert mismatch.value.code is ErrorCode.PACK_MISMATCH
    pack = pipeline.embedder_pack
    foreign.template = Template(foreign.template.vector * 50, pack.id, pack.version)  # would match anyone
    with pytest.raises(ApplianceError) as long_vector:
        desk.enroll_templates(OPERATOR, request("Wang Wu"), foreign)
    assert long_vector.value.code is ErrorCode.PACK_MISMATCH and "normalised" in long_vector.value.detail
    assert desk.data.identity.subject_ids(OPERATOR) == [first.subject_id]


def test_the_outcome_and_the_listing_say_where_the_face_works(desk, faces):
    """A fresh site has no justification for central matching: the doors decide from their
    caches, which hold only people with local-matching consent. Anyone else is enrolled into a
    face that opens no door, and the operator is told why and what to do."""
    nowhere = desk.enroll(OPERATOR, request("Zhang San"), photos(faces, PERSON_A))
    usable = nowhere.usable_at
    assert nowhere.status == ENROLLED and usable.where == NOWHERE
    assert not usable.central_matching and not usable.local_matching
    assert "no recorded justification for central matching" in usable.reason
    assert "no local-matching consent" in usable.reason
    assert "--local-matching" in usable.action and JUSTIFY_COMMAND in usable.action
    assert nowhere.warnings == (usable.warning,) and usable.reason in usable.warning
    shown = nowhere.as_dict()
    assert shown["usable_at"]["where"] == NOWHERE and shown["warnings"] == [usable.warning]
    assert Usability.from_dict(shown["usable_at"]) == usable  # as the console reads a door capture's answer

    doors = desk.enroll(OPERATOR, request("Li Si", local_matching=True, groups=("lobby", "lab")),
                        photos(faces, PERSON_B))
    assert doors.usable_at.where == DOORS and doors.usable_at.groups == ("lab", "lobby") and not doors.warnings
    assert doors.usable_at.local_matching and "lab, lobby" in doors.usable_at.message
    rows = {r["subject_id"]: r for r in desk.people_page(READER)[0]}  # the listing: the same computation
    assert rows[nowhere.subject_id]["usable_at"] == usable.as_dict()
    assert rows[doors.subject_id]["usable_at"] == doors.usable_at.as_dict()
    assert rows[doors.subject_id]["groups"] == ["lab", "lobby"]

    justify(desk.data, desk.sync, SECURITY, "one matcher serves the four buildings of this employer")
    central = desk.enroll(OPERATOR, request("Wang Wu"), photos(faces, STRANGER))
    assert central.usable_at.where == CENTRAL and central.usable_at.central_matching and not central.warnings
    assert "no door cache holds it" in central.usable_at.message  # offline, only the cache decides
    assert {r["usable_at"]["where"] for r in desk.people_page(OPERATOR)[0]} == {CENTRAL}
    assert desk.person(OPERATOR, nowhere.subject_id)["usable_at"]["where"] == CENTRAL

    revoke(desk.data, desk.sync, SECURITY)
    desk.data.identity.withdraw_consents(OPERATOR, doors.subject_id, LOCAL_MATCH_SCOPE, time.time())
    after = {r["subject_id"]: r["usable_at"] for r in desk.people_page(OPERATOR)[0]}
    assert {u["where"] for u in after.values()} == {NOWHERE}  # the justification revoked
    assert after[doors.subject_id]["where"] == NOWHERE and not after[doors.subject_id]["local_matching"]


def test_usability_follows_the_access_rules():
    open_everywhere = Usability.of(True, True)
    assert open_everywhere.access_doors is None and open_everywhere.where == CENTRAL
    granted = Usability.of(True, True, access_doors=("door-b", "door-a"))
    assert granted.where == CENTRAL and granted.access_doors == ("door-a", "door-b")
    assert "the access rules let them open door-a, door-b" in granted.message
    assert Usability.from_dict(granted.as_dict()) == granted
    none = Usability.of(False, True, ("lab",), access_doors=())
    assert none.where == NOWHERE and "no access group" not in none.message and ACCESS_COMMAND in none.action
    assert "none of the person's grants a door" in none.warning
