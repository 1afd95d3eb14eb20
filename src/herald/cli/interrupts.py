"""Stopping a command on SIGTERM as on Ctrl-C, so that it can say what it has done."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, taken as Ctrl-C is (see ``terminating_as_interrupted``)."""


@contextmanager
def terminating_as_interrupted() -> Iterator[None]:
    """Within the block, SIGTERM (a ``timeout``, a cron job's or a service manager's stop)
    stops the command as Ctrl-C does, where it can say what is done, instead of killing
    it without a word."""

    def terminated(_signum: int, _frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
