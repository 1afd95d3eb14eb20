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


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM wait for its end, then act as they would have:
    for steps that must not be cut in two, such as creating a file and noting its name, so
    that whatever stops the command next knows which file to remove."""
    received: list[int] = []

    def noted(signum: int, _frame: object) -> None:
        received.append(signum)

    stopping = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, noted) for signum in stopping}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:  # sent again, to the handler in force again
        signal.raise_signal(received[0])
