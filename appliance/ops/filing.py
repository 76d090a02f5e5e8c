"""The filing counter: how many people's face information this site stores.

The 2025 face-recognition measures ask a processor storing face information of 100,000 people
or more to file with the provincial-level CAC within 30 working days. The site counts the
unique people holding at least one template (a deleted or expired person holds none and is not
counted), warns at 80,000 so the filing can be prepared, and at 100,000 says the filing is due.
The first time a level is reached the maintenance job writes one alarm in the audit log
(``filing.alarm``); the level alarmed is kept in the site state so it is written once,
and a count that falls back below a level re-arms it.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from appliance.ops.retention import SiteState
from appliance.security.roles import Principal
from appliance.stores.protected import ProtectedData

FILING_WARN_AT = 80_000  # prepare the filing (requirement D-FILE-1: alert at 80k)
FILING_AT = 100_000  # file with the provincial-level CAC (2025 measures)
FILING_DEADLINE_WORKING_DAYS = 30  # from reaching FILING_AT
OK, WARN, FILE = "ok", "warn", "file"  # the levels, in order
LEVEL_RANK = {OK: 0, WARN: 1, FILE: 2}  # also the Prometheus gauge's value
ALARMED_KEY = "filing_alarmed"  # the site_state row: the highest level already alarmed


@dataclass(frozen=True)
class FilingStatus:
    """The count of unique enrolled people against the two thresholds."""

    count: int
    warn_at: int
    file_at: int
    level: str  # OK, WARN or FILE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def detail(self) -> str:
        if self.level == FILE:
            return (f"{self.count} people enrolled: at or above {self.file_at}, file with the provincial CAC within "
                    f"{FILING_DEADLINE_WORKING_DAYS} working days")
        if self.level == WARN:
            return (f"{self.count} people enrolled: at or above {self.warn_at}, prepare the filing "
                    f"(due at {self.file_at})")
        return f"{self.count} people enrolled (filing due at {self.file_at})"


def level_of(count: int, warn_at: int = FILING_WARN_AT, file_at: int = FILING_AT) -> str:
    return FILE if count >= file_at else WARN if count >= warn_at else OK


def enrolled_people(data: ProtectedData) -> int:
    """Unique people with at least one template on this site."""
    return len({row.subject_id for row in data.biometric.rows()})


def filing_status(data: ProtectedData, warn_at: int = FILING_WARN_AT, file_at: int = FILING_AT) -> FilingStatus:
    """The count and its level (the thresholds are parameters only so tests need not enrol
    80,000 people; the site uses the named constants)."""
    count = enrolled_people(data)
    return FilingStatus(count, warn_at, file_at, level_of(count, warn_at, file_at))


def raise_filing_alarm(data: ProtectedData, principal: Principal, state: SiteState, status: FilingStatus,
                       now: float | None = None) -> bool:
    """Write the audit alarm when ``status`` reaches a level not alarmed before; remember the
    level (a lower count lowers it, so a later rise alarms again). True when it alarmed."""
    now = time.time() if now is None else now
    found = state.site_value(ALARMED_KEY)
    alarmed = str(found[0]["level"]) if found else OK
    if LEVEL_RANK[status.level] <= LEVEL_RANK[alarmed]:
        if LEVEL_RANK[status.level] < LEVEL_RANK[alarmed]:
            state.put_site_value(ALARMED_KEY, {"level": status.level, "count": status.count}, now)
        return False
    data.audit.append(principal, "filing.alarm", status.level, "alarm", status.detail)
    state.put_site_value(ALARMED_KEY, {"level": status.level, "count": status.count}, now)
    return True
