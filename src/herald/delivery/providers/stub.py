"""Providers that need no outside service: the development stub and the internal log."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import BinaryIO

from herald.delivery.provider import DeliveryResult, DeliveryStatus, Provider, SendRequest
from herald.delivery.providers.stub_file import identity, locked, open_to_append
from herald.json_lines import json_line
from herald.observability.masking import mask_recipient

log = logging.getLogger("herald.delivery")


class StubProvider:
    """Records each send request as one JSON line in ``path`` (e.g. ``outbox.jsonl``), with
    no line break of any kind inside it, and logs it; the message then counts as sent. For
    development and tests."""

    local = True

    def __init__(self, path: Path, name: str = "stub") -> None:
        self.name = name
        self._path = path
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._identity: tuple[int, int] = (0, 0)  # the open file's (device, inode)

    @property
    def target(self) -> str:
        return str(self._path)

    async def send(self, request: SendRequest) -> DeliveryResult:
        shown = request.as_json()
        if request.unsubscribe_url:  # as an email would carry it, for a developer to try
            shown["unsubscribe_url"] = request.unsubscribe_url
        line = json_line(shown) + b"\n"
        try:
            # An append to a local file takes microseconds: cheaper inline than on a thread.
            self._append(line)
        except OSError as exc:
            return DeliveryResult.retry(f"cannot write {self._path}: {exc.strerror}")
        # Per message at DEBUG: the dispatcher logs each round at INFO, and a log record
        # per message cost more than the send itself.
        log.debug(
            "stub send %s %s to %s",
            request.channel,
            request.rule,
            mask_recipient(request.recipient),
            extra={"message_id": request.message_id, "user_id": request.user_id},
        )
        return DeliveryResult.sent(f"recorded in {self._path.name}")

    def _append(self, line: bytes) -> None:
        with self._lock:
            while True:
                file = self._open()
                # Under the file's lock, which forgetting a user takes to rewrite it: once
                # it is ours, the path still names this file, or the rewrite replaced it.
                with locked(file):
                    if not self._moved():
                        _write_whole(file, line)
                        return

    def _open(self) -> BinaryIO:
        """The file the path names now, opened again if it was moved since."""
        if self._file is not None and self._moved():
            self._file.close()
            self._file = None
        if self._file is None:
            # Unbuffered: each write is in the OS's hands before the message is marked
            # sent, and one that fails leaves nothing behind to go out with the next.
            self._file = os.fdopen(open_to_append(self._path), "ab", buffering=0)
            opened = os.fstat(self._file.fileno())
            self._identity = (opened.st_dev, opened.st_ino)
        return self._file

    def _moved(self) -> bool:
        """Whether ``path`` no longer names the open file: someone deleted it to start
        afresh, rotated it, or rewrote it without a forgotten user's lines. Written on,
        the file would take every later send where no one can read it, each recorded as
        sent."""
        return identity(self._path) != self._identity

    async def aclose(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _write_whole(file: BinaryIO, line: bytes) -> None:
    """Append ``line`` whole, or nothing of it: a write the disk has no room for (a full
    disk, a quota) writes what fits before it fails, and half a line left there would
    run into the line of the message's retry. The caller holds the file's lock."""
    written = 0
    try:
        while written < len(line):
            written += file.write(line[written:])
    except OSError:
        if written:
            with contextlib.suppress(OSError):  # the write's own error says more
                os.ftruncate(file.fileno(), os.fstat(file.fileno()).st_size - written)
        raise


class LogAlertProvider:
    """Internal alerts (e.g. HIGH_RISK_ALERT): a structured WARNING line, never a user message."""

    local = True

    def __init__(self, name: str = "log") -> None:
        self.name = name

    @property
    def target(self) -> str:
        return "WARNING lines in the log"

    async def send(self, request: SendRequest) -> DeliveryResult:
        # A later attempt follows one that was logged but not recorded as done (a webhook
        # beside the log cut off at its claim's deadline): it must not read as a new alert.
        repeat = f", again (attempt {request.attempt})" if request.attempt > 1 else ""
        line = log.makeRecord(
            log.name,
            logging.WARNING,
            __file__,
            0,
            "internal alert %s for user %s (event %s)%s: %s",
            (request.rule, request.user_id, request.event_id, repeat, request.subject),
            None,
            extra={
                # `rule` as on the retry and dead-letter lines, so that a query on the rule
                # finds the alert itself; `alert` kept for the queries that read it.
                "rule": request.rule,
                "alert": request.rule,
                "user_id": request.user_id,
                "event_id": request.event_id,
                "message_id": request.message_id,
                "attempt": request.attempt,
            },
        )
        # Handed to the handlers whatever HERALD_LOG_LEVEL is: the line is the alert's
        # delivery, recorded as sent, and at ERROR it was dropped, leaving the alert nowhere.
        log.handle(line)
        return DeliveryResult.sent("logged")

    async def aclose(self) -> None:
        return None


class FanOutProvider:
    """Sends through each provider in turn; the first one is the one that must succeed
    (e.g. the log), the others are best effort with their outcome in the detail."""

    def __init__(self, name: str, primary: Provider, *others: Provider) -> None:
        self.name = name
        self._primary = primary
        self._others = others
        self.local = all(p.local for p in (primary, *others))

    @property
    def target(self) -> str:
        return " and ".join(provider.target for provider in (self._primary, *self._others))

    async def send(self, request: SendRequest) -> DeliveryResult:
        result = await self._primary.send(request)
        notes = [result.detail]
        for other in self._others:
            extra = await other.send(request)
            # Its own status word ("retry") would read as a promise: the others are not
            # tried again, whatever they answer.
            outcome = "sent" if extra.status is DeliveryStatus.SENT else "not sent, not retried"
            notes.append(f"{other.name}: {outcome}: {extra.detail}".strip())
            if extra.status is not DeliveryStatus.SENT:
                _say_not_sent(request, other.name, extra.detail)
        return DeliveryResult(
            result.status, "; ".join(n for n in notes if n), result.provider_reference
        )

    async def aclose(self) -> None:
        for provider in (self._primary, *self._others):
            await provider.aclose()


def _say_not_sent(request: SendRequest, provider: str, detail: str) -> None:
    # Noted only in the attempt's detail, a chat hook that had stopped taking posts (a
    # revoked token) left the team without its alerts there, and no line said so.
    log.warning(
        "internal alert %s for user %s (event %s): %s not sent, and not retried (the log "
        "line is the alert of record): %s",
        request.rule,
        request.user_id,
        request.event_id,
        provider,
        detail,
        extra={"message_id": request.message_id, "rule": request.rule, "provider": provider},
    )
