"""Changing the site's access rules: each change is checked, stored in the sync store,
audited, and made to reach the doors without a re-enrollment.

A change of who may be cached at which door (membership, a group's doors, validity, the first
group or the last one going) restamps the affected people's templates (a new revision each):
the doors' sync brings the upsert or the tombstone. A change of the rules alone (a schedule,
a holiday, an area) moves the revision by one, so every door asks and receives the new rules
with the answer (docs/access.md). Writers need ``Permission.MANAGE_DEVICES``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timezone

from appliance.access.rules import ENTRY, EXIT, PASSBACK_MODES, Validity
from appliance.access.schedule import WeeklySchedule
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.eligibility import restamp_credentials
from appliance.matcher.sync_store import SyncStore
from appliance.security.roles import Permission, Principal, require
from appliance.stores.protected import ProtectedData

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # groups, doors, areas: plain names
ALWAYS_OPEN = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def _name(text: str, what: str) -> str:
    if not NAME.match(text):
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"{what} {text!r}: use 1-64 letters, digits, '.', '_', '-'")
    return text


def _iso(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class AccessAdmin:
    def __init__(self, data: ProtectedData, store: SyncStore, principal: Principal):
        require(principal, Permission.MANAGE_DEVICES)
        self.data, self.store, self.principal = data, store, principal

    # -- how a change reaches the doors -----------------------------------------------------
    def _audit(self, action: str, obj: str, detail: str = "") -> None:
        self.data.audit.append(self.principal, f"access.{action}", obj, "ok", detail)

    def _restamp(self, subjects: list[str], was_enforced: bool) -> None:
        if was_enforced != self.store.access_enforced():  # everyone's doors changed at once
            subjects = self._everyone()
        if subjects:
            self.data.biometric.restamp(subjects)
            for subject in subjects:  # a person with no template: their cached card entry (eligibility)
                if self.data.identity.credential_revision(subject):
                    restamp_credentials(self.data, self.principal, subject)
        else:
            self._tell_doors()

    def _everyone(self) -> list[str]:
        """Every person a door cache may hold: the template holders and the people with no
        template whose card or PIN doors know (their credential stamp)."""
        subjects = {row.subject_id for row in self.data.biometric.rows()}
        subjects.update(subject for subject, _ in self.data.identity.credential_stamps())
        return sorted(subjects)

    def _tell_doors(self) -> None:
        self.data.biometric.advance_revision(self.data.biometric.revision + 1)

    def _group(self, name: str) -> str:
        if self.store.group_schedule(_name(name, "group")) is None:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"no access group {name!r} ('appliance access groups')")
        return name

    # -- groups, doors, schedules -----------------------------------------------------------
    def put_group(self, name: str, schedule: Mapping[str, object] | None = None, must_exist: bool = False) -> bool:
        """Create a group (always open unless a schedule is given) or set its schedule;
        ``must_exist``: only set the schedule of an existing group."""
        if must_exist:
            self._group(name)
        weekly = WeeklySchedule.from_mapping(schedule if schedule is not None else ALWAYS_OPEN)
        was = self.store.access_enforced()
        new = self.store.put_group(_name(name, "group"), weekly)
        self._audit("group.create" if new else "schedule.set", name, _schedule_text(weekly))
        self._restamp([], was) if new else self._tell_doors()
        return new

    def delete_group(self, name: str) -> list[str]:
        was = self.store.access_enforced()
        members = self.store.delete_group(self._group(name))
        self._audit("group.delete", name, f"{len(members)} members")
        self._restamp(members, was)
        return members

    def grant_doors(self, name: str, doors: list[str], granted: bool = True) -> None:
        self.store.set_group_doors(self._group(name), [_name(d, "door") for d in doors], granted)
        self._audit("doors.grant" if granted else "doors.revoke", name, ", ".join(sorted(doors)))
        self._restamp(self.store.group_members(name), True)

    def _enrolled(self, subject_id: str) -> str:
        # enrolled: a template, or a card holder who refused face recognition (a credential stamp)
        if not self.data.biometric.rows(subject_id) and not self.data.identity.credential_revision(subject_id):
            raise ApplianceError(ErrorCode.SUBJECT_NOT_FOUND, f"no enrolled subject {subject_id!r}: enrol them first")
        return subject_id

    def set_member(self, name: str, subject_id: str, member: bool = True) -> bool:
        if member:
            self._enrolled(subject_id)
        changed = self.store.set_member(self._group(name), subject_id, member)
        self._audit("member.add" if member else "member.remove", subject_id, f"group {name}")
        if changed:
            self._restamp([subject_id], True)
        return changed

    # -- people, calendar, areas ------------------------------------------------------------
    def set_validity(self, subject_id: str, valid_from: float | None, valid_until: float | None) -> None:
        if valid_from is not None and valid_until is not None and valid_until <= valid_from:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, "validity ends before it starts")
        self.store.set_validity(self._enrolled(subject_id), Validity(valid_from, valid_until))
        self._audit("validity.set", subject_id, f"from {_iso(valid_from)} until {_iso(valid_until)}")
        self._restamp([subject_id], True)

    def set_holiday(self, day: str, name: str = "", present: bool = True) -> bool:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"holiday {day!r} is not a date YYYY-MM-DD") from None
        changed = self.store.set_holiday(day, name, present)
        self._audit("holiday.add" if present else "holiday.remove", day, name)
        self._tell_doors()
        return changed

    def set_area(self, area: str, mode: str, reset_s: float, entries: list[str], exits: list[str]) -> None:
        if mode not in PASSBACK_MODES:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"passback mode {mode!r}: use {list(PASSBACK_MODES)}")
        if reset_s < 0:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, "passback reset must be 0 (never) or more seconds")
        doors = {_name(d, "door"): ENTRY for d in entries} | {_name(d, "door"): EXIT for d in exits}
        if set(entries) & set(exits):
            raise ApplianceError(ErrorCode.CONFIG_INVALID, "a door is either an entry or an exit of an area")
        self.store.set_area(_name(area, "area"), mode, float(reset_s), doors)
        self._audit("area.set", area, f"passback {mode}, reset {int(reset_s)} s, entries {sorted(entries)}, "
                                      f"exits {sorted(exits)}")
        self._tell_doors()


def rules_view(store: SyncStore, tz: str) -> dict:
    """The site's rules as one JSON-ready mapping (``appliance access show``, ``GET /api/access``)."""
    areas = {a: {"mode": m, "reset_s": r, "doors": d} for a, (m, r, d) in sorted(store.areas().items())}
    return {"enforced": store.access_enforced(), "timezone": tz,
            "groups": [{"name": g, "schedule": store.group_schedule(g).to_mapping(),  # type: ignore[union-attr]
                        "doors": store.group_doors(g), "members": len(store.group_members(g))}
                       for g in store.group_names()],
            "holidays": {d.isoformat(): n for d, n in sorted(store.holidays().dates.items())}, "areas": areas}


def _schedule_text(weekly: WeeklySchedule) -> str:
    spec = weekly.to_mapping()
    return "; ".join(f"{k} {','.join(v) if isinstance(v, list) else v}" for k, v in spec.items() if v)
