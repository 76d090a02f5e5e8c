"""The access page: groups with their doors and weekly schedules, members, holidays, visitors'
validity periods and areas with their anti-passback mode (docs/access.md).

Reading is the API's own ``GET /api/access`` (``READ_EVENTS``); every change goes through the
API's route function, so ``AccessAdmin`` checks ``MANAGE_DEVICES``, audits the change under the
session's account and makes it reach the doors as a new revision - one rule for the console,
the REST API and ``appliance access``. Members are shown by masked name (for a role that may
read identities, else by pseudonym) and are added by pseudonym or staff number; the person's
identity never goes into a URL. Times on this page are the site's wall clock (``[access]
timezone``), as the schedules are.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from appliance.access.rules import Validity
from appliance.access.schedule import HOLIDAY_AS_USUAL, HOLIDAY_CLOSED, WEEKDAYS, zone
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.masking import mask_name, mask_number
from appliance.security.roles import Permission, Principal
from appliance.stores.protected import MAX_PAGE_SIZE
from appliance.web import api_access, fleet
from appliance.web.console_base import NAV, console_page, page_principal, post_principal, render, services
from appliance.web.console_i18n import N_, say
from appliance.web.services import Services

router = APIRouter()
ACCESS = next(item for item in NAV if item.path == "/access")
NAME_CHARS = 64  # group, door and area names (AccessAdmin.NAME)
PERSON_CHARS = 100  # a pseudonym or a staff number
WINDOWS_CHARS = 200  # one day's windows, "08:00-12:00, 13:00-18:00"
MEMBERS_SHOWN = 200  # per group, and visitors; the count says how many there are in all
HOLIDAY_SCHEDULE = "schedule"
WEEKDAY_LABELS = dict(zip(WEEKDAYS, (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))))
HOLIDAY_RULES = {HOLIDAY_CLOSED: N_("closed on holidays"), HOLIDAY_AS_USUAL: N_("holidays as usual"),
                 HOLIDAY_SCHEDULE: N_("holiday hours")}
PASSBACK_LABELS = {"hard": N_("hard: a second entry is refused"), "soft": N_("soft: let through, on record"),
                   "off": N_("off")}
DIRECTION_LABELS = {"entry": N_("entry"), "exit": N_("exit")}
LOCAL_TIME = "%Y-%m-%d %H:%M"
LOCAL_INPUTS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")
Name = Annotated[str, Form(max_length=NAME_CHARS)]
Person = Annotated[str, Form(max_length=PERSON_CHARS)]
Windows = Annotated[str, Form(max_length=WINDOWS_CHARS)]
Csrf = Annotated[str, Form()]


# -- the page ---------------------------------------------------------------------------
@router.get("/access", include_in_schema=False)
@console_page
def access(request: Request) -> Response:
    return _page(request, page_principal(request, ACCESS))


def _page(request: Request, principal: Principal, **extra: object) -> Response:
    rules = api_access.show(request=request, principal=principal)  # the API's read, its permission
    store = services(request)
    names = principal.can(Permission.READ_IDENTITY_MASKED)
    with store.stores():
        members = {g["name"]: [_person(store, principal, sid, names, rules.timezone)
                               for sid in store.sync.group_members(g["name"])[:MEMBERS_SHOWN]]
                   for g in rules.groups}
        limited = [sid for sid in store.sync.access_subjects() if _limited(store.sync.access_subject(sid).validity)]
        visitors = [_person(store, principal, sid, names, rules.timezone) for sid in limited[:MEMBERS_SHOWN]]
        doors_known = [d.name for d in fleet.devices(store)]
    defaults = store.config.access
    return render(request, "access.html", principal, rules=rules, members=members,
                  visitors=visitors, visitors_total=len(limited), doors_known=doors_known,
                  may_change=principal.can(Permission.MANAGE_DEVICES), names_shown=names,
                  weekdays=WEEKDAY_LABELS, holiday_rules=HOLIDAY_RULES, passback_labels=PASSBACK_LABELS,
                  direction_labels=DIRECTION_LABELS, passback_default=defaults.passback_mode,
                  reset_default=int(defaults.passback_reset_s), **extra)


def _person(store: Services, principal: Principal, subject_id: str, names: bool, tz: str) -> dict:
    """A member or visitor as the page shows them: pseudonym, masked name and staff number
    (for a role that may read identities), validity in the site's time."""
    name = staff = ""
    if names:
        try:
            person = store.data.identity.person(principal, subject_id)
            name, staff = mask_name(person.name), mask_number(person.staff_no or "")
        except ApplianceError as exc:
            if exc.code is not ErrorCode.SUBJECT_NOT_FOUND:
                raise
    validity = store.sync.access_subject(subject_id).validity
    return {"subject_id": subject_id, "name": name, "staff_no": staff,
            "valid_from": _local(validity.valid_from, tz), "valid_until": _local(validity.valid_until, tz)}


