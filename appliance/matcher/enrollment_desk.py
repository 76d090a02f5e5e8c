"""The enrollment desk: the one flow that puts a person's face on record, whichever way the
request came (``appliance enroll``, the REST API, the console, a door camera), plus 1:N
identification for administrators.

Order, each step audited under the acting principal:

1. consent - the request names the consent reference and the person (under 14: the guardian);
   it is checked against the current notice version before any image is looked at;
2. quality - ``appliance.enrollment``: up to 3 attempts of 3 captures under the enrollment
   profile; each rejected capture comes back with its reasons and the person-facing guidance;
3. duplicates - the fused template is searched in the current gallery with the door's
   decision rules; a match refuses ("already enrolled as <masked name> (<subject id>)")
   unless a principal allowed to ``OVERRIDE_DUPLICATE`` gives a reason;
4. records - only now: the person, the consent (reference and notice version), the
   local-matching consent when asked for, the door groups, and last the template (so a
   replica that sees the new revision also sees the groups and consents it depends on);
5. where the face works - ``usability``, read back from what was recorded: centrally, from
   the door caches, or nowhere (a site without a justification for central matching and a
   person without local-matching consent) with the reason and what to do, as a warning the
   CLI, the API and the console show. The people listings show the same per person.

Nothing is written before step 4, and a failure inside step 4 removes what it wrote, so a
failed or duplicate enrollment never leaves a half-registered person. Uploaded images are
decoded one at a time with the limits of ``capture.images`` (size, pixels, formats); an
unreadable one is refused with ``IMAGE_UNREADABLE`` before anything is written.

The override: a security administrator has no ENROLL permission (separated duties), but
``OVERRIDE_DUPLICATE`` is exactly the right to enroll a face found already enrolled. The
records of such an enrollment are written under the administrator's own name with the
operator's enrolling rights, after an ``enrollment.override`` entry with the reason.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from appliance.capture.images import MAX_FILE_BYTES, MAX_PIXELS, check_header, decode_image
from appliance.config import Config
from appliance.enrollment import MAX_ENROLLMENT_CAPTURES, EnrollmentResult, enroll_labelled
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.desk_gallery import DeskGallery
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.eligibility import LOCAL_MATCH_SCOPE, openable_doors, restamp_credentials
from appliance.matcher.enrollment_types import (
    DUPLICATE, ENROLLED, FAILED_TO_ENROL, MATCH, NO_MATCH, EnrollmentOutcome, EnrollmentRequest, IdentifyOutcome,
    Rejection, Usability, outcome_of,
)
from appliance.matcher.site_policy import central_allowed
from appliance.matcher.sync_store import SyncStore
from appliance.packs.defaults import check_site_use
from appliance.pipeline import FacePipeline
from appliance.security.consent import (
    ENROLL_SCOPE, AgeBand, ConsentNotice, ConsentRecord, Person, check_enrollable, new_subject_id, notice,
)
from appliance.security.roles import Permission, Principal, Role, require
from appliance.stores.identity import FACE_REFUSED_SCOPE
from appliance.stores.protected import ProtectedData
from appliance.vision.templates import Template, check_compatible

ImageInput = bytes | np.ndarray
GREY_DIMENSIONS, COLOUR_DIMENSIONS, COLOUR_CHANNELS = 2, 3, 3
UNIT_NORM_TOLERANCE = 1e-3  # a fused template is a unit vector (float32 rounding aside)


class EnrollmentDesk:
    def __init__(self, data: ProtectedData, sync: SyncStore, pipeline: FacePipeline, config: Config):
        check_site_use(config.site.use, pipeline.embedder_pack, pipeline.registry, "enrollment")
        self.data, self.sync, self.pipeline, self.config = data, sync, pipeline, config
        self._gallery: DeskGallery | None = None
        # one enrollment at a time per desk: the duplicate check and the writes must not interleave
        self._lock = threading.RLock()

    @property
    def gallery(self) -> DeskGallery:
        with self._lock:
            if self._gallery is None:
                self._gallery = DeskGallery(self.data, self.pipeline.embedder_pack, self.pipeline.threshold)
            return self._gallery

    def notice(self, language: str = "zh-CN") -> ConsentNotice:
        """The consent notice to show before enrolling (its version is what consent records name)."""
        return notice(language)

    # -- enrollment -----------------------------------------------------------------------
    def enroll(self, principal: Principal, request: EnrollmentRequest,
               images: Sequence[tuple[str, ImageInput]]) -> EnrollmentOutcome:
        """Enroll from uploaded or local images, ``(label, bytes or BGR array)`` each."""
        subject_id = new_subject_id()  # names this attempt in the audit log; kept only if enrolled
        person, consent = self._admit(principal, request, subject_id)
        checked = _checked_inputs(images)
        with self._lock:
            result = enroll_labelled(self.pipeline, _decoded(checked))
            return self._finish(principal, request, person, consent, result)

    def enroll_templates(self, principal: Principal, request: EnrollmentRequest,
                         captured: EnrollmentResult) -> EnrollmentOutcome:
        """Enroll from a template a device fused under the same policy (``appliance.enrollment``
        ran on the door; no image left it)."""
        subject_id = new_subject_id()
        person, consent = self._admit(principal, request, subject_id)
        if captured.template is not None:
            pack = self.pipeline.embedder_pack
            check_compatible(captured.template, Template(captured.template.vector, pack.id, pack.version))
            vector = np.asarray(captured.template.vector, np.float32)
            if vector.shape != (pack.embedding_size,) or not np.isfinite(vector).all():
                raise ApplianceError(ErrorCode.PACK_MISMATCH, f"captured template of shape {vector.shape}")
            if abs(float(np.linalg.norm(vector)) - 1.0) > UNIT_NORM_TOLERANCE:  # a long vector would match anyone
                raise ApplianceError(ErrorCode.PACK_MISMATCH, "captured template is not normalised")
        with self._lock:
            return self._finish(principal, request, person, consent, captured)

    def register_without_face(self, principal: Principal, request: EnrollmentRequest) -> str:
        """A person who refused face recognition: their record, the refusal (a consent record of
        scope ``face-refused`` naming the notice shown and the form), door groups and card - no
        capture, no template. They pass by card/PIN (docs/door-modes.md). Returns the subject id."""
        require(principal, Permission.ENROLL)
        require(principal, Permission.REGISTER_PERSON)
        subject_id = new_subject_id()
        if not request.card_no:
            raise ApplianceError(ErrorCode.CONSENT_MISSING, "a person who refuses face recognition needs a card")
        by_guardian = request.age_band is AgeBand.UNDER_14
        person = Person(subject_id, request.name, request.age_band, request.alternative, staff_no=request.staff_no,
                        card_no=request.card_no, guardian_name=request.guardian_name)
        refusal = ConsentRecord(subject_id, FACE_REFUSED_SCOPE, notice().version, time.time(),
                                request.guardian_name if by_guardian else request.name, by_guardian,
                                reference=request.consent_ref)
        with self._lock:
            if self.data.identity.card_holder(principal, request.card_no) is not None:
                raise ApplianceError(ErrorCode.CARD_IN_USE, "the card is already given to another person")
            try:
                self.data.register_person(principal, person)
                self.data.record_consent(principal, refusal)
                if request.groups:
                    self.sync.assign_groups(subject_id, request.groups)
                restamp_credentials(self.data, principal, subject_id)  # their card reaches the doors
            except BaseException as exc:
                self._undo(principal, subject_id)
                self.data.audit.append(principal, "enrollment.face_refused", subject_id, "rolled_back",
                                       exc.code.name if isinstance(exc, ApplianceError) else type(exc).__name__)
                raise
        self.data.audit.append(principal, "enrollment.face_refused", subject_id, "ok",
                               f"card only; {len(request.groups)} door groups")
        return subject_id

    def _admit(self, principal: Principal, request: EnrollmentRequest,
               subject_id: str) -> tuple[Person, ConsentRecord]:
        """Step 1: may this principal enroll, and is the consent complete? Nothing written."""
        enrolls = principal.can(Permission.ENROLL) and principal.can(Permission.REGISTER_PERSON)
        if not enrolls and not (request.override_reason and principal.can(Permission.OVERRIDE_DUPLICATE)):
            self.data.audit.append(principal, "enrollment.start", subject_id, "denied", "PERMISSION_DENIED")
            require(principal, Permission.ENROLL)
            require(principal, Permission.REGISTER_PERSON)
        current = notice().version
        try:
            if request.notice_version and request.notice_version != current:
                raise ApplianceError(ErrorCode.CONSENT_MISSING, f"consent given on notice version "
                                     f"{request.notice_version!r}; the current notice is {current!r}")
            person = Person(subject_id, request.name, request.age_band, request.alternative,
                            staff_no=request.staff_no, card_no=request.card_no, guardian_name=request.guardian_name)
            by_guardian = request.age_band is AgeBand.UNDER_14
            consent = ConsentRecord(subject_id, ENROLL_SCOPE, current, time.time(),
                                    request.guardian_name if by_guardian else request.name, by_guardian,
                                    reference=request.consent_ref)
            check_enrollable(person, [consent])
        except ApplianceError as exc:
            self.data.audit.append(principal, "enrollment.consent", subject_id, "refused", exc.code.name)
            raise
        self.data.audit.append(principal, "enrollment.consent", subject_id, "ok",
                               f"notice {current}; guardian {by_guardian}")
        return person, consent

    def _finish(self, principal: Principal, request: EnrollmentRequest, person: Person, consent: ConsentRecord,
                result: EnrollmentResult) -> EnrollmentOutcome:
        """Steps 2 to 4 once the captures were judged."""
        subject_id = person.subject_id
        rejected = len(result.rejected)
        if not result.enrolled:
            self.data.audit.append(principal, "enrollment.quality", subject_id, "failed_to_enroll",
                                   f"{rejected} captures rejected in {result.attempts} attempts")
            return outcome_of(result, FAILED_TO_ENROL)
        self.data.audit.append(principal, "enrollment.quality", subject_id, "ok",
                               f"{result.used} captures accepted, {rejected} rejected")
        assert result.template is not None
        verdict, _, display = self.gallery.decide(result.template)
        overridden = False
        if verdict.accepted:
            duplicate_of = f"{display} ({verdict.subject_id})"
            if not request.override_reason:
                self.data.audit.append(principal, "enrollment.duplicate", subject_id, "refused",
                                       f"already enrolled as {verdict.subject_id}")
                return outcome_of(result, DUPLICATE, duplicate_of=duplicate_of)
            if not principal.can(Permission.OVERRIDE_DUPLICATE):
                self.data.audit.append(principal, "enrollment.override", subject_id, "denied",
                                       f"duplicate of {verdict.subject_id}")
                raise ApplianceError(ErrorCode.PERMISSION_DENIED,
                                     f"already enrolled as {duplicate_of}; only a security administrator may "
                                     f"enroll the same face again ({Permission.OVERRIDE_DUPLICATE.value})")
            self.data.audit.append(principal, "enrollment.override", subject_id, "ok",
                                   f"duplicate of {verdict.subject_id}; reason: {request.override_reason}")
            overridden = True
        elif not (principal.can(Permission.ENROLL) and principal.can(Permission.REGISTER_PERSON)):
            self.data.audit.append(principal, "enrollment.override", subject_id, "denied", "no duplicate found")
            raise ApplianceError(ErrorCode.PERMISSION_DENIED, "no duplicate found: there is nothing to override, "
                                                              "and enrolling a new person is the operator's task")
        writer = principal
        if overridden and not principal.can(Permission.ENROLL):
            writer = Principal(principal.actor, Role.OPERATOR, principal.device, principal.scopes)
        self._record(principal, writer, request, person, consent, result, overridden)
        return outcome_of(result, ENROLLED, subject_id, overridden=overridden,
                          usable_at=self.usability(writer, subject_id))

    def _record(self, principal: Principal, writer: Principal, request: EnrollmentRequest, person: Person,
                consent: ConsentRecord, result: EnrollmentResult, overridden: bool) -> None:
        """Step 4 (``writer``: the principal the records are written as); on any failure what
        was written is removed again and the error raised."""
        subject_id = person.subject_id
        try:
            self.data.register_person(writer, person)
            self.data.record_consent(writer, consent)
            if request.local_matching:
                self.data.record_consent(writer, ConsentRecord(
                    subject_id, LOCAL_MATCH_SCOPE, consent.text_version, consent.consented_at,
                    consent.consented_by, consent.by_guardian, reference=consent.reference))
            if request.groups:
                self.sync.assign_groups(subject_id, request.groups)
                self.data.audit.append(principal, "person.groups", subject_id, "ok",
                                       f"{len(request.groups)} door groups")
            assert result.template is not None
            self.data.enroll(writer, subject_id, result.template, result.quality)
        except BaseException as exc:
            self._undo(writer, subject_id)
            self.data.audit.append(principal, "enrollment", subject_id, "rolled_back",
                                   exc.code.name if isinstance(exc, ApplianceError) else type(exc).__name__)
            raise
        self.data.audit.append(principal, "enrollment", subject_id, "ok",
                               f"{result.used} captures" + ("; duplicate overridden" if overridden else ""))

    def _undo(self, writer: Principal, subject_id: str) -> None:
        """Remove a half-written enrollment: groups, identity (consents cascade), a template
        stored before the failure, the data key."""
        for undo in (lambda: self.sync.assign_groups(subject_id, ()),
                     lambda: self.data.identity.delete_person(writer, subject_id),
                     lambda: self.data.biometric.rows(subject_id) and self.data.biometric.delete_subject(writer,
                                                                                                        subject_id),
                     lambda: self.data.vault.destroy(subject_id)):
            try:
                undo()
            except Exception:  # noqa: BLE001 - the first error is the one raised
                pass

    # -- identification and listings -----------------------------------------------------
    def identify(self, principal: Principal, image: ImageInput, debug: bool = False) -> IdentifyOutcome:
        """Who is this (1:N, the door's rules)? The score is returned only with ``debug``."""
        require(principal, Permission.VERIFY)
        bgr = _image(image, "probe")
        _, template = self.pipeline.template(bgr, self.config.quality_verification)
        if template is None:
            self.data.audit.append(principal, "identify", "gallery", "no_face")
            raise ApplianceError(ErrorCode.NO_FACE, "no face found in the probe")
        verdict, best, display = self.gallery.decide(template)
        decision = MATCH if verdict.accepted else NO_MATCH
        self.data.audit.append(principal, "identify", verdict.subject_id or "gallery", decision)
        score = best.score if debug and best is not None else None
        return IdentifyOutcome(decision, verdict.subject_id, display, score)

    def usability(self, principal: Principal, subject_id: str, central: bool | None = None,
                  templates: int | None = None) -> Usability:
        """Where ``subject_id``'s face works now (``Usability.of``), from the site's decision
        (``central``: already read, for a page of people), the person's consents, door groups
        and template count (``templates``: already counted)."""
        if central is None:
            central = central_allowed(self.sync)
        local = any(c.active and c.scope == LOCAL_MATCH_SCOPE for c in self.data.identity.consents(principal,
                                                                                                  subject_id))
        if templates is None:
            templates = len(self.data.biometric.rows(subject_id))
        doors = openable_doors(SiteAccess(self.sync), subject_id, time.time())  # the access rules' doors
        return Usability.of(central, local, tuple(self.sync.groups(subject_id)), templates > 0,
                            None if doors is None else tuple(doors))

    def people_page(self, principal: Principal, query: str = "", offset: int = 0,
                    limit: int = 50) -> tuple[list[dict], int]:
        """``ProtectedData.people_page`` with each person's door groups and where the face works."""
        rows, total = self.data.people_page(principal, query, offset, limit)
        central = central_allowed(self.sync)
        for row in rows:
            self.with_usability(principal, row, central)
        return rows, total

    def person(self, principal: Principal, subject_id: str) -> dict:
        """One person, masked: templates count, consents, door groups and where the face works."""
        return self.with_usability(principal, self.data.person_masked(principal, subject_id))

    def with_usability(self, principal: Principal, record: dict, central: bool | None = None) -> dict:
        """``record`` (a person's row, masked or not) with its door groups and ``usable_at``."""
        subject_id = record["subject_id"]
        usable = self.usability(principal, subject_id, central, record.get("templates"))
        record["groups"] = list(usable.groups)
        record["usable_at"] = usable.as_dict()
        return record


def _checked_inputs(images: Sequence[tuple[str, ImageInput]]) -> list[tuple[str, ImageInput]]:
    """Every input's count, size and header checked before the first is decoded."""
    images = list(images)
    if not images:
        raise ApplianceError(ErrorCode.ENROLL_FAILED, "no images given")
    if len(images) > MAX_ENROLLMENT_CAPTURES:
        raise ApplianceError(ErrorCode.ENROLL_FAILED, f"{len(images)} images given; at most "
                                                      f"{MAX_ENROLLMENT_CAPTURES} (3 attempts of 3 captures)")
    for label, data in images:
        if isinstance(data, bytes | bytearray | memoryview):
            if len(data) > MAX_FILE_BYTES:
                raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{label}: {len(data)} bytes is too large")
            if not len(data):
                raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{label}: empty file")
            check_header(bytes(data), label)
        elif not isinstance(data, np.ndarray):
            raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{label}: {type(data).__name__} is not an image")
    return images


def _decoded(images: list[tuple[str, ImageInput]]) -> Iterator[tuple[str, np.ndarray]]:
    """One image decoded at a time, as the policy asks for the next."""
    for label, data in images:
        yield label, _image(data, label)


def _image(data: ImageInput, label: str) -> np.ndarray:
    """Bytes decoded with the project's limits, or an array checked to be a BGR (or grey) image."""
    if isinstance(data, bytes | bytearray | memoryview):
        return decode_image(bytes(data), label)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size == 0:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{label}: not an 8-bit image array")
    if data.ndim not in (GREY_DIMENSIONS, COLOUR_DIMENSIONS) or data.ndim == COLOUR_DIMENSIONS \
            and data.shape[2] != COLOUR_CHANNELS:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{label}: array of shape {data.shape}, BGR expected")
    if data.shape[0] * data.shape[1] > MAX_PIXELS:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{label}: {data.shape[1]}x{data.shape[0]} is too large")
    if data.ndim == GREY_DIMENSIONS:
        data = np.repeat(data[..., None], COLOUR_CHANNELS, axis=2)
    return data


__all__ = ["DUPLICATE", "ENROLLED", "FAILED_TO_ENROL", "MATCH", "NO_MATCH", "ConsentNotice", "EnrollmentDesk",
           "EnrollmentOutcome", "EnrollmentRequest", "IdentifyOutcome", "Rejection"]
