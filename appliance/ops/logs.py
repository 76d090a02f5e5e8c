"""Structured logs: one JSON object per line, personal data masked, optional size rotation.

JSON lines because journald, Loki and Elastic ingest them without a parser per message;
masking sits on the handler so that no code path can log around it.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path

from appliance.config import OpsConfig
from appliance.security.masking import MaskingFilter, mask_text

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                 "level": record.levelname.lower(), "logger": record.name, "message": mask_text(record.getMessage())}
        for key, value in vars(record).items():  # fields passed with extra={...}
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = mask_text(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(ops: OpsConfig, level: int = logging.INFO, service: str = "appliance") -> logging.Handler:
    """Replace the root handlers with one masked handler (stderr or a rotating file)."""
    if ops.log_file:
        Path(ops.log_file).parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            ops.log_file, maxBytes=ops.log_max_bytes, backupCount=ops.log_backups, encoding="utf-8")
    else:
        handler = logging.StreamHandler()
    if ops.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"%(levelname)s {service} %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