def _limited(validity: Validity) -> bool:
    return validity.valid_from is not None or validity.valid_until is not None


def _local(at: float | None, tz: str) -> str:
    return "" if at is None else datetime.fromtimestamp(at, zone(tz)).strftime(LOCAL_TIME)


def _changed(request: Request, principal: Principal) -> Response:
    """The page again, saying the change is stored and on its way to the doors."""
    store = services(request)
    with store.stores():
        revision = store.data.biometric.revision
    return _page(request, principal, done=say(
        request, "Saved and audited. The doors receive it with revision %(revision)s.", revision=revision))


def _body(request: Request, model: type[pydantic.BaseModel], **values: Any) -> Any:
    """The API's request body, or the reason it is not one as a clear refusal."""
    try:
        return model(**values)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApplianceError(ErrorCode.CONFIG_INVALID, say(request, "not accepted: %(problems)s",
                                                           problems=problems)) from None


def _words(text: str) -> list[str]:
    return text.replace(",", " ").split()


# -- groups, doors, schedules -------------------------------------------------------------
def _schedule(request: Request, days: dict[str, str], holidays: str, holiday_hours: str) -> dict | None:
    """The form's weekly schedule (None: every day empty, the group is always open)."""
    if not any(v.strip() for v in days.values()) and not holiday_hours.strip():
        return None
    if holidays not in HOLIDAY_RULES:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, say(request, "unknown holiday rule %(rule)s", rule=holidays))
    spec: dict[str, object] = {day: _words(text) for day, text in days.items()}
    spec["holidays"] = holidays
    if holiday_hours.strip():
        spec["holiday"] = _words(holiday_hours)
    return spec


@router.post("/access/groups", include_in_schema=False)
@console_page
def put_group(request: Request, name: Name, mon: Windows = "", tue: Windows = "", wed: Windows = "",
              thu: Windows = "", fri: Windows = "", sat: Windows = "", sun: Windows = "",
              holidays: Annotated[str, Form(max_length=16)] = HOLIDAY_CLOSED, holiday_hours: Windows = "",
              csrf: Csrf = "") -> Response:
    """Create a group or set the schedule of one (the same call as ``PUT /api/access/groups``)."""
    principal = post_principal(request, csrf, ACCESS)
    days = {"mon": mon, "tue": tue, "wed": wed, "thu": thu, "fri": fri, "sat": sat, "sun": sun}
    body = _body(request, api_access.GroupBody, schedule=_schedule(request, days, holidays, holiday_hours))
    api_access.put_group(request=request, principal=principal, name=name.strip(), body=body)
    return _changed(request, principal)


@router.post("/access/groups/delete", include_in_schema=False)
@console_page
def delete_group(request: Request, name: Name, csrf: Csrf = "") -> Response:
    principal = post_principal(request, csrf, ACCESS)
    api_access.delete_group(request=request, principal=principal, name=name)
    return _changed(request, principal)


@router.post("/access/doors", include_in_schema=False)
@console_page
def grant_door(request: Request, group: Name, door: Name, csrf: Csrf = "") -> Response:
    principal = post_principal(request, csrf, ACCESS)
    api_access.grant_door(request=request, principal=principal, name=group, door=door.strip())
    return _changed(request, principal)


@router.post("/access/doors/revoke", include_in_schema=False)
@console_page
def revoke_door(request: Request, group: Name, door: Name, csrf: Csrf = "") -> Response:
    principal = post_principal(request, csrf, ACCESS)
    api_access.revoke_door(request=request, principal=principal, name=group, door=door)
    return _changed(request, principal)


