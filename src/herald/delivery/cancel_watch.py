"""Whether an operator has cancelled a claimed message's rule since the claim, asked
before each send of a round starts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("herald.delivery.dispatcher")


class CancelWatch:
    """The messages of one round whose rule's cancel was asked after they were claimed,
    read with ``read`` at most every ``every_s`` seconds of ``clock`` from ``started``
    (when the round claimed them: none was asked before). A round of slow sends keeps its
    last messages waiting for their turn for tens of seconds; without asking, each went
    out after the operator's cancel had said it would not be sent again."""

    def __init__(
        self,
        read: Callable[[], Awaitable[set[str]]],
        *,
        started: float,
        clock: Callable[[], float],
        every_s: float = 1.0,
    ) -> None:
        self._read = read
        self._clock = clock
        self._every_s = every_s
        self._read_at = started
        self._asked: set[str] = set()
        self._reading = asyncio.Lock()

    @property
    def seen(self) -> frozenset[str]:
        """The messages whose cancel was read: those not sent end cancelled."""
        return frozenset(self._asked)

    async def asked(self, message_id: str) -> bool:
        """Whether ``message_id``'s rule was cancelled, as last read."""
        if self._clock() - self._read_at >= self._every_s:
            async with self._reading:  # one read for the sends that ask at once
                if self._clock() - self._read_at >= self._every_s:
                    await self._read_again()
        return message_id in self._asked

    async def _read_again(self) -> None:
        try:
            self._asked = await self._read()
        except Exception as exc:
            # The database away mid-round: the sends go on, as before the watch, and
            # the round's recording still ends a cancelled message's claim as cancelled.
            log.debug("could not read the cancels asked since the claim: %s", exc)
        self._read_at = self._clock()
