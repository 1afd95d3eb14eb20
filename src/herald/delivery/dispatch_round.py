"""One dispatcher round: the messages of one claim sent (round_sending.py) and recorded
(round_recording.py) in groups as their sends end, then said in the round's line.

A round's sends that end together are recorded in one transaction, as SQLite's write
lock, which ingestion waits for, wants; but one slow send no longer keeps the others'
outcomes unrecorded, nor (the dispatcher claiming its next round meanwhile) the other
messages waiting."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import astuple, dataclass

from herald.delivery.cancel_watch import CancelWatch
from herald.delivery.outcomes import DispatchReport, Outcome
from herald.delivery.round_recording import RoundRecorder
from herald.delivery.round_sending import RoundSender
from herald.domain.model import UserProfile
from herald.store.outbox import FAILED, ClaimedMessage

# Its lines are the dispatcher's, under the same name, which operators filter on.
log = logging.getLogger("herald.delivery.dispatcher")

# The outcomes of sends that have ended are recorded this often while others of the round
# are under way: a round whose sends all end within it is recorded in one transaction.
_RECORD_EVERY_S = 0.25


@dataclass(frozen=True)
class Claim:
    """What one claim took: ``rows``, those among them whose earlier claim ran out (that
    attempt counted), the ``profiles`` its gates read, and the event loop's time it was
    asked for (``started``), from which its leases count."""

    rows: list[ClaimedMessage]
    interrupted: list[ClaimedMessage]
    profiles: dict[str, UserProfile]
    started: float


class Round:
    """Sends a claim's messages and records their outcomes before its leases end."""

    def __init__(
        self,
        claim: Claim,
        *,
        sender: RoundSender,
        recorder: RoundRecorder,
        lease_s: float,
        send_window_s: float,
        read_cancels: Callable[[], Awaitable[set[str]]],
        stopping: asyncio.Event,
    ) -> None:
        """``send_window_s``: the part of ``lease_s`` in which its sends may run, the rest
        kept for recording them. ``read_cancels``: the messages claimed by this dispatcher
        whose rule's cancel was asked (see ``CancelWatch``)."""
        self._claim = claim
        self._sender = sender
        self._recorder = recorder
        self._leases_end = claim.started + lease_s
        # From the claim's asking: a claim slow to commit (a locked table, a slow disk) has
        # used part of the leases, and timed from its end the sends could outlast them.
        self._sends_end = claim.started + send_window_s
        self._read_cancels = read_cancels
        self._stopping = stopping
        # Set once what is left of the round waits for receivers, or once it has ended.
        self.handed_over = asyncio.Event()

    @property
    def claimed(self) -> int:
        return len(self._claim.rows)

    async def deliver(self) -> DispatchReport:
        """Send the round, record it and say it in a line; its report."""
        claim = self._claim
        # A lease that ran out (its dispatcher died or stalled mid-send) is an attempt that
        # may have gone out: counted and logged as a retry, sent again now; when it was the
        # last one, the message comes back a dead letter.
        given_up = [row for row in claim.rows if row.status == FAILED]
        self._recorder.announce_claimed(claim.interrupted, given_up)
        to_send = [row for row in claim.rows if row.status != FAILED] if given_up else claim.rows
        cancels = CancelWatch(
            self._read_cancels, started=claim.started, clock=asyncio.get_running_loop().time
        )
        try:
            outcomes, cancelled = await self._send_and_record(to_send, cancels)
        finally:
            self.handed_over.set()
        # A message whose rule an operator cancelled while it was claimed ended cancelled,
        # not to retry, failed nor deferred (unless it was sent).
        cancelled |= cancels.seen
        counts = Counter(
            "cancelled"
            if outcome.status != "sent" and outcome.row.message_id in cancelled
            else outcome.status
            for outcome in outcomes
        )
        counts["failed"] += len(given_up)
        report = DispatchReport(
            len(claim.rows),
            counts["sent"],
            counts["retry"],
            counts["failed"],
            counts["deferred"],
            counts["cancelled"],
        )
        # Not "delivered": a round against a receiver that is down sends none of them.
        log.info(
            "round of %d message(s): %d sent, %d to retry, %d failed, %d deferred, %d cancelled",
            *astuple(report),  # in the order of the report's fields
            extra={"worker": self._recorder.worker_id},
        )
        return report

    async def _send_and_record(
        self, rows: list[ClaimedMessage], cancels: CancelWatch
    ) -> tuple[list[Outcome], set[str]]:
        """Every row's outcome, each recorded, and the ids of those that ended cancelled
        as they were recorded. Those ended are recorded together every ``_RECORD_EVERY_S``
        while others are under way, and the last ones once all have ended."""
        ended: list[Outcome] = []
        sending = asyncio.ensure_future(
            self._sender.deliver_all(
                rows,
                self._sends_end,
                self._claim.profiles,
                self._stopping,
                cancels,
                ended=ended.append,
                handed_over=self.handed_over.set,
            )
        )
        outcomes: list[Outcome] = []
        cancelled: set[str] = set()
        try:
            while True:
                if not sending.done():
                    await asyncio.wait({sending}, timeout=_RECORD_EVERY_S)
                last = sending.done()
                if ended:
                    group = ended[:]
                    del ended[:]
                    outcomes += group
                    cancelled |= await self._recorder.record(group, self._leases_end)
                if last:
                    break
        except asyncio.CancelledError:
            sending.cancel()  # stopped at once (a second Ctrl-C): as a kill would
            raise
        except Exception:
            # The sends under way end (each is cut off at the leases' end) before the error
            # goes on: unrecorded, they are sent again once their claims run out.
            await asyncio.gather(sending, return_exceptions=True)
            raise
        sending.result()  # its error, if it raised
        return outcomes, cancelled
