"""The access-rule tables of the sync store (``SyncStore`` mixes this in; every SQL string about
access lives here): groups with their weekly schedule, the doors each group opens, members,
validity periods, holidays, areas with their doors and passback mode, and the matcher's
presence book for anti-passback. Pure evaluation is ``appliance.access``; making a change
reach the doors (a new revision) is ``matcher.access_admin``."""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from appliance.access.rules import AreaRule, DoorRules, Subject, Validity
from appliance.access.schedule import Holidays, WeeklySchedule

ACCESS_MIGRATION = """
CREATE TABLE access_groups (name TEXT PRIMARY KEY, schedule TEXT NOT NULL);
CREATE TABLE access_doors (grp TEXT NOT NULL, door TEXT NOT NULL, PRIMARY KEY (grp, door));
CREATE INDEX access_doors_door ON access_doors (door);
CREATE TABLE access_members (grp TEXT NOT NULL, subject_id TEXT NOT NULL, PRIMARY KEY (grp, subject_id));
CREATE INDEX access_members_subject ON access_members (subject_id);
CREATE TABLE access_validity (subject_id TEXT PRIMARY KEY, valid_from REAL, valid_until REAL);
CREATE TABLE access_holidays (day TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE access_areas (area TEXT PRIMARY KEY, mode TEXT NOT NULL, reset_s REAL NOT NULL);
CREATE TABLE access_area_doors (door TEXT PRIMARY KEY, area TEXT NOT NULL, direction TEXT NOT NULL);
CREATE TABLE access_presence (area TEXT NOT NULL, subject_id TEXT NOT NULL, inside INTEGER NOT NULL,
                              at REAL NOT NULL, PRIMARY KEY (area, subject_id));
"""
# ``AccessTables.access_generation``: raised by every change of the rules
ACCESS_GENERATION_MIGRATION = """
CREATE TABLE access_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT INTO access_generation VALUES (1, 0);
"""
# the pass (request id) that set each presence: that pass retried on another replica is no
# second entry (appliance.access.passback)
PRESENCE_PASS_MIGRATION = """
ALTER TABLE access_presence ADD COLUMN pass_id TEXT NOT NULL DEFAULT '';
"""


