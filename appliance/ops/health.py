"""``appliance health``: checks a monitoring system can poll, with Nagios-style exit codes.

Each check says ok/warn/fail and why. The daemons' own state (model loaded, cache revision,
last watchdog ping) comes from the status record their main loop writes on every heartbeat
(``ops.notify.Watchdog``): a record that stops changing is itself the sign of a hung loop.
"""
from __future__ import annotations

import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance.config import Config
from appliance.ops.filing import FILE as FILING_DUE
from appliance.ops.filing import OK as FILING_OK
from appliance.ops.filing import WARN as FILING_WARN
from appliance.ops.filing import FilingStatus
from appliance.ops.notify import STOPPED, read_status, status_path
from appliance.ops.retention import RETENTION_OVERDUE_S, RetentionStatus
from appliance.ops.updates import active_version, on_trial, updates_root
from appliance.stores.audit import SECONDS_PER_DAY

OK, WARN, FAIL = "ok", "warn", "fail"
EXIT = {OK: 0, WARN: 1, FAIL: 2}  # the Nagios/Icinga plugin convention
BROKER_TIMEOUT_S = 3.0
# no appliance clock can legitimately be before this software was written (2025-01-01 UTC)
EARLIEST_SANE_TIME = 1_735_689_600
STALE_FACTOR = 3  # a status record older than 3 heartbeat periods means a stalled loop
DEFAULT_STATUS_PERIOD_S = 5.0
MUTED_SHOWN = 5  # doors named in the flood check's detail; the rest are counted
# mutes in a row from which a door is said to keep flooding: let back twice (after 10 and 20 s), it flooded again
# each time; the broker still receives all it sends (Mosquitto has no per-client limit)
KEEPS_FLOODING = 3


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def check_broker(host: str, port: int) -> Check:
    """TCP and a TLS handshake start: proves the broker process answers (no client cert)."""
    try:
        with socket.create_connection((host, port), timeout=BROKER_TIMEOUT_S):
            pass
    except OSError as exc:
        return Check("broker", FAIL, f"{host}:{port} unreachable ({exc.strerror or exc})")
    return Check("broker", OK, f"{host}:{port} reachable")


def check_disk(folder: Path, min_free_mb: int) -> Check:
    folder.mkdir(parents=True, exist_ok=True)
    free_mb = shutil.disk_usage(folder).free // (1024 * 1024)
    status = OK if free_mb >= min_free_mb else (WARN if free_mb >= min_free_mb // 2 else FAIL)
    return Check("disk", status, f"{free_mb} MiB free in {folder} (minimum {min_free_mb})")


def check_clock(now: float | None = None) -> Check:
    now = time.time() if now is None else now
    if now < EARLIEST_SANE_TIME:
        return Check("clock", FAIL, "system time is before 2025: no NTP/RTC? certificates and TOTP will fail")
    return Check("clock", OK, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))


def check_daemon(service: str, status_file: Path, cache_max_age_s: float, now: float | None = None) -> list[Check]:
    return _daemon_checks(service, status_file, read_status(status_file), cache_max_age_s, now)


