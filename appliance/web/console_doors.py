"""The doors page (live status, revocation) and the events page (the door log, filtered,
with new events streamed in by ``static/events.js`` from ``/api/events/stream``).

Both call what the REST API calls - ``fleet.devices``, the API's revocation (PKI, broker
restart, audit entry) and its door-log query - so a device is "online" and an event is
masked by one rule everywhere. Filters are door, time and outcome: none is personal data,
so they travel in the URL like any search of a log, and the CSV link carries the same.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.roles import Principal
from appliance.web import api_admin, api_events, fleet
from appliance.web.console_base import NAV, console_page, page_principal, post_principal, render, services
from appliance.web.console_i18n import N_, say

router = APIRouter()
DOORS = next(item for item in NAV if item.path == "/doors")
EVENTS = next(item for item in NAV if item.path == "/events")
EVENTS_SHOWN = 100  # the newest this many; the CSV export has up to the API's page limit
CSV_ROWS = 1000
DOORS_REFRESH_S = 10  # how often doors.js asks /api/devices for the live status
OUTCOMES = ("accepted", "rejected", "unavailable")
TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


@router.get("/doors", include_in_schema=False)
@console_page
def doors(request: Request) -> Response:
    principal = page_principal(request, DOORS)
    store = services(request)
    with store.stores():
        found = fleet.devices(store)
    return _doors_page(request, principal, found)


@router.post("/doors/revoke", include_in_schema=False)
@console_page
def revoke(request: Request, name: Annotated[str, Form(max_length=64)], csrf: Annotated[str, Form()] = "") -> Response:
    principal = post_principal(request, csrf, DOORS)
    done = api_admin.revoke_device(request=request, principal=principal, name=name)  # PKI, broker, audit
    store = services(request)
    with store.stores():
        found = fleet.devices(store)
    return _doors_page(request, principal, found, revoked=done)


def _doors_page(request: Request, principal: Principal, found: list[fleet.DeviceView], **extra: object) -> Response:
    window = fleet.ONLINE_PERIODS * services(request).config.offline.digest_every_s
    return render(request, "doors.html", principal, devices=found, online_window_s=window,
                  refresh_s=DOORS_REFRESH_S, **extra)


def _time(request: Request, text: str, what: str) -> float | None:
    """A form's date and time (UTC, as the page says) as Unix seconds; empty: no bound."""
    text = text.strip()
    if not text:
        return None
    for pattern in TIME_FORMATS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ApplianceError(ErrorCode.CONFIG_INVALID, say(
        request, "%(field)s %(text)s: a date and time like 2026-12-01T09:30 (UTC)", field=say(request, what),
        text=repr(text)))


@router.get("/events", include_in_schema=False)
@console_page
def events(request: Request, door: Annotated[str, Query(max_length=64)] = "",
           since: Annotated[str, Query(max_length=32)] = "", until: Annotated[str, Query(max_length=32)] = "",
           outcome: Annotated[str, Query(max_length=32)] = "") -> Response:
    principal = page_principal(request, EVENTS)
    filters = {"device": door or None, "since": _time(request, since, N_("from")),
               "until": _time(request, until, N_("until")),
               "outcome": outcome or None}
    store = services(request)
    with store.stores():  # the stream resumes after this: an event recorded meanwhile is not lost
        after_seq = store.sync.last_seq()
        doors_known = [d.name for d in fleet.devices(store)]
    # the API's own query (its filters, masking and paging), called with this page's principal
    page = api_events.list_events(request=request, filters=api_events.Filters(**filters, limit=EVENTS_SHOWN),
                                  principal=principal, format="json")
    chosen = {k: v for k, v in filters.items() if v is not None}
    return render(request, "events.html", principal, events=page.items, total=page.total, doors=doors_known,
                  outcomes=OUTCOMES, door=door, since=since, until=until, outcome=outcome,
                  stream_query=urlencode({**chosen, "after_seq": after_seq}),
                  csv_query=urlencode({**chosen, "limit": CSV_ROWS}))
