"""Logging an outage without flooding the log: at thousands of requests a second, a
traceback per failed request would bury everything else (and fill the disk)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from herald.observability.logging import database_said


class OutageLog:
    """The log of one kind of work (``what``, e.g. "ingestion") through an outage: its
    first failure with the traceback, then a line at most every ``every_s`` seconds
    counting the failures since the last one, and one line when the work succeeds
    again. Safe to call from several threads; ``succeeded`` costs next to nothing
    outside an outage."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: seconds, monotonic."""
        self._log = log
        self._what = what
        self._every_s = every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0  # since the outage began; 0 outside one
        self._unreported = 0  # since the last line
        self._began = self._reported = self._last = 0.0

    def failed(self, exc: BaseException, requests: int = 1) -> None:
        """``requests`` failed with ``exc``, an error that says the database cannot serve
        now: down, unreachable, locked, or a statement past the statement timeout."""
        with self._lock:
            now = self._clock()
            self._failures += requests
            self._last = now
            if self._failures == requests:
                self._began = self._reported = now
                # What the database said, in the line itself: "unavailable" alone sent
                # an operator to a server that was up, where a statement had waited past
                # the statement timeout for a lock another client held.
                self._log.error(
                    "%s failed: the database cannot serve it now: %s; its requests are "
                    "answered 503 until it can, with a line every %g s meanwhile",
                    self._what,
                    database_said(exc),
                    self._every_s,
                    exc_info=exc,
                )
                return
            self._unreported += requests
            if now - self._reported >= self._every_s:
                self._log.warning(
                    "%s still failing: %d more request(s) failed in %.0f s (%d since the "
                    "first failure %.0f s ago): %s",
                    self._what,
                    self._unreported,
                    now - self._reported,
                    self._failures,
                    now - self._began,
                    database_said(exc),
                )
                self._reported, self._unreported = now, 0

    def succeeded(self) -> None:
        if not self._failures:  # read without the lock: the usual case, on every commit
            return
        with self._lock:
            if not self._failures:
                return
            # Not "unavailable for" the time since the first failure: the database may
            # have been back long before this success, on a server with nothing to do.
            now = self._clock()
            self._log.info(
                "%s succeeds again: %d request(s) failed while the database could not "
                "serve them, the first %.0f s ago, the last %.0f s ago",
                self._what,
                self._failures,
                now - self._began,
                now - self._last,
            )
            self._failures = self._unreported = 0
