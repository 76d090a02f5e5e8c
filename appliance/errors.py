"""One error type with a stable code table, so scripts and integrators can branch on codes.

Every failure a user can cause (bad file, missing model, wrong configuration) is an
``ApplianceError``; the CLI prints ``error E<code>: <message>`` on one line and exits with
the code's exit status. Codes never change meaning once released.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum


class ErrorCode(Enum):
    """(numeric code, process exit status, short title)."""

    CONFIG_INVALID = (100, 2, "configuration invalid")
    FILE_NOT_FOUND = (101, 3, "file not found")
    IMAGE_UNREADABLE = (102, 4, "image cannot be decoded")
    NO_FACE = (103, 5, "no face found")
    DATASET_INVALID = (104, 2, "dataset layout invalid")
    CAMERA_UNAVAILABLE = (110, 6, "camera unavailable")
    STREAM_ENDED = (111, 6, "frame stream ended")
    PACK_NOT_FOUND = (120, 7, "model pack not found")
    PACK_INVALID = (121, 7, "model pack manifest invalid")
    PACK_FILE_MISSING = (122, 7, "model file missing; run 'appliance models install'")
    PACK_CHECKSUM = (123, 7, "model file checksum mismatch")
    PACK_MISMATCH = (124, 8, "templates come from different model packs")
    DEPENDENCY_MISSING = (130, 9, "optional dependency not installed")
    # 200-299: protected biometric data (appliance.security, appliance.stores)
    # 300-399: liveness (presentation-attack detection)
    LIVENESS_FAILED = (300, 1, "liveness check failed")
    PRESENTATION_ATTACK = (301, 1, "presentation attack detected")
    LIVENESS_UNCALIBRATED = (302, 2, "liveness calibration missing or invalid")
    CHALLENGE_FAILED = (303, 1, "liveness challenge not completed")
    # 400-499: broker, PKI and protocol
    PKI_ERROR = (400, 10, "PKI error")
    BROKER_UNAVAILABLE = (401, 11, "MQTT broker unavailable")
    MESSAGE_REJECTED = (402, 12, "message rejected")
    REQUEST_TIMEOUT = (403, 13, "no answer in time")
    KEY_MISSING = (200, 20, "key not found")
    KEY_INSECURE = (201, 20, "key file readable by others than its owner")
    KEY_INVALID = (202, 20, "key malformed")
    STORE_UNREADABLE = (210, 21, "store cannot be opened: wrong key or not a SQLCipher store")
    STORE_CORRUPT = (211, 21, "store integrity check failed")
    STORE_SCHEMA = (212, 21, "store schema newer than this software")
    STORE_UNWRITABLE = (213, 21, "store cannot be written now (a full disk or an I/O error)")
    SUBJECT_NOT_FOUND = (220, 22, "subject not found")
    TEMPLATE_SHREDDED = (221, 22, "template unreadable: its data key was destroyed")
    # its own exit status: a deletion script must tell "done earlier" from "no such subject"
    SUBJECT_ALREADY_DELETED = (222, 27, "subject already deleted")
    ENVELOPE_REJECTED = (230, 23, "envelope rejected")
    CONSENT_MISSING = (240, 24, "no valid consent for enrollment")
    # enrollment outcomes a script must tell apart: nothing usable vs. the face is already held
    ENROLL_FAILED = (241, 28, "failed to enrol: no image passed the enrollment quality profile")
    DUPLICATE_ENROLLMENT = (242, 29, "face already enrolled")
    PERMISSION_DENIED = (250, 25, "permission denied")
    AUDIT_TAMPERED = (260, 26, "audit log verification failed")
    AUDIT_FORBIDDEN_DATA = (261, 26, "audit entries may not carry biometric data or scores")
    # 500-599: operations (accounts, backups, updates, health, provisioning)
    LOGIN_FAILED = (500, 30, "login failed")
    ACCOUNT_LOCKED = (501, 30, "account locked")
    SESSION_EXPIRED = (502, 30, "session expired")
    PASSWORD_POLICY = (503, 30, "password does not meet the policy")
    ACCOUNT_REFUSED = (504, 30, "account operation refused")
    # who is asking is unknown (no session, no token): distinct from "known but not allowed" (25)
    AUTH_REQUIRED = (505, 34, "authentication required")
    TOKEN_INVALID = (506, 34, "API token invalid, expired or revoked")
    BACKUP_INVALID = (510, 31, "backup refused: verification failed")
    UPDATE_REJECTED = (520, 32, "update refused: signature or contents invalid")
    SELFTEST_FAILED = (521, 32, "start-up self-test failed; rolled back")
    HEALTH_FAILED = (530, 33, "health check failed")
    # one process per service identity on a host (appliance.ops.service_lock)
    SERVICE_RUNNING = (531, 35, "service already running on this host under that name")
    # 600-699: offline operation and enrollment sync (600/601 are no longer raised at the door:
    # a cache that cannot decide ends as the decision reason "unavailable", docs/offline.md)
    CACHE_UNAVAILABLE = (600, 40, "no usable device cache for a local decision")
    CACHE_STALE = (601, 40, "device cache too old to decide locally")
    SYNC_GAP = (602, 41, "sync delta does not follow the cached revision")
    OUTBOX_FULL = (603, 42, "outbox bound reached; oldest events spilled")
    # the non-face alternative (docs/door-modes.md): a card opens the door of one person only
    CARD_IN_USE = (604, 43, "card already given to another person")
    # 700-709: door I/O (appliance.edge.door_io)
    DOOR_IO_FAILED = (700, 45, "door I/O failed: relay, line or link")
    CARD_NUMBER_INVALID = (701, 45, "card number or frame does not fit the format")
    # a commercial site may not start with a pack whose licence forbids commercial use (docs/models.md)
    LICENCE_REFUSED = (710, 44, "model pack licence does not allow the site's declared use")

    @property
    def number(self) -> int:
        return self.value[0]

    @property
    def exit_status(self) -> int:
        return self.value[1]

    @property
    def title(self) -> str:
        return self.value[2]


@dataclass
class ApplianceError(Exception):
    code: ErrorCode
    detail: str

    def __str__(self) -> str:
        return f"E{self.code.number} {self.code.title}: {self.detail}"


class PartlyDone(ApplianceError):
    """An error raised after part of the work was done (its detail says which part): what a
    person is told to do is then "do it again to finish it", not "nothing was saved"."""


def is_unwritable(exc: BaseException) -> bool:
    """Is ``exc`` a store or file that cannot be written now (E213: a full disk, an I/O error),
    rather than something wrong with what was asked?"""
    return isinstance(exc, ApplianceError) and exc.code is ErrorCode.STORE_UNWRITABLE


@contextmanager
def skipped_if_unwritable() -> Iterator[None]:
    """Bookkeeping its caller can go on without (when a session was last active, when a token
    was last used): skipped while its store cannot be written (E213 STORE_UNWRITABLE: a full
    disk) - a full disk must not log everyone out of the console. Any other error is raised."""
    try:
        yield
    except ApplianceError as exc:
        if not is_unwritable(exc):
            raise
