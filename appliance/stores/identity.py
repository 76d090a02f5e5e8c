"""Identity registry: the only place that links a pseudonymous subject id to a person.

A separate SQLCipher file with its own key, so the biometric store alone never says whose
template it holds. Each call that reads or writes personal data takes the acting principal.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.consent import AgeBand, Alternative, ConsentRecord, Person
from appliance.security.keys import IDENTITY_DB
from appliance.security.roles import Permission, Principal, require, require_any
from appliance.stores.base import CipherStore

_PERSON_FIELDS = ("subject_id", "name", "age_band", "alternative", "staff_no", "card_no", "id_number",
                  "phone", "guardian_name", "guardian_phone")
_CONSENT_FIELDS = ("subject_id", "scope", "text_version", "consented_at", "consented_by", "by_guardian",
                   "withdrawn_at", "reference")
_LIKE_ESCAPE = "\\"
# a person who refused face recognition: recorded like a consent (who, when, on which form) and
# always offered the card/PIN alternative; withdrawing the record ends the refusal
FACE_REFUSED_SCOPE = "face-refused"
CREDENTIAL_PAGE = 1000  # credential stamps read per query by ``credential_stamps``


class IdentityRegistry(CipherStore):
    KEY_NAME = IDENTITY_DB
    MIGRATIONS = (
        """
        CREATE TABLE persons (
            subject_id TEXT PRIMARY KEY, name TEXT NOT NULL, age_band TEXT NOT NULL,
            alternative TEXT NOT NULL, staff_no TEXT, card_no TEXT, id_number TEXT, phone TEXT,
            guardian_name TEXT, guardian_phone TEXT, created REAL NOT NULL, updated REAL NOT NULL);
        CREATE TABLE consents (
            id INTEGER PRIMARY KEY, subject_id TEXT NOT NULL REFERENCES persons ON DELETE CASCADE,
            scope TEXT NOT NULL, text_version TEXT NOT NULL, consented_at REAL NOT NULL,
            consented_by TEXT NOT NULL, by_guardian INTEGER NOT NULL, withdrawn_at REAL);
        CREATE INDEX consents_subject ON consents(subject_id);
        """,
        # the form or record each consent was given on (F-ENROL-4: no enrollment without one)
        "ALTER TABLE consents ADD COLUMN reference TEXT NOT NULL DEFAULT '';",
        # the non-face alternative (docs/door-modes.md): a PIN only as a salted scrypt hash
        # (appliance.matching.credentials.hash_pin); card numbers stay in persons.card_no
        """
        CREATE TABLE pins (subject_id TEXT PRIMARY KEY REFERENCES persons ON DELETE CASCADE,
            hash TEXT NOT NULL, set_at REAL NOT NULL);
        CREATE INDEX persons_card ON persons(card_no);
        """,
        # the revision of the last card/PIN change of a person with no face template (they refused
        # face recognition): how that change reaches door caches (matcher.revisions)
        """
        CREATE TABLE credential_revisions (subject_id TEXT PRIMARY KEY REFERENCES persons ON DELETE CASCADE,
            revision INTEGER NOT NULL);
        CREATE INDEX credential_revisions_revision ON credential_revisions(revision);
        """,
    )

    def add_person(self, principal: Principal, person: Person) -> None:
        require(principal, Permission.REGISTER_PERSON)
        now = time.time()
        row = asdict(person)
        row["age_band"], row["alternative"] = person.age_band.value, person.alternative.value
        with self.transaction():
            self.execute(
                f"INSERT INTO persons ({', '.join(_PERSON_FIELDS)}, created, updated) "
                f"VALUES ({', '.join('?' * len(_PERSON_FIELDS))}, ?, ?)",
                [row[f] for f in _PERSON_FIELDS] + [now, now],
            )

    def person(self, principal: Principal, subject_id: str) -> Person:
        require_any(principal, Permission.READ_IDENTITY_MASKED, Permission.REGISTER_PERSON,
                    Permission.DELETE_SUBJECT)
        row = self.execute(f"SELECT {', '.join(_PERSON_FIELDS)} FROM persons WHERE subject_id = ?",
                           (subject_id,)).fetchone()
        if row is None:
            raise ApplianceError(ErrorCode.SUBJECT_NOT_FOUND, subject_id)
        return _person(row)

    def subject_ids(self, principal: Principal) -> list[str]:
        require_any(principal, Permission.READ_IDENTITY_MASKED, Permission.RUN_RETENTION)
        return [r[0] for r in self.execute("SELECT subject_id FROM persons ORDER BY created")]

    def page(self, principal: Principal, query: str = "", offset: int = 0,
             limit: int = 50) -> tuple[list[Person], int]:
        """One page of people, newest first, and how many match in all: ``query`` finds a
        part of the name or of the staff number (case-insensitive; ``%`` and ``_`` are plain
        characters)."""
        require(principal, Permission.READ_IDENTITY_MASKED)
        where, params = "", []
        if query:
            pattern = "%" + "".join(_LIKE_ESCAPE + c if c in "%_" + _LIKE_ESCAPE else c for c in query) + "%"
            where = (f" WHERE name LIKE ? ESCAPE '{_LIKE_ESCAPE}' OR "
                     f"coalesce(staff_no, '') LIKE ? ESCAPE '{_LIKE_ESCAPE}'")
            params = [pattern, pattern]
        total = int(self.execute("SELECT count(*) FROM persons" + where, params).fetchone()[0])
        rows = self.execute(f"SELECT {', '.join(_PERSON_FIELDS)} FROM persons{where} "
                            "ORDER BY created DESC, subject_id LIMIT ? OFFSET ?", [*params, limit, offset])
        return [_person(row) for row in rows], total

    def add_consent(self, principal: Principal, consent: ConsentRecord) -> int:
        require(principal, Permission.REGISTER_PERSON)
        with self.transaction():
            if self.execute("SELECT 1 FROM persons WHERE subject_id = ?", (consent.subject_id,)).fetchone() is None:
                raise ApplianceError(ErrorCode.SUBJECT_NOT_FOUND, consent.subject_id)
            cursor = self.execute(
                f"INSERT INTO consents ({', '.join(_CONSENT_FIELDS)}) VALUES ({', '.join('?' * len(_CONSENT_FIELDS))})",
                (consent.subject_id, consent.scope, consent.text_version, consent.consented_at,
                 consent.consented_by, int(consent.by_guardian), consent.withdrawn_at, consent.reference),
            )
            return int(cursor.lastrowid)

    def consents(self, principal: Principal, subject_id: str) -> list[ConsentRecord]:
        require_any(principal, Permission.REGISTER_PERSON, Permission.ENROLL, Permission.READ_IDENTITY_MASKED)
        rows = self.execute(f"SELECT {', '.join(_CONSENT_FIELDS)} FROM consents WHERE subject_id = ? "
                            "ORDER BY consented_at", (subject_id,))
        return [ConsentRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows]

    def withdraw_consents(self, principal: Principal, subject_id: str, scope: str, when: float) -> int:
        require(principal, Permission.WITHDRAW_CONSENT)
        with self.transaction():
            cursor = self.execute(
                "UPDATE consents SET withdrawn_at = ? WHERE subject_id = ? AND scope = ? AND withdrawn_at IS NULL",
                (when, subject_id, scope))
            return cursor.rowcount

    def set_card(self, principal: Principal, subject_id: str, card_no: str) -> None:
        """Give the person ``card_no`` ("" clears it); CARD_IN_USE when another person holds it."""
        require(principal, Permission.ENROLL)
        with self.transaction():
            if card_no:
                holder = self.execute("SELECT subject_id FROM persons WHERE card_no = ? AND subject_id != ?",
                                      (card_no, subject_id)).fetchone()
                if holder is not None:
                    raise ApplianceError(ErrorCode.CARD_IN_USE, "the card is already given to another person")
            if self.execute("UPDATE persons SET card_no = ?, updated = ? WHERE subject_id = ?",
                            (card_no or None, time.time(), subject_id)).rowcount == 0:
                raise ApplianceError(ErrorCode.SUBJECT_NOT_FOUND, subject_id)

    def set_pin_hash(self, principal: Principal, subject_id: str, pin_hash: str) -> None:
        """Store the person's PIN hash ("" clears the PIN); never a PIN in clear."""
        require(principal, Permission.ENROLL)
        with self.transaction():
            if self.execute("SELECT 1 FROM persons WHERE subject_id = ?", (subject_id,)).fetchone() is None:
                raise ApplianceError(ErrorCode.SUBJECT_NOT_FOUND, subject_id)
            self.execute("DELETE FROM pins WHERE subject_id = ?", (subject_id,))
            if pin_hash:
                self.execute("INSERT INTO pins (subject_id, hash, set_at) VALUES (?, ?, ?)",
                             (subject_id, pin_hash, time.time()))

    def stamp_credentials(self, principal: Principal, subject_id: str, revision: int) -> None:
        """Record that the person's card, PIN or access changed at ``revision`` (people with no
        template): an enroller's change, or an access administrator's (``MANAGE_DEVICES``)."""
        require_any(principal, Permission.ENROLL, Permission.MANAGE_DEVICES)
        with self.transaction():
            self.execute("INSERT OR REPLACE INTO credential_revisions VALUES (?, ?)", (subject_id, revision))

    def credential_changes(self, after: int, upto: int, limit: int) -> list[tuple[str, int]]:
        """(subject, revision) of credential stamps in ``(after, upto]``, in revision order."""
        return [(r[0], int(r[1])) for r in self.execute(
            "SELECT subject_id, revision FROM credential_revisions WHERE revision > ? AND revision <= ? "
            "ORDER BY revision LIMIT ?", (after, upto, limit))]

    def credential_revision(self, subject_id: str) -> int:
        """The revision of the person's last credential stamp; 0: none."""
        row = self.execute("SELECT revision FROM credential_revisions WHERE subject_id = ?", (subject_id,)).fetchone()
        return int(row[0]) if row else 0

    def credential_page(self, after_subject: str, limit: int) -> list[tuple[str, int]]:
        """(subject, revision) of credential stamps after ``after_subject``, in subject order."""
        return [(r[0], int(r[1])) for r in self.execute(
            "SELECT subject_id, revision FROM credential_revisions WHERE subject_id > ? ORDER BY subject_id LIMIT ?",
            (after_subject, limit))]

    def credential_stamps(self, page: int = CREDENTIAL_PAGE) -> Iterator[tuple[str, int]]:
        """Every credential stamp (subject, revision), in subject order, read ``page`` at a time."""
        after = ""
        while stamps := self.credential_page(after, page):
            yield from stamps
            after = stamps[-1][0]

    def card_holder(self, principal: Principal, card_no: str) -> tuple[str, str, bool] | None:
        """(subject id, PIN hash or "", refused face recognition) of the card's person, or None."""
        require_any(principal, Permission.VERIFY, Permission.ENROLL)
        row = self.execute(
            "SELECT p.subject_id, coalesce(k.hash, ''), EXISTS (SELECT 1 FROM consents c WHERE "
            "c.subject_id = p.subject_id AND c.scope = ? AND c.withdrawn_at IS NULL) "
            "FROM persons p LEFT JOIN pins k ON k.subject_id = p.subject_id WHERE p.card_no = ?",
            (FACE_REFUSED_SCOPE, card_no)).fetchone()
        return None if row is None else (row[0], row[1], bool(row[2]))

    def delete_person(self, principal: Principal, subject_id: str) -> int:
        """Delete the person and (by cascade) their consent records; returns rows removed.
        Withdrawal of consent leads here too, so either permission allows it."""
        require_any(principal, Permission.DELETE_SUBJECT, Permission.WITHDRAW_CONSENT)
        with self.transaction():
            consents = self.execute("SELECT count(*) FROM consents WHERE subject_id = ?", (subject_id,)).fetchone()[0]
            persons = self.execute("DELETE FROM persons WHERE subject_id = ?", (subject_id,)).rowcount
        return persons + (consents if persons else 0)


def _person(row: tuple) -> Person:
    values = dict(zip(_PERSON_FIELDS, row))
    values["age_band"], values["alternative"] = AgeBand(values["age_band"]), Alternative(values["alternative"])
    return Person(**{k: ("" if v is None else v) for k, v in values.items()})
