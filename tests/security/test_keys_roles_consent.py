"""Key files, role separation and the consent rules."""
from __future__ import annotations

import os
import time

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.consent import (
    ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, check_enrollable, new_subject_id,
)
from appliance.security.keys import ALL_KEYS, EnvKeyProvider, FileKeyProvider, ensure_keys, generate_key
from appliance.security.roles import PERMISSIONS, Permission, Role, require


def test_key_files_are_owner_only_and_never_printed(tmp_path, keys):
    for name in ALL_KEYS:
        path = tmp_path / "keys" / f"{name}.key"
        assert path.stat().st_mode & 0o777 == 0o600
        key = keys.get(name)
        assert key.material.hex() not in repr(key) and key.material.hex() not in str(key)
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700


def test_a_key_readable_by_others_is_refused(tmp_path, keys):
    os.chmod(tmp_path / "keys" / "identity-db.key", 0o644)
    with pytest.raises(ApplianceError) as info:
        keys.get("identity-db")
    assert info.value.code is ErrorCode.KEY_INSECURE


def test_missing_and_existing_keys(tmp_path):
    provider = FileKeyProvider(tmp_path / "k")
    with pytest.raises(ApplianceError) as info:
        provider.get("audit-db")
    assert info.value.code is ErrorCode.KEY_MISSING
    assert ensure_keys(provider) == list(ALL_KEYS) and ensure_keys(provider) == []
    with pytest.raises(ApplianceError):
        provider.put(generate_key("audit-db"))  # keys are rotated, never silently replaced


def test_env_provider_for_tests():
    env: dict[str, str] = {}
    provider = EnvKeyProvider(env)
    ensure_keys(provider, ("audit-db",))
    assert "APPLIANCE_KEY_AUDIT_DB" in env and provider.get("audit-db").material.hex() == env["APPLIANCE_KEY_AUDIT_DB"]


def test_duties_are_separated():
    # the auditor reads (the log and the masked door log) and changes nothing
    assert PERMISSIONS[Role.AUDITOR] == {Permission.READ_AUDIT, Permission.VERIFY_AUDIT, Permission.READ_EVENTS}
    only = {p: [r for r in Role if p in PERMISSIONS[r]] for p in Permission}
    assert only[Permission.READ_IDENTITY_UNMASKED] == [Role.SECURITY_ADMIN]
    assert only[Permission.READ_AUDIT] == [Role.AUDITOR]
    assert Role.SYSTEM_ADMIN not in only[Permission.READ_IDENTITY_MASKED]
    assert not any(p.name.startswith(("EDIT_AUDIT", "DELETE_AUDIT")) for p in Permission)
    # overriding a duplicate face is the security administrator's call, not the desk's
    assert only[Permission.OVERRIDE_DUPLICATE] == [Role.SECURITY_ADMIN]


def test_token_scopes_narrow_a_role_never_widen_it():
    from appliance.security.roles import Principal, scopes_named

    operator = Principal("acct-op", Role.OPERATOR, scopes=scopes_named(["identify"]))
    assert operator.can(Permission.VERIFY) and not operator.can(Permission.ENROLL)
    # a scope naming a permission the role lacks gives nothing
    auditor = Principal("acct-au", Role.AUDITOR, scopes=scopes_named(["people:write", "audit"]))
    assert not auditor.can(Permission.DELETE_SUBJECT) and auditor.can(Permission.READ_AUDIT)
    with pytest.raises(ApplianceError):
        scopes_named(["root"])
    with pytest.raises(ApplianceError):
        scopes_named([])


def test_require_names_the_actor_and_permission(principals):
    with pytest.raises(ApplianceError) as info:
        require(principals[Role.AUDITOR], Permission.DELETE_SUBJECT)
    assert info.value.code is ErrorCode.PERMISSION_DENIED and "acct-auditor" in str(info.value)
    with pytest.raises(ApplianceError):
        require(None, Permission.VERIFY)  # type: ignore[arg-type]


def consent(subject: str, by_guardian: bool = False, **changes) -> ConsentRecord:
    values = dict(subject_id=subject, scope=ENROLL_SCOPE, text_version="v3", consented_at=time.time(),
                  consented_by="guardian" if by_guardian else "self", by_guardian=by_guardian)
    return ConsentRecord(**{**values, **changes})


def test_enrollment_needs_specific_active_consent():
    person = Person(new_subject_id(), "张三", AgeBand.ADULT, Alternative.CARD)
    for records in ([], [consent(person.subject_id, scope="door-access")],
                    [consent(person.subject_id, withdrawn_at=time.time())]):
        with pytest.raises(ApplianceError) as info:
            check_enrollable(person, records)
        assert info.value.code is ErrorCode.CONSENT_MISSING
    assert check_enrollable(person, [consent(person.subject_id)]).text_version == "v3"


def test_under_14_needs_a_guardian():
    with pytest.raises(ApplianceError):
        Person(new_subject_id(), "小明", AgeBand.UNDER_14, Alternative.PIN)  # no guardian on record
    child = Person(new_subject_id(), "小明", AgeBand.UNDER_14, Alternative.PIN, guardian_name="王芳")
    with pytest.raises(ApplianceError):
        check_enrollable(child, [consent(child.subject_id)])
    assert check_enrollable(child, [consent(child.subject_id, by_guardian=True)]).by_guardian


def test_a_non_face_alternative_is_always_recorded():
    with pytest.raises(ApplianceError):
        Person(new_subject_id(), "张三", AgeBand.ADULT, None)  # type: ignore[arg-type]


def test_subject_ids_are_random_pseudonyms():
    ids = {new_subject_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 34 for i in ids)
