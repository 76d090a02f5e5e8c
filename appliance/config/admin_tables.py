"""The tables of the site's administration: security (keys, retention, anti-replay), operations
(broker, health, logs, backups, updates) and the web console.

Split from ``tables`` (which composes them into ``Config``) to keep each module small.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from appliance.config.fields import Bool, Float, Int, Refused, Str, Table, identity_required, lowercase, ordered

# Minimum audit retention (days). The operation log is also the site's record of processing
# (consents, enrollments, deletions, decisions, administration), and PIPL art. 56 keeps
# processing records at least three years: 3 x 365 + 1 leap day. It covers the six months the
# Cybersecurity Law asks for network logs (art. 21) too.
MIN_AUDIT_RETENTION_DAYS = 1096
ROLES_REMOVED = (
    "[security.roles] was removed: roles belong to appliance accounts now, not to OS users. Delete the table, "
    "then create an account for each person ('appliance admin bootstrap', 'appliance admin add NAME --role R') "
    "and a token for the nightly maintenance ('appliance admin token create --scope maintenance'; "
    "docs/operations.md)")


@dataclass(frozen=True)
class SecurityConfig(Table):
    """Keys, retention and anti-replay; see ``docs/security.md`` (roles belong to accounts)."""

    node_id: Annotated[Str, Field(description="this host's name in signed records")] = "node-1"
    key_provider: Annotated[Literal["file", "env"], Field(description=(
        "'file': root-only key files in key_dir; 'env': APPLIANCE_KEY_<NAME> variables (tests only)"))] = "file"
    key_dir: Annotated[Str, Field(description="folder of the key files; empty: <data dir>/keys")] = ""
    replay_window_s: Annotated[Float, Field(gt=0, description=(
        "envelopes sealed longer ago (or further ahead) than this are rejected, seconds"))] = 120.0
    crypto_suite: Annotated[Literal["default", "sm"], Field(description=(
        "the envelope suite this node seals with: 'default' (X25519, Ed25519, AES-256-GCM) or 'sm' (SM2 "
        "agreement and signatures, SM3, SM4-GCM; needs the 'sm' extra); 'sm' gives the node SM2 keys beside "
        "its current ones and it still opens default envelopes from nodes without SM2 keys"))] = "default"
    template_retention_days: Annotated[Int, Field(ge=1, description=(
        "templates not re-enrolled for this long are crypto-shredded, days"))] = 1095
    event_retention_days: Annotated[Int, Field(ge=1, le=MIN_AUDIT_RETENTION_DAYS, description=(
        "door events and alarms (the matcher's door log and each door's outbox) are kept this long, days "
        f"(1 to {MIN_AUDIT_RETENTION_DAYS}; the shortest period the site needs)"))] = 30
    audit_retention_days: Annotated[Int, Field(ge=MIN_AUDIT_RETENTION_DAYS, description=(
        f"the operation log (the record of processing) is kept this long, days (at least "
        f"{MIN_AUDIT_RETENTION_DAYS}: three years, PIPL art. 56)"))] = MIN_AUDIT_RETENTION_DAYS
    receipt_retention_days: Annotated[Int, Field(ge=MIN_AUDIT_RETENTION_DAYS, description=(
        "signed deletion receipts are kept this long, days (at least audit_retention_days: every logged "
        "deletion keeps its proof)"))] = MIN_AUDIT_RETENTION_DAYS
    audit_checkpoint_every: Annotated[Int, Field(ge=1, description="audit entries between signed checkpoints")] = 100
    audit_head_max_age_s: Annotated[Float, Field(ge=60, le=86400, description=(
        "a running site re-signs the audit log's head every third of this; 'appliance audit verify' fails on an "
        "older head (a rolled-back log, or nothing anchoring it), seconds"))] = 300.0

    # a deletion the log records keeps its receipt: the receipt is what a person or an auditor
    # is shown, the log entry only names it
    _receipts_outlive_the_log = ordered("audit_retention_days", "receipt_retention_days",
                                        "need audit_retention_days <= receipt_retention_days")

    @model_validator(mode="before")
    @classmethod
    def _no_os_roles(cls, data: Any) -> Any:
        """``[security.roles]`` (OS account -> role) is gone: a role from an OS or environment
        name let ``LOGNAME=alice`` act as alice. Say so, rather than "unknown key"."""
        # a dataclass table is validated from its call arguments (pydantic's ArgsKwargs)
        given = data if isinstance(data, dict) else getattr(data, "kwargs", None)
        if isinstance(given, dict) and "roles" in given:
            raise Refused(ROLES_REMOVED, "roles")
        return data


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_LOG_FORMAT_OR_EMPTY = ("", *LOG_FORMATS)
_LOG_LEVEL_OR_EMPTY = ("", *LOG_LEVELS)


@dataclass(frozen=True)
class OpsConfig(Table):
    """Operations: health limits, logs, backups, updates; see ``docs/operations.md``.
    Empty paths mean "below the data folder" (``APPLIANCE_DATA_DIR``)."""

    broker_host: Annotated[Str, Field(description="the MQTT broker's host name")] = "localhost"
    broker_port: Annotated[Int, Field(ge=1, le=65535, description="the MQTT broker's TLS port")] = 8883
    status_dir: Annotated[Str, Field(description="the daemons' status records; empty: <data>/run")] = ""
    disk_min_free_mb: Annotated[Int, Field(ge=1, description="health fails below this much free disk, MiB")] = 500
    cache_max_age_s: Annotated[Float, Field(gt=0, description=(
        "a device cache older than this is reported stale, seconds"))] = 3600.0
    session_idle_s: Annotated[Float, Field(gt=0, description=(
        "administrator sessions end after this much inactivity, seconds"))] = 600.0
    wipe_confirm_s: Annotated[Float, Field(ge=1, le=300, description=(
        "revoking a door waits this long for it to confirm that it destroyed its cache key; a door that is off or "
        "unreachable does not hold the revocation up (the audit entry says 'wipe not confirmed'), seconds"))] = 10.0
    log_format: Annotated[Literal[_LOG_FORMAT_OR_EMPTY], Field(description=(
        "'json' (one object a line, for journald/collectors) or 'text'; empty: JSON for the services and for "
        "commands writing to log_file, text for commands on stderr"))] = ""
    log_file: Annotated[Str, Field(description=(
        "log file of every command and service; empty: stderr (journald under systemd)"))] = ""
    log_level: Annotated[Literal[_LOG_LEVEL_OR_EMPTY], BeforeValidator(lowercase), Field(description=(
        "debug | info | warning | error | critical (any case); empty: warning (--debug: debug for appliance.*)"))] \
        = ""
    log_max_bytes: Annotated[Int, Field(ge=1, description="a log file is rotated at this size, bytes")] \
        = 10 * 1024 * 1024
    log_backups: Annotated[Int, Field(ge=1, description="rotated log files kept")] = 5
    backup_dir: Annotated[Str, Field(description="backups folder; empty: <data>/backups")] = ""
    backup_keep: Annotated[Int, Field(ge=1, description="backups kept")] = 7
    models_root: Annotated[Str, Field(description=(
        "signed packs installed side by side; empty: <data>/packs"))] = ""
    publisher_keys_dir: Annotated[Str, Field(description="public keys of trusted pack/update publishers")] \
        = "/etc/appliance/publishers"
    selftest_images: Annotated[Str, Field(description=(
        "face images of the self-test; empty: <shared>/data/faces/celeba-dev"))] = ""


HTTPS_PORT = 8443  # the console's default: above 1024, so no privilege is needed to bind it
MAX_CAPTURE_WAIT_S = 300.0  # protocol.capture_messages.MAX_CAPTURE_TIMEOUT_S: a person waits at the door


@dataclass(frozen=True)
class ConsoleConfig(Table):
    """The web console and REST API (``appliance console``); see ``docs/api.md``."""

    bind: Annotated[Str, Field(description=(
        "address to listen on: 127.0.0.1 (this host only; put a reverse proxy in front) or 0.0.0.0 (every "
        "interface, TLS required)"))] = "127.0.0.1"
    port: Annotated[Int, Field(ge=1, le=65535, description="TCP port of the console and the API")] = HTTPS_PORT
    tls_cert: Annotated[Str, Field(description=(
        "server certificate (PEM); empty: <data>/pki/console.crt ('appliance console certificate')"))] = ""
    tls_key: Annotated[Str, Field(description=(
        "its private key (PEM); empty: <data>/pki/console.key"))] = ""
    max_upload_mb: Annotated[Float, Field(gt=0, le=1024, description=(
        "largest request body, MiB; a bigger one is refused (413) before it is read"))] = 32.0
    max_image_mb: Annotated[Float, Field(gt=0, le=256, description="largest single uploaded image, MiB")] = 8.0
    max_images: Annotated[Int, Field(ge=1, le=100, description="most images in one enrollment")] = 10
    requests_per_s: Annotated[Float, Field(gt=0, le=10_000, description=(
        "API requests one client address, and one account, may make per second, sustained (429 beyond)"))] = 10.0
    request_burst: Annotated[Int, Field(ge=1, le=100_000, description=(
        "requests one client or account may make at once before requests_per_s applies"))] = 40
    api_docs: Annotated[Bool, Field(description=(
        "serve the interactive API documentation at /api/docs (the OpenAPI document at /api/openapi.json is "
        "always served)"))] = False
    metrics_loopback: Annotated[Bool, Field(description=(
        "/metrics answers this host's loopback address without a token (a local Prometheus); other clients "
        "need a token with the events:read scope"))] = True
    capture_identity: Annotated[Str, AfterValidator(identity_required), Field(description=(
        "the console's MQTT identity for enrollment captures at a door ('appliance provision console NAME')"))] \
        = "console"
    capture_timeout_s: Annotated[Float, Field(gt=0, le=MAX_CAPTURE_WAIT_S, description=(
        "longest a door may take for one enrollment capture burst, seconds (a request may ask for less)"))] = 60.0
    language: Annotated[Literal["zh_CN", "en"], Field(description=(
        "the console's language when the browser chose none (the header's 中文 / English switch, then the "
        "browser's Accept-Language, come first)"))] = "en"
