"""Logging for every command and service: masked, one destination, one rule.

JSON lines because journald, Loki and Elastic ingest them without a parser per message;
masking sits on the handler so that no code path can log around it.

The rule (``docs/operations.md``, "Logging"): ``ops.log_file`` (empty: stderr) and an explicit
``ops.log_format`` / ``ops.log_level`` apply to every command and service. Left empty, the
format is JSON for the services and for anything written to a file, text for interactive
commands on stderr; the level is ``warning``. ``--debug`` lowers the ``appliance.*`` loggers
to ``debug``.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path

from appliance.config import OpsConfig
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.masking import MaskingFilter, install_log_masking, mask_text

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
CLI_LEVEL = logging.WARNING  # the appliance command's level when ops.log_level is empty
_OURS = "_appliance_log_handler"  # marks the handlers configure_logging installed (and replaces)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "message": mask_text(record.getMessage())}
        if self.service:
            entry["service"] = self.service
        for key, value in vars(record).items():  # fields passed with extra={...}
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = mask_text(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = mask_text(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = mask_text(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Plain lines; the message, tracebacks and stacks masked like the JSON ones."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = mask_text(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return mask_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return mask_text(super().formatStack(stack_info))


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (redirections followed)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


def log_format(ops: OpsConfig, interactive: bool) -> str:
    if ops.log_format:
        return ops.log_format
    return "text" if interactive and not ops.log_file else "json"


def log_level(ops: OpsConfig, default: int = CLI_LEVEL) -> int:
    return logging.getLevelName(ops.log_level.upper()) if ops.log_level else default


def _file_handler(ops: OpsConfig) -> logging.Handler:
    path = Path(ops.log_file).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return logging.handlers.RotatingFileHandler(path, maxBytes=ops.log_max_bytes, backupCount=ops.log_backups,
                                                    encoding="utf-8")
    except OSError as exc:
        why = f"{exc.filename} is not a folder" if isinstance(exc, FileExistsError) \
            else (exc.strerror or str(exc))
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"ops.log_file: cannot write {path}: {why}") from None


def configure_logging(ops: OpsConfig, level: int = logging.INFO, service: str = "appliance",
                      interactive: bool = False, debug: bool = False) -> logging.Handler:
    """Install one masked root handler (stderr or a rotating ``ops.log_file``) in place of the
    one installed before; ``service`` names the process in each line, ``level`` applies when
    ``ops.log_level`` is empty. Handlers installed by others (and those of any logger that has
    its own) get the masking filter too.

    Raises ``ApplianceError`` (``CONFIG_INVALID``, naming ``ops.log_file``) when the file cannot
    be opened; the handlers in place stay as they were."""
    handler = _file_handler(ops) if ops.log_file else StderrHandler()
    if log_format(ops, interactive) == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        prefix = "%(asctime)s " if ops.log_file else ""
        named = f"{service} " if ops.log_file or not interactive else ""
        handler.setFormatter(TextFormatter(f"{prefix}%(levelname)s {named}%(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(log_level(ops, level))
    logging.getLogger("appliance").setLevel(logging.DEBUG if debug else logging.NOTSET)
    logging.captureWarnings(True)  # warnings.warn() goes through the masked handler too
    install_log_masking(root)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            install_log_masking(logger)
    last = logging.lastResort  # used for a logger with propagate=False and no handler of its own
    if last is not None and not any(isinstance(f, MaskingFilter) for f in last.filters):
        last.addFilter(MaskingFilter())
    return handler
