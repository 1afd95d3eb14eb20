"""The connections an SMTP provider keeps between sends: given back once the relay accepted
a message, taken by the next send, and closed once idle too long or the provider closes."""

from __future__ import annotations

import threading
import time
from collections import deque

from herald.delivery.providers.smtp_connection import AbortableSMTP, SendAttempt


class IdleConnections:
    """Connections waiting for a send, the longest idle first, each with the time
    (``time.monotonic``) it was given back. ``generation`` counts ``drain`` calls: a
    connection opened before the last one is not kept."""

    def __init__(self) -> None:
        self._idle: deque[tuple[AbortableSMTP, float]] = deque()
        self._lock = threading.Lock()
        self.generation = 0

    def take(self, idle_seconds: float) -> tuple[AbortableSMTP | None, list[AbortableSMTP]]:
        """The connection given back last, if any, and those idle for longer than
        ``idle_seconds``, taken out for the caller to close."""
        now = time.monotonic()
        with self._lock:
            stale: list[AbortableSMTP] = []
            while self._idle and now - self._idle[0][1] > idle_seconds:
                stale.append(self._idle.popleft()[0])
            taken = self._idle.pop()[0] if self._idle else None
        return taken, stale

    def give_back(self, attempt: SendAttempt, smtp: AbortableSMTP) -> bool:
        """Keep ``smtp`` for a later send, unless its send was cut off or it was opened
        before the last ``drain``."""
        with self._lock:
            if smtp.generation != self.generation or not attempt.release():
                return False
            self._idle.append((smtp, time.monotonic()))
        return True

    def drain(self) -> list[AbortableSMTP]:
        """Take out every idle connection, for the caller to close; those in use when
        this is called are not kept once their send ends."""
        with self._lock:
            idle, self._idle = [smtp for smtp, _ in self._idle], deque()
            self.generation += 1
        return idle
