"""``appliance enroll``, ``appliance identify`` and ``appliance notice``: the enrollment desk
(``appliance.matcher.enrollment_desk``) from the command line, acting as the account of the
caller's session or token (``appliance.cli.auth``). Only masked names are printed.

Exit status of ``enroll``: 0 enrolled, 28 (ENROLL_FAILED) when no capture passed the
enrollment profile, 29 (DUPLICATE_ENROLLMENT) when the face is already enrolled; the JSON or
text output says which captures were rejected and what to change. ``--folder`` imports many
people at once (``appliance.cli.enroll_folder``, format in docs/enrollment.md). ``identify``
exits 0 on a match and 1 on no match, like ``compare``.

An enrolled outcome says where the face works (``usable_at``: central, doors or nowhere); a
face usable at no door (no justification for central matching on the site and no
local-matching consent) still exits 0 - the person is enrolled - but prints a ``warning:``
line on stderr with the reason and what to do (in the JSON: ``warnings``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from appliance import json_text
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.consent import NOTICE_LANGUAGES, AgeBand, Alternative, notice

if TYPE_CHECKING:  # the desk, the pipeline and the stores load when a command runs, not for every 'appliance'
    from appliance.matcher.enrollment_desk import EnrollmentOutcome, EnrollmentRequest

NEGATIVE = 1  # identify: nobody matched


def register(sub: argparse._SubParsersAction) -> None:
    enroll = sub.add_parser("enroll", help="enroll a person's face with their consent (exit 28 failed, 29 duplicate)")
    enroll.add_argument("images", nargs="*", metavar="IMAGE", help="photos of the person (up to 9: 3 attempts of 3)")
    enroll.add_argument("--name", help="the person's name (printed masked)")
    enroll.add_argument("--consent-ref", help="reference of the signed consent form or its record (required)")
    enroll.add_argument("--group", action="append", default=[], metavar="G",
                        help="door group whose devices may hold the template (repeatable; none: all)")
    enroll.add_argument("--age-band", choices=[a.value for a in AgeBand], default=AgeBand.ADULT.value,
                        help="the person's age band; under_14 needs the --guardian's consent (default %(default)s)")
    enroll.add_argument("--alternative", choices=[a.value for a in Alternative], default=Alternative.CARD.value,
                        help="the non-face way through the door recorded for the person (default %(default)s)")
    enroll.add_argument("--card-no", "--card", default="", help="the person's card number")
    enroll.add_argument("--refuse-face", action="store_true",
                        help="the person refuses face recognition: record the refusal and their --card, no photos "
                             "(they pass by card/PIN; docs/door-modes.md)")
    enroll.add_argument("--staff-no", default="", help="the person's staff number (optional; listed masked)")
    enroll.add_argument("--guardian", default="", help="the guardian who consented (required under 14)")
    enroll.add_argument("--local-matching", action="store_true",
                        help="the person also consented to matching on door devices")
    enroll.add_argument("--notice-version", default="",
                        help="the consent notice version the person was shown (default: the current one)")
    enroll.add_argument("--override-duplicate", metavar="REASON", default="",
                        help="enroll although the face is already enrolled (security administrator; audited)")
    enroll.add_argument("--folder", metavar="DIR", help="bulk import: one subfolder of photos per person and a "
                                                        "manifest.csv (see docs/enrollment.md)")
    enroll.add_argument("--manifest", metavar="CSV", help="--folder: the manifest (default DIR/manifest.csv)")
    enroll.add_argument("--report", metavar="CSV",
                        help="--folder: where the outcome of each person goes (default DIR/enroll-report.csv)")
    enroll.add_argument("--json", action="store_true",
                        help="print the outcome as JSON (--folder: the counts and each person's outcome)")
    enroll.set_defaults(handler=cmd_enroll)

    identify = sub.add_parser("identify", help="who is in this photo? (1:N; exit 0 match, 1 no match)")
    identify.add_argument("image", help="photo of the person (image file)")
    identify.add_argument("--json", action="store_true",
                          help="print {decision, subject_id, name} as JSON, the name masked (score with --debug)")
    identify.set_defaults(handler=cmd_identify)

    shown = sub.add_parser("notice", help="print the consent notice shown before enrollment")
    shown.add_argument("--language", choices=NOTICE_LANGUAGES, default=NOTICE_LANGUAGES[0],
                       help="language of the notice (default %(default)s)")
    shown.add_argument("--json", action="store_true", help="print {version, language, text} as JSON")
    shown.set_defaults(handler=cmd_notice)


def request_from(args: argparse.Namespace) -> EnrollmentRequest:
    from appliance.matcher.enrollment_desk import EnrollmentRequest

    return EnrollmentRequest(
        name=args.name or "", consent_ref=args.consent_ref or "", age_band=args.age_band,
        alternative=args.alternative, card_no=args.card_no, staff_no=args.staff_no, guardian_name=args.guardian,
        groups=tuple(args.group), local_matching=args.local_matching, override_reason=args.override_duplicate,
        notice_version=args.notice_version)


def cmd_enroll(args: argparse.Namespace) -> int:
    from appliance.cli.desk_session import EXIT_STATUS, open_desk, read_upload
    from appliance.cli.enroll_folder import import_folder

    if args.folder:
        if args.images or args.name or args.consent_ref:
            raise ApplianceError(ErrorCode.ENROLL_FAILED, "--folder takes names and consent references from its "
                                                          "manifest: give no IMAGE, --name or --consent-ref")
        return import_folder(args)
    if args.refuse_face:
        return _register_without_face(args)
    if not args.images:
        raise ApplianceError(ErrorCode.ENROLL_FAILED, "give the person's photos (IMAGE...) or --folder DIR")
    request = request_from(args)  # a missing name or consent reference is refused before anything opens
    uploads = [read_upload(Path(image)) for image in args.images]
    with open_desk(args) as (desk, principal):
        outcome = desk.enroll(principal, request, uploads)
    print_outcome(outcome, args.json)
    return EXIT_STATUS[outcome.status]


def _register_without_face(args: argparse.Namespace) -> int:
    """``--refuse-face``: the person, the refusal and the card; nothing is captured."""
    from appliance.cli.desk_session import open_desk

    if args.images:
        raise ApplianceError(ErrorCode.ENROLL_FAILED, "--refuse-face takes no photos: nothing is captured")
    request = request_from(args)
    with open_desk(args) as (desk, principal):
        subject_id = desk.register_without_face(principal, request)
    if args.json:
        sys.stdout.write(json_text.dumps({"status": "registered", "subject_id": subject_id, "face": "refused"}) + "\n")
    else:
        print(f"registered {subject_id} without a face (refused); passes by card/PIN")
    return 0


def print_outcome(outcome: EnrollmentOutcome, as_json: bool) -> None:
    from appliance.matcher.enrollment_desk import DUPLICATE, ENROLLED

    if as_json:
        sys.stdout.write(json_text.dumps(outcome.as_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        print(outcome.message)
        for rejection in outcome.rejected:
            print(f"  rejected {rejection.image}: {rejection.reason} - {rejection.guidance}")
        if outcome.usable_at is not None and not outcome.warnings:
            print(f"  usable: {outcome.usable_at.where} - {outcome.usable_at.message}")
        for warning in outcome.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    if outcome.status != ENROLLED:
        code = ErrorCode.DUPLICATE_ENROLLMENT if outcome.status == DUPLICATE else ErrorCode.ENROLL_FAILED
        print(f"error: {ApplianceError(code, outcome.message)}", file=sys.stderr)


def cmd_identify(args: argparse.Namespace) -> int:
    from appliance.cli.desk_session import open_desk, read_upload
    from appliance.matcher.enrollment_desk import MATCH

    _, probe = read_upload(Path(args.image))
    with open_desk(args) as (desk, principal):
        outcome = desk.identify(principal, probe, debug=args.debug)
    if args.json:
        sys.stdout.write(json_text.dumps(outcome.as_dict(), ensure_ascii=False) + "\n")
    else:
        found = f"match: {outcome.name} ({outcome.subject_id})" if outcome.decision == MATCH else "no match"
        print(found + (f"; score {outcome.score:.4f}" if outcome.score is not None else ""))
    return 0 if outcome.decision == MATCH else NEGATIVE


def cmd_notice(args: argparse.Namespace) -> int:
    shown = notice(args.language)
    if args.json:
        sys.stdout.write(json_text.dumps({"version": shown.version, "language": shown.language, "text": shown.text},
                                    ensure_ascii=False) + "\n")
    else:
        print(f"[{shown.version}, {shown.language}]\n{shown.text}", end="")
    return 0
