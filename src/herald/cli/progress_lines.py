"""A long command's progress, said as its work commits without a line for each step.

``herald prune`` commits a batch at a time, and said each one: 3,000 lines for 3,000
events at ``--batch-size 1``, thousands in a cron job's mail for a large history at the
default size. The first step is said at once, so the operator sees the work has begun;
then the latest counts at most every ``every_s`` seconds; and ``flush`` says what is left
unsaid, as the work ends or stops, so that the counts above a line saying it stopped are
those done.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ThrottledProgress:
    """Called with a kind of thing and how many of it are done so far (``n``, a running
    count); ``say`` receives each line, ``clock`` gives seconds (monotonic)."""

    def __init__(
        self,
        say: Callable[[str], None],
        line: Callable[[str, int], str],
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say = say
        self._line = line
        self._every_s = every_s
        self._clock = clock
        self._said_at: float | None = None
        self._unsaid: dict[str, int] = {}  # the latest count of each kind, in order

    def __call__(self, kind: str, n: int) -> None:
        self._unsaid[kind] = n
        if self._said_at is None or self._clock() - self._said_at >= self._every_s:
            self.flush()

    def flush(self) -> None:
        """Say the counts not said yet."""
        for kind, n in self._unsaid.items():
            self._say(self._line(kind, n))
        self._unsaid.clear()
        self._said_at = self._clock()