def _daemon_checks(service: str, status_file: Path, record: dict | None, cache_max_age_s: float,
                   now: float | None) -> list[Check]:
    """What the service's status record (read from ``status_file``, None: none there) says."""
    now = time.time() if now is None else now
    if record is None:
        return [Check("watchdog", FAIL, f"{service}: no status record at {status_file} (not running?)")]
    age = now - float(record.get("time", 0))
    if record.get("state") == STOPPED:
        return [Check("watchdog", FAIL, f"{service}: stopped {age:.0f} s ago (pid {record.get('pid')})")]
    period = (record.get("watchdog_s") or 2 * DEFAULT_STATUS_PERIOD_S) / 2
    checks = [Check("watchdog", OK if age <= STALE_FACTOR * period else FAIL,
                    f"{service}: last heartbeat {age:.0f} s ago (pid {record.get('pid')})")]
    model_loaded = record.get("model_loaded")
    checks.append(Check("model", OK if model_loaded else FAIL,
                        f"model {record.get('model', 'unknown')} {'loaded' if model_loaded else 'not loaded'}"))
    if "broker" in record:
        checks.append(Check("connection", OK if record["broker"] else FAIL,
                            f"{service}: {'connected to' if record['broker'] else 'cannot reach'} the broker"))
    if "matcher_reachable" in record:
        reachable = bool(record["matcher_reachable"])
        detail = "the matcher answers" if reachable else \
            f"the matcher does not answer (cache {record.get('cache', 'unknown')}" + \
            ("" if record.get("decision_available", True) else ": the door cannot decide, card only") + ")"
        checks.append(Check("matcher", OK if reachable else FAIL, f"{service}: {detail}"))
    if record.get("camera_binding", "off") != "off":  # edge.camera_gate: the camera is not the bound one
        refused = record.get("camera_refused", "")
        level = (FAIL if record["camera_binding"] == "enforce" else WARN) if refused else OK
        checks.append(Check("camera", level, f"{service}: camera refused: {refused}" if refused else
                            f"{service}: the camera carries its binding ({record['camera_binding']})"))
    if "muted" in record:  # the matcher: doors muted for flooding it (matcher.gate)
        checks.append(check_muted(service, record["muted"]))
    if "audit" in record:  # the matcher: its audit log's group commit (stores.audit_writer)
        checks.append(check_audit(service, record["audit"], now))
    if "cache_revision" in record:
        synced = float(record.get("cache_synced_at", 0))
        fresh = now - synced <= cache_max_age_s
        checks.append(Check("cache", OK if fresh else WARN,
                            f"revision {record['cache_revision']}, synced {now - synced:.0f} s ago"))
    return checks


def check_audit(service: str, state: dict, now: float | None = None) -> Check:
    """A failure while the audit log cannot be written (a full disk): its entries wait in the
    daemon's memory, and once that queue is full the matcher stops answering (doors decide
    from their caches) - until room is made. A stop meanwhile deletes the room the log kept
    (``stores.reserve``) to write them; what does not fit there is lost."""
    queued = int(state.get("queued", 0))
    since = float(state.get("failing_since", 0.0))
    if not since:
        return Check("audit", OK, f"{service}: audit log written ({queued} entries queued)")
    age = (time.time() if now is None else now) - since
    failed = f"{state.get('failures', 0)} failed commits: {state.get('error', '')}"
    return Check("audit", FAIL, f"{service}: audit log not written for {age:.0f} s ({failed}); {queued} entries wait "
                                "in memory: free disk space (a stop writes only what fits in the room the log keeps)")


def check_muted(service: str, muted: dict[str, int]) -> Check:
    """A warning while any door is muted for flooding: a broken or compromised door goes
    unheard (its passes too) until it stops; the audit log holds its alarms."""
    if not muted:
        return Check("flood", OK, f"{service}: no door muted")
    doors = sorted(muted)
    shown = ", ".join(f"{door} ({muted[door]} in a row)" if muted[door] > 1 else door for door in doors[:MUTED_SHOWN])
    more = f" and {len(doors) - MUTED_SHOWN} more" if len(doors) > MUTED_SHOWN else ""
    persistent = [door for door in doors if muted[door] >= KEEPS_FLOODING]
    advice = ""
    if persistent:
        who = f"{persistent[0]} and others keep" if len(persistent) > 1 else f"{persistent[0]} keeps"
        advice = (f"; {who} flooding, which the broker still receives: check the door, or revoke it "
                  f"(appliance provision revoke {persistent[0]})")
    return Check("flood", WARN, f"{service}: {len(doors)} door{'s' if len(doors) != 1 else ''} muted for flooding "
                                f"(alarm.message_flood in the audit log): {shown}{more}{advice}")


