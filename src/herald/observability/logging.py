"""Structured logs: JSON lines (or plain text) with a request id, personal data masked."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

from herald.json_lines import shown_json
from herald.observability.escapes import LINE_ESCAPES
from herald.observability.masking import mask_text

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# Attributes every record has, and uvicorn's copy of its message with terminal colours.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


# Ids a line names on purpose, passed as fields of the record: an alert must say which user
# it is about, even when the id is all digits or an address. Masked text keeps them whole.
_IDENTIFIERS = ("user_id", "event_id", "message_id")


def _masked(text: str, record: logging.LogRecord) -> str:
    """``text`` with personal data masked, but for the record's own identifiers where they
    stand as words of their own (an id inside an address leaves the address masked)."""
    ids = {value for name in _IDENTIFIERS if isinstance(value := getattr(record, name, None), str)}
    ids.discard("")
    if not ids:
        return mask_text(text)
    pieces, start = [], 0
    for begin, end in _standing_alone(text, ids):
        pieces += [mask_text(text[start:begin]), text[begin:end]]
        start = end
    pieces.append(mask_text(text[start:]))
    return "".join(pieces)


def _standing_alone(text: str, ids: set[str]) -> list[tuple[int, int]]:
    """The spans of ``text`` that are one of ``ids`` with no address or number character
    either side, in order; where two overlap, the longer id's. Found with ``str.find``:
    a pattern built of each record's ids was compiled afresh for every alert line, and
    that compiling was a quarter of a dispatcher's work under load."""
    spans: list[tuple[int, int]] = []
    for ident in sorted(ids, key=len, reverse=True):
        begin = text.find(ident)
        while begin != -1:
            end = begin + len(ident)
            alone = not (begin and _joins(text[begin - 1])) and not (
                end < len(text) and _joins(text[end])
            )
            if alone and all(end <= b or e <= begin for b, e in spans):
                spans.append((begin, end))
            begin = text.find(ident, begin + 1)
    return sorted(spans)


def _joins(character: str) -> bool:
    """Whether ``character`` would make an id next to it part of a longer word, address
    or number."""
    return character.isalnum() or character in "_@.+%-"


class _MaskingFormatter(logging.Formatter):
    """One line per record: personal data masked, control characters escaped."""

    # Times as the JSON lines write them: UTC, and saying so. Without the zone, a time
    # in UTC read as the machine's local time was hours off from the operator's clock.
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _masked(record.message, record).translate(LINE_ESCAPES)
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
            "message": _masked(record.getMessage(), record),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                masks = isinstance(value, str) and key not in _IDENTIFIERS
                entry[key] = mask_text(value) if masks else value
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        # The separators, C1 controls and bidirectional characters JSON leaves raw, escaped.
        return shown_json(orjson.dumps(entry, default=str).decode())


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def database_said(exc: BaseException) -> str:
    """The first line of what the database driver said, under SQLAlchemy's wrapping of
    ``exc`` (which keeps the driver's own error as ``orig``)."""
    return first_line(getattr(exc, "orig", None) or exc)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = _MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    formatter.converter = time.gmtime  # log times are UTC, as everything in Herald
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access lines only at DEBUG, where `herald serve` turns them on; above it,
    # dropped, whoever serves the app with them on.
    access = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    logging.getLogger("uvicorn.access").setLevel(access)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl ..." at each start