# -- members and visitors -----------------------------------------------------------------
def _subject(request: Request, principal: Principal, text: str) -> str:
    """The pseudonym of the person ``text`` names: a staff number that exactly one person has
    (looked up for a role that may read identities), else ``text`` itself as a pseudonym
    (``AccessAdmin`` refuses one that is not enrolled)."""
    text = text.strip()
    if not text:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, say(request, "name a person by pseudonym or staff number"))
    if not principal.can(Permission.READ_IDENTITY_MASKED):
        return text
    store, found, offset = services(request), [], 0
    with store.stores():
        while True:  # the staff-number search matches parts: keep the exact matches
            people, total = store.data.identity.page(principal, text, offset, MAX_PAGE_SIZE)
            found += [p.subject_id for p in people if p.staff_no == text]
            offset += len(people)
            if not people or offset >= total:
                break
    if len(found) > 1:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, say(
            request, "%(count)s people have this staff number: name the person by pseudonym", count=len(found)))
    return found[0] if found else text


@router.post("/access/members", include_in_schema=False)
@console_page
def add_member(request: Request, group: Name, person: Person, csrf: Csrf = "") -> Response:
    principal = post_principal(request, csrf, ACCESS)
    subject_id = _subject(request, principal, person)
    api_access.add_member(request=request, principal=principal, name=group, subject_id=subject_id)
    return _changed(request, principal)


@router.post("/access/members/remove", include_in_schema=False)
@console_page
def remove_member(request: Request, group: Name, subject_id: Person, csrf: Csrf = "") -> Response:
    principal = post_principal(request, csrf, ACCESS)
    api_access.remove_member(request=request, principal=principal, name=group, subject_id=subject_id)
    return _changed(request, principal)


def _instant(request: Request, text: str, what: str) -> float | None:
    """A form's date and time on the site's wall clock as Unix seconds; empty: no bound."""
    text = text.strip()
    if not text:
        return None
    tz = zone(services(request).config.access.timezone)
    for pattern in LOCAL_INPUTS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=tz).timestamp()
        except ValueError:
            continue
    raise ApplianceError(ErrorCode.CONFIG_INVALID, say(
        request, "%(field)s %(text)s: a date and time like 2026-12-01T09:30", field=say(request, what),
        text=repr(text)))


@router.post("/access/validity", include_in_schema=False)
@console_page
def set_validity(request: Request, person: Person, valid_from: Annotated[str, Form(max_length=32)] = "",
                 valid_until: Annotated[str, Form(max_length=32)] = "", csrf: Csrf = "") -> Response:
    """When a person's access starts and ends (visitors); both empty: no limit."""
    principal = post_principal(request, csrf, ACCESS)
    body = _body(request, api_access.ValidityBody, valid_from=_instant(request, valid_from, N_("Valid from")),
                 valid_until=_instant(request, valid_until, N_("Valid until")))
    api_access.set_validity(request=request, principal=principal, subject_id=_subject(request, principal, person),
                            body=body)
    return _changed(request, principal)


# -- holidays and areas ---------------------------------------------------------------------
@router.post("/access/holidays", include_in_schema=False)
@console_page
def add_holiday(request: Request, day: Annotated[str, Form(max_length=10)],
                name: Annotated[str, Form(max_length=100)] = "", csrf: Csrf = "") -> Response:
    principal = post_principal(request, csrf, ACCESS)
    api_access.add_holiday(request=request, principal=principal, day=day.strip(),
                           body=_body(request, api_access.HolidayBody, name=name.strip()))
    return _changed(request, principal)


@router.post("/access/holidays/remove", include_in_schema=False)
@console_page
def remove_holiday(request: Request, day: Annotated[str, Form(max_length=10)], csrf: Csrf = "") -> Response:
    principal = post_principal(request, csrf, ACCESS)
    api_access.remove_holiday(request=request, principal=principal, day=day)
    return _changed(request, principal)


@router.post("/access/areas", include_in_schema=False)
@console_page
def put_area(request: Request, area: Name, mode: Annotated[str, Form(max_length=8)],
             reset_s: Annotated[float, Form()], entries: Windows = "", exits: Windows = "",
             csrf: Csrf = "") -> Response:
    """An area's entry and exit doors and its anti-passback mode (replaces what it had)."""
    principal = post_principal(request, csrf, ACCESS)
    body = _body(request, api_access.AreaBody, mode=mode, reset_s=reset_s, entries=_words(entries),
                 exits=_words(exits))
    api_access.put_area(request=request, principal=principal, area=area.strip(), body=body)
    return _changed(request, principal)
