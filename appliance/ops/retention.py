"""Retention as a duty the site can show: apply every limit, remember the run, report the state.

``ProtectedData.run_retention`` removes what is past its limit (templates, audit entries,
deletion receipts, door events in the matcher's door log and a door's outbox) and writes one
audit entry saying what went. This module runs it for the maintenance job and ``appliance
retention run``, keeps the last run (time, account, counts) in the site state so the health
check and the compliance report can say when retention last ran, and measures what is left:
the age of the oldest record of each kind against its configured limit.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from appliance.security.roles import Principal
from appliance.stores.audit import SECONDS_PER_DAY
from appliance.stores.deletion import oldest_receipt_time
from appliance.stores.device import Outbox
from appliance.stores.protected import RECEIPTS_DIR, DoorLog, ProtectedData

LAST_RUN_KEY = "retention_last_run"  # the site_state row of the last run
# the maintenance timer runs nightly; two days without a run means it stopped
RETENTION_OVERDUE_S = 2 * SECONDS_PER_DAY


class SiteState(Protocol):
    """Where site-level records live (``appliance.matcher.sync_store.SyncStore``)."""

    def site_value(self, name: str) -> tuple[dict[str, Any], float] | None: ...

    def put_site_value(self, name: str, value: dict[str, Any], at: float) -> None: ...


@dataclass(frozen=True)
class RetentionLimits:
    """The configured limits, days (``[security]``)."""

    templates: int
    door_events: int
    audit: int
    receipts: int


@dataclass(frozen=True)
class RetentionRun:
    """One run: when, by which account, and what it removed by kind."""

    at: float
    account: str
    counts: dict[str, int]


@dataclass(frozen=True)
class RetentionStatus:
    """What the report and the health check show: limits, the last run, and the age in days
    of the oldest record of each kind still held (None: none held or not measured)."""

    limits: RetentionLimits
    last_run: RetentionRun | None
    oldest_days: dict[str, float | None]
    overdue: bool  # no run within RETENTION_OVERDUE_S
    over_limit: tuple[str, ...]  # kinds holding a record older than their limit

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def limits_of(data: ProtectedData) -> RetentionLimits:
    days = data.security
    return RetentionLimits(days.template_retention_days, days.event_retention_days, days.audit_retention_days,
                           days.receipt_retention_days)


def apply_retention(data: ProtectedData, principal: Principal, state: SiteState | None = None,
                    door_log: DoorLog | None = None, outbox: Outbox | None = None,
                    now: float | None = None) -> RetentionRun:
    """Apply every limit (audited by ``run_retention``) and record the run in ``state``."""
    now = time.time() if now is None else now
    report = data.run_retention(principal, now=now, outbox=outbox, door_log=door_log)
    run = RetentionRun(now, principal.actor, report.counts())
    if state is not None:
        state.put_site_value(LAST_RUN_KEY, asdict(run), now)
    return run


def last_run(state: SiteState | None) -> RetentionRun | None:
    found = None if state is None else state.site_value(LAST_RUN_KEY)
    if found is None:
        return None
    value, _ = found
    return RetentionRun(float(value["at"]), str(value["account"]), {k: int(v) for k, v in value["counts"].items()})


def retention_status(data: ProtectedData, state: SiteState | None = None, door_log: DoorLog | None = None,
                     now: float | None = None) -> RetentionStatus:
    """Limits, last run and oldest records, read without changing anything (cheap enough for
    the health check: the audit log is asked for its oldest entry's time only)."""
    now = time.time() if now is None else now
    limits = limits_of(data)

    def age(at: float | None) -> float | None:
        return None if at is None else round(max(0.0, now - at) / SECONDS_PER_DAY, 2)

    templates = [row.updated for row in data.biometric.rows()]
    oldest = {
        "templates": age(min(templates, default=None)),
        "door_events": age(None if door_log is None else door_log.oldest_event_at()),
        "audit": age(data.audit.oldest_time()),
        "receipts": age(oldest_receipt_time(data.root / RECEIPTS_DIR, data.node.signing.public_key())),
    }
    limit_days = asdict(limits)
    over = tuple(kind for kind, days in oldest.items() if days is not None and days > limit_days[kind])
    run = last_run(state)
    return RetentionStatus(limits, run, oldest, run is None or now - run.at > RETENTION_OVERDUE_S, over)