class AccessTables:
    """Methods over the access tables; the host store gives ``execute`` and ``transaction``."""

    def access_generation(self) -> int:
        """A count every change of the access rules raises in its own transaction, through any
        connection (this one, another replica's, the admin's process); readers remember what
        they read under it (``matcher.access_site``). Not SQLite's ``data_version``: that moves
        with every commit of another connection to the file, and with two replicas on one store
        each one's events and presence emptied the other's memo at every batch (issue 17)."""
        return self.execute("SELECT value FROM access_generation")[0][0]

    @contextmanager
    def _changing_access(self) -> Iterator[None]:
        """A write to the access rules: one transaction that also raises ``access_generation``
        (a reader that sees the new count reads after the commit). Presence is not a rule: the
        passback book is read afresh for every decision and does not go through here."""
        with self.transaction():
            yield
            self.execute("UPDATE access_generation SET value = value + 1")

    # -- groups -----------------------------------------------------------------------------
    def access_enforced(self) -> bool:
        """Any access group defined: from then on a person in no group opens no door."""
        return bool(self.execute("SELECT 1 FROM access_groups LIMIT 1"))

    def put_group(self, name: str, schedule: WeeklySchedule) -> bool:
        """Create the group or replace its schedule; True when it is new."""
        with self._changing_access():
            new = not self.execute("SELECT 1 FROM access_groups WHERE name = ?", (name,))
            self.execute("INSERT INTO access_groups VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                         "schedule = excluded.schedule", (name, json.dumps(schedule.to_mapping())))
        return new

    def delete_group(self, name: str) -> list[str]:
        """Remove the group, its doors and memberships; the members it had."""
        with self._changing_access():
            members = self.group_members(name)
            for table in ("access_doors", "access_members"):
                self.execute(f"DELETE FROM {table} WHERE grp = ?", (name,))
            self.execute("DELETE FROM access_groups WHERE name = ?", (name,))
        return members

    def group_names(self) -> list[str]:
        return [r[0] for r in self.execute("SELECT name FROM access_groups ORDER BY name")]

    def group_schedule(self, name: str) -> WeeklySchedule | None:
        rows = self.execute("SELECT schedule FROM access_groups WHERE name = ?", (name,))
        return WeeklySchedule.from_mapping(json.loads(rows[0][0])) if rows else None

    def group_doors(self, name: str) -> list[str]:
        return [r[0] for r in self.execute("SELECT door FROM access_doors WHERE grp = ? ORDER BY door", (name,))]

    def group_members(self, name: str) -> list[str]:
        return [r[0] for r in self.execute("SELECT subject_id FROM access_members WHERE grp = ? ORDER BY subject_id",
                                           (name,))]

    def set_group_doors(self, name: str, doors: list[str], granted: bool) -> None:
        with self._changing_access():
            for door in doors:
                sql = ("INSERT OR IGNORE INTO access_doors VALUES (?, ?)" if granted
                       else "DELETE FROM access_doors WHERE grp = ? AND door = ?")
                self.execute(sql, (name, door))

    def set_member(self, name: str, subject_id: str, member: bool) -> bool:
        """Add or remove one membership; True when that changed anything."""
        with self._changing_access():
            sql = ("INSERT OR IGNORE INTO access_members VALUES (?, ?)" if member
                   else "DELETE FROM access_members WHERE grp = ? AND subject_id = ?")
            return self.conn.execute(sql, (name, subject_id)).rowcount > 0

    # -- people -----------------------------------------------------------------------------
    def set_validity(self, subject_id: str, validity: Validity) -> None:
        with self._changing_access():
            self.execute("INSERT INTO access_validity VALUES (?, ?, ?) ON CONFLICT (subject_id) DO UPDATE SET "
                         "valid_from = excluded.valid_from, valid_until = excluded.valid_until",
                         (subject_id, validity.valid_from, validity.valid_until))

    def access_subject(self, subject_id: str) -> Subject:
        # one statement: a row per group (no validity), and the validity row (no group) if any
        rows = self.execute("SELECT grp, NULL, NULL FROM access_members WHERE subject_id = ? UNION ALL "
                            "SELECT NULL, valid_from, valid_until FROM access_validity WHERE subject_id = ?",
                            (subject_id, subject_id))
        validity = next((Validity(f, u) for g, f, u in rows if g is None), Validity())
        return Subject(subject_id, frozenset(g for g, _, _ in rows if g is not None), validity)

    def subject_doors(self, subject_id: str) -> frozenset[str]:
        """Every door some group of the subject grants (schedules aside)."""
        return frozenset(r[0] for r in self.execute(
            "SELECT DISTINCT d.door FROM access_members m JOIN access_doors d ON d.grp = m.grp "
            "WHERE m.subject_id = ?", (subject_id,)))

    def access_subjects(self) -> list[str]:
        """Everyone with a membership or a validity period."""
        return [r[0] for r in self.execute("SELECT subject_id FROM access_members UNION "
                                           "SELECT subject_id FROM access_validity ORDER BY 1")]

    # -- site calendar and areas -----------------------------------------------------------
    def set_holiday(self, day: str, name: str, present: bool) -> bool:
        with self._changing_access():
            if present:
                sql, params = "INSERT OR REPLACE INTO access_holidays VALUES (?, ?)", (day, name)
            else:
                sql, params = "DELETE FROM access_holidays WHERE day = ?", (day,)
            return self.conn.execute(sql, params).rowcount > 0

    def holidays(self) -> Holidays:
        return Holidays.parse({r[0]: r[1] for r in self.execute("SELECT day, name FROM access_holidays")})

    def set_area(self, area: str, mode: str, reset_s: float, doors: Mapping[str, str]) -> None:
        """The area's passback mode and reset, and its doors (door -> entry/exit), replaced."""
        with self._changing_access():
            self.execute("INSERT OR REPLACE INTO access_areas VALUES (?, ?, ?)", (area, mode, reset_s))
            self.execute("DELETE FROM access_area_doors WHERE area = ?", (area,))
            self.conn.executemany("INSERT OR REPLACE INTO access_area_doors VALUES (?, ?, ?)",
                                  [(door, area, direction) for door, direction in doors.items()])

    def areas(self) -> dict[str, tuple[str, float, dict[str, str]]]:
        """area -> (mode, reset_s, {door: direction})."""
        out = {a: (m, float(r), {}) for a, m, r in self.execute("SELECT area, mode, reset_s FROM access_areas")}
        for door, area, direction in self.execute("SELECT door, area, direction FROM access_area_doors"):
            if area in out:
                out[area][2][door] = direction
        return out

    def door_rules(self, door: str, tz: str) -> DoorRules:
        """The rules one door decides by (not enforced while no group exists)."""
        if not self.access_enforced():
            return DoorRules(door, tz=tz)
        grants = {g: WeeklySchedule.from_mapping(json.loads(s)) for g, s in self.execute(
            "SELECT g.name, g.schedule FROM access_groups g JOIN access_doors d ON d.grp = g.name WHERE d.door = ?",
            (door,))}
        area = None
        rows = self.execute("SELECT a.area, d.direction, a.mode, a.reset_s FROM access_area_doors d "
                            "JOIN access_areas a ON a.area = d.area WHERE d.door = ?", (door,))
        if rows:
            area = AreaRule(rows[0][0], rows[0][1], rows[0][2], float(rows[0][3]))
        return DoorRules(door, True, tz, grants, self.holidays(), area)

    # -- the matcher's presence book (appliance.access.passback.PresenceBook) ---------------
    def presence(self, area: str, subject_id: str) -> tuple[bool, float, str] | None:
        rows = self.execute("SELECT inside, at, pass_id FROM access_presence WHERE area = ? AND subject_id = ?",
                            (area, subject_id))
        return (bool(rows[0][0]), float(rows[0][1]), str(rows[0][2])) if rows else None

    def passing(self) -> AbstractContextManager[Any]:
        """One write transaction (``BEGIN IMMEDIATE``): a replica deciding an entry of the same
        area waits for this one's read and record (``appliance.access.passback``)."""
        return self.transaction()

    def set_presence(self, area: str, subject_id: str, inside: bool, at: float, pass_id: str = "") -> None:
        with self.transaction():
            self.execute("INSERT OR REPLACE INTO access_presence (area, subject_id, inside, at, pass_id) "
                         "VALUES (?, ?, ?, ?, ?)", (area, subject_id, int(inside), at, pass_id))
