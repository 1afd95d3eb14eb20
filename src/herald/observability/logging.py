"""Structured logs: JSON lines (or plain text) with a request id, personal data masked."""

from __future__ import annotations

import contextvars
import logging
import sys
from typing import Any

import orjson

from herald.observability.masking import mask_text

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Attributes every record has, and uvicorn's copy of its message with terminal colours.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


# Control characters as escapes: a value a client sent (a trait in an alert's text)
# cannot break a line of the log in two, or forge one.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}


class _MaskingFormatter(logging.Formatter):
    """One line per record: personal data masked, control characters escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = mask_text(record.message).translate(_ESCAPES)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        # A database error quotes its parameters: the traceback carries personal data too.
        return mask_text(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = mask_text(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = _MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    formatter.converter = __import__("time").gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl ..." at each start
