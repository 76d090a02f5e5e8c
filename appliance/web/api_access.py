"""``/api/access``: the site's access rules over HTTP (the same ``AccessAdmin`` calls as
``appliance access``; docs/access.md). Reading needs ``READ_EVENTS``; every change needs
``MANAGE_DEVICES`` (security and system administrators), is audited under the caller's
account and reaches the doors as a new revision. ``enforced`` false means no group exists and
every enrolled person opens every door; ``warning`` says so in the answer."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from appliance.security.roles import Permission, Principal
from appliance.web.auth import allowed, services_of

router = APIRouter(prefix="/api/access", tags=["access"])
Reads = Annotated[Principal, Depends(allowed(Permission.READ_EVENTS))]
Manages = Annotated[Principal, Depends(allowed(Permission.MANAGE_DEVICES))]
NOT_ENFORCED = "no access group is defined: every enrolled person opens every door at any time"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class GroupBody(BaseModel):
    schedule: dict[str, Any] | None = Field(None, description='weekly schedule, e.g. {"mon": ["08:00-18:00"], '
                                                              '"holidays": "closed"}; none: always open')


class HolidayBody(BaseModel):
    name: str = Field("", max_length=100)


class ValidityBody(BaseModel):
    valid_from: float | None = Field(None, description="Unix seconds; null: from now on")
    valid_until: float | None = Field(None, description="Unix seconds; null: no end")


class AreaBody(BaseModel):
    mode: Literal["hard", "soft", "off"]
    reset_s: float = Field(43200.0, ge=0, description="presence forgotten after this long, seconds; 0: never")
    entries: list[Name] = Field(default_factory=list, max_length=256)
    exits: list[Name] = Field(default_factory=list, max_length=256)


class Change(BaseModel):
    """A change made: stored, audited, and on its way to the doors."""

    ok: bool
    result: dict[str, Any] | None = None


class AccessRules(BaseModel):
    """The site's rules; ``enforced`` false: nobody is restricted (``warning`` says so)."""

    enforced: bool
    timezone: str
    groups: list[dict[str, Any]]
    holidays: dict[str, str]
    areas: dict[str, dict[str, Any]]
    warning: str = ""


def _admin(request: Request, principal: Principal, change) -> Change:
    from appliance.matcher.access_admin import AccessAdmin

    services = services_of(request)
    with services.stores():
        result = change(AccessAdmin(services.data, services.sync, principal))
    return Change(ok=True, result=result)


@router.get("", response_model=AccessRules,
            summary="The site's access rules (groups, doors, schedules, holidays, areas)")
def show(request: Request, principal: Reads) -> AccessRules:
    from appliance.matcher.access_admin import rules_view

    services = services_of(request)
    with services.stores():
        view = rules_view(services.sync, services.config.access.timezone)
    return AccessRules(**view, warning="" if view["enforced"] else NOT_ENFORCED)


@router.put("/groups/{name}", response_model=Change, summary="Create a group or set its weekly schedule")
def put_group(request: Request, principal: Manages, name: str, body: GroupBody) -> Change:
    return _admin(request, principal, lambda admin: {"created": admin.put_group(name, body.schedule)})


@router.delete("/groups/{name}", response_model=Change, summary="Delete a group (its members lose its doors)")
def delete_group(request: Request, principal: Manages, name: str) -> Change:
    return _admin(request, principal, lambda admin: {"members_removed": len(admin.delete_group(name))})


@router.put("/groups/{name}/doors/{door}", response_model=Change, summary="The group opens this door (device name)")
def grant_door(request: Request, principal: Manages, name: str, door: str) -> Change:
    return _admin(request, principal, lambda admin: admin.grant_doors(name, [door]))


@router.delete("/groups/{name}/doors/{door}", response_model=Change, summary="The group no longer opens this door")
def revoke_door(request: Request, principal: Manages, name: str, door: str) -> Change:
    return _admin(request, principal, lambda admin: admin.grant_doors(name, [door], granted=False))


@router.put("/groups/{name}/members/{subject_id}", response_model=Change, summary="Add an enrolled person to the group")
def add_member(request: Request, principal: Manages, name: str, subject_id: str) -> Change:
    return _admin(request, principal, lambda admin: {"changed": admin.set_member(name, subject_id)})


@router.delete("/groups/{name}/members/{subject_id}", response_model=Change, summary="Remove a person from the group")
def remove_member(request: Request, principal: Manages, name: str, subject_id: str) -> Change:
    return _admin(request, principal, lambda admin: {"changed": admin.set_member(name, subject_id, False)})


@router.put("/holidays/{day}", response_model=Change, summary="A date (YYYY-MM-DD) schedules treat as a holiday")
def add_holiday(request: Request, principal: Manages, day: str, body: HolidayBody) -> Change:
    return _admin(request, principal, lambda admin: {"changed": admin.set_holiday(day, body.name)})


@router.delete("/holidays/{day}", response_model=Change, summary="No longer a holiday")
def remove_holiday(request: Request, principal: Manages, day: str) -> Change:
    return _admin(request, principal, lambda admin: {"changed": admin.set_holiday(day, present=False)})


@router.put("/people/{subject_id}/validity", response_model=Change,
            summary="When a person's access starts and ends (visitors)")
def set_validity(request: Request, principal: Manages, subject_id: str, body: ValidityBody) -> Change:
    return _admin(request, principal, lambda admin: admin.set_validity(subject_id, body.valid_from, body.valid_until))


@router.put("/areas/{area}", response_model=Change, summary="An area's entry and exit doors and its anti-passback mode")
def put_area(request: Request, principal: Manages, area: str, body: AreaBody) -> Change:
    return _admin(request, principal, lambda admin: admin.set_area(area, body.mode, body.reset_s, body.entries,
                                                                   body.exits))
