"""``/api/events``: the door log of every device, as the sync store recorded it.

Filters: door (device), time range (``since``/``until``, Unix seconds at the door), outcome,
kind, type (event or alarm); paged, newest first. ``?format=csv`` or ``/api/events.csv``
exports the same selection. ``/api/events/stream`` is a server-sent-event stream of new
events: it polls the store by recording order (``seq``), resumes after ``Last-Event-ID``
(or ``after_seq``), sends a comment now and then so proxies keep it open, and ends after
``max_events`` events or ``STREAM_MAX_S`` (clients reconnect with the last id). Details
are masked like any other answer (an event carries a pseudonym at most, never a name).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from appliance.matcher.sync_store import MAX_EVENT_PAGE, EventQuery, StoredEvent
from appliance.security.masking import mask_record
from appliance.security.roles import Permission, Principal
from appliance.web import models
from appliance.web.auth import allowed, services_of
from appliance.web.exports import csv_response

router = APIRouter(prefix="/api", tags=["events"])
CSV_COLUMNS = ("seq", "event_id", "device", "type", "kind", "outcome", "at", "received_at", "details")
STREAM_POLL_S = 0.5  # how often the stream looks for new events
STREAM_KEEPALIVE_S = 15.0  # a comment line after this long without events
STREAM_MAX_S = 3600.0  # a stream ends after an hour; the client resumes with Last-Event-ID
STREAM_BATCH = 100
EVENT_TYPE = Literal["event", "alarm"]
ReadsEvents = Annotated[Principal, Depends(allowed(Permission.READ_EVENTS))]


def _event(stored: StoredEvent) -> models.Event:
    return models.Event(seq=stored.seq, event_id=stored.event_id, device=stored.device_id, type=stored.type,
                        kind=stored.kind, outcome=stored.outcome, at=stored.at, received_at=stored.received_at,
                        details=mask_record(stored.details))


class Filters:
    """The query parameters every door-log route shares."""

    def __init__(self, device: Annotated[str | None, Query(max_length=64)] = None,
                 since: float | None = None, until: float | None = None,
                 outcome: Annotated[str | None, Query(max_length=64)] = None,
                 kind: Annotated[str | None, Query(max_length=64)] = None,
                 type: EVENT_TYPE | None = None,  # noqa: A002 - the public parameter name
                 offset: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=MAX_EVENT_PAGE)] = models.DEFAULT_PAGE) -> None:
        self.query = EventQuery(device=device, since=since, until=until, outcome=outcome, kind=kind, type=type,
                                offset=offset, limit=limit)


Filtered = Annotated[Filters, Depends()]


def _select(request: Request, query: EventQuery) -> tuple[list[models.Event], int]:
    services = services_of(request)
    with services.stores():
        found, total = services.sync.find_events(query), services.sync.count_events(query)
    return [_event(e) for e in found], total


def _csv(items: list[models.Event]) -> Response:
    return csv_response((item.model_dump() for item in items), CSV_COLUMNS, "events.csv")


@router.get("/events", response_model=models.EventPage, summary="The door log, filtered and paged (or CSV)",
            responses={200: {"content": {"text/csv": {}}}})
def list_events(request: Request, filters: Filtered, principal: ReadsEvents,
                format: Literal["json", "csv"] = "json",  # noqa: A002 - the public parameter name
                ) -> models.EventPage | Response:
    items, total = _select(request, filters.query)
    if format == "csv":
        return _csv(items)
    return models.EventPage(items=items, total=total, offset=filters.query.offset, limit=filters.query.limit)


@router.get("/events.csv", summary="The door log as CSV", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def export_events(request: Request, filters: Filtered, principal: ReadsEvents) -> Response:
    return _csv(_select(request, filters.query)[0])


def _sse(event: models.Event) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(event.model_dump(), ensure_ascii=False)}\n\n"


@router.get("/events/stream", summary="New door events as server-sent events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream_events(request: Request, filters: Filtered, principal: ReadsEvents,
                        after_seq: Annotated[int | None, Query(ge=0)] = None,
                        max_events: Annotated[int | None, Query(ge=1)] = None,
                        last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    services = services_of(request)
    if after_seq is None and last_event_id and last_event_id.isdigit():
        after_seq = int(last_event_id)
    if after_seq is None:  # from now on
        after_seq = await run_in_threadpool(_locked_last_seq, services)
    base = filters.query

    async def events() -> AsyncIterator[str]:
        cursor, sent, started, quiet_since = after_seq, 0, time.monotonic(), time.monotonic()
        while time.monotonic() - started < STREAM_MAX_S and not await request.is_disconnected():
            query = dataclasses.replace(base, after_seq=cursor, offset=0, limit=STREAM_BATCH, order="asc")
            found = await run_in_threadpool(_locked_find, services, query)
            for stored in found:
                cursor = stored.seq
                yield _sse(_event(stored))
                sent += 1
                if max_events is not None and sent >= max_events:
                    return
            if found:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= STREAM_KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(0 if len(found) == STREAM_BATCH else STREAM_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _locked_last_seq(services) -> int:
    with services.stores():
        return services.sync.last_seq()


def _locked_find(services, query: EventQuery) -> list[StoredEvent]:
    with services.stores():
        return services.sync.find_events(query)