# -- the site's data duties (the central host; ``appliance.cli.site_commands.site_checks``) --
def check_matching_mode(configured: str, justified_by: str = "", justified_at: float = 0.0) -> Check:
    """Central matching sends templates off the doors: say whether the site justified it."""
    if configured == "local":
        return Check("matching", OK, "local matching: no template leaves the doors")
    if justified_by:
        when = time.strftime("%Y-%m-%d", time.gmtime(justified_at))
        return Check("matching", OK, f"{configured} matching justified by {justified_by} on {when}")
    return Check("matching", WARN, f"[offline] mode is {configured!r} but no justification is on record: the doors "
                                   "decide locally ('appliance site matching justify' to record one)")


def check_filing(status: FilingStatus) -> Check:
    """The filing counter: warn when the filing is to be prepared, fail once it is due."""
    level = {FILING_OK: OK, FILING_WARN: WARN, FILING_DUE: FAIL}[status.level]
    return Check("filing", level, status.detail)


def check_retention(status: RetentionStatus, now: float | None = None) -> Check:
    """Retention ran lately and nothing held is older than its limit."""
    now = time.time() if now is None else now
    if status.last_run is None:
        # a site younger than the overdue period (its first audit entry is recent, or it has
        # none: every action is audited) has simply not reached its first nightly run
        site_age_days = status.oldest_days.get("audit")
        if site_age_days is None or site_age_days * SECONDS_PER_DAY < RETENTION_OVERDUE_S:
            return Check("retention", OK, "not run yet on this new site; the nightly maintenance runs it")
        return Check("retention", WARN, "retention never ran ('appliance maintenance' or 'appliance retention run')")
    ago = f"last run {(now - status.last_run.at) / 3600:.0f} h ago by {status.last_run.account}"
    if status.overdue:
        return Check("retention", WARN, f"retention overdue: {ago}")
    if status.over_limit:
        return Check("retention", WARN, f"{ago}, but older records remain: {', '.join(status.over_limit)}")
    return Check("retention", OK, ago)


def check_updates(root: Path, loaded: str = "") -> Check:
    """Updates the running service has not taken up: a pack on trial (an update cut short:
    the service finishes it at its next start), or ``loaded`` (the ``id@version`` its status
    record names) older than the version an update made active since it started."""
    pending = on_trial(root)
    if pending:
        return Check("updates", WARN, f"on trial (an update cut short): {', '.join(pending)}; restart the service "
                                      "or run 'appliance update --resume' to self-test, confirm or roll back")
    pack_id, _, version = loaded.partition("@")
    active = active_version(root, pack_id) if pack_id else None
    if active and active != version:
        return Check("updates", WARN, f"the service runs {loaded} but {pack_id}@{active} is active: restart it to "
                                      "load the update")
    return Check("updates", OK, "no update waiting")


def service_name(config: Config, service: str) -> str:
    """The instance name a service runs under, from the same keys the service reads."""
    return config.device.name if service == "edge" else config.matcher.name


def run_health(config: Config, service: str, data_dir: Path, now: float | None = None,
               name: str | None = None) -> list[Check]:
    ops = config.ops
    checks = [check_broker(ops.broker_host, ops.broker_port), check_disk(data_dir, ops.disk_min_free_mb),
              check_clock(now)]
    name = name or service_name(config, service)
    if not name:
        return checks + [Check("config", FAIL, f"{service}: no name configured (device.name); give --name")]
    label = f"{service} {name}"
    status_file = status_path(ops.status_dir, data_dir, service, name)
    record = read_status(status_file)
    checks += _daemon_checks(label, status_file, record, ops.cache_max_age_s, now)
    loaded = str(record.get("model", "")) if record and record.get("model_loaded") else ""
    checks.append(check_updates(updates_root(config), loaded))
    return checks


def overall(checks: list[Check]) -> str:
    return FAIL if any(c.status == FAIL for c in checks) else WARN if any(c.status == WARN for c in checks) else OK


def report(checks: list[Check]) -> dict:
    return {"status": overall(checks), "checks": [asdict(c) for c in checks]}


