"""Recording a dispatcher's round: each message's outcome while its claim holds, tried
again while the database cannot serve, message by message when it refuses the round.

Given up, a round's records would leave its claims to run out, and every message in it,
those sent included, would be claimed and sent again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from herald.delivery.attempt_lines import AttemptLines, say_unrecorded
from herald.delivery.outcomes import Deferred, Outcome, Withdrawn
from herald.delivery.provider import DeliveryStatus
from herald.delivery.round_retries import RoundRetries
from herald.domain.timeutil import to_micros
from herald.observability.logging import database_said
from herald.store.database import Database
from herald.store.database_errors import unavailable
from herald.store.outbox import INTERRUPTED, AttemptRecord, ClaimedMessage, OutboxRepository
from herald.store.unit_of_work import UnitOfWork, WriteLockBusy

# Its lines are the dispatcher's, under the same name, which operators filter on.
log = logging.getLogger("herald.delivery.dispatcher")

# A round's recording that failed is tried again from this far apart, doubling up to the
# longest pause, while its claims hold.
_FIRST_PAUSE_S = 0.25
_LONGEST_RECORDING_PAUSE_S = 5.0


class RoundRecorder:
    """Records a dispatcher's outcomes as ``worker_id``, running each transaction through
    ``storage`` (on the event loop or a thread), and tells ``on_result`` of each attempt."""

    def __init__(
        self,
        database: Database,
        *,
        worker_id: str,
        clock: Callable[[], datetime],
        storage: Callable[[Callable[[], None]], Awaitable[Any]],
        wait_for_lock: bool,
        on_result: Callable[[str, DeliveryStatus], None],
    ) -> None:
        self._database = database
        self.worker_id = worker_id
        self._clock = clock
        self._storage = storage
        self._wait_for_lock = wait_for_lock
        self._lines = AttemptLines(on_result)
        # How far the clock that judges what is due (the database's, when claims are timed
        # by it) runs ahead of ``clock`` (negative: behind), as the dispatcher last
        # measured it. Added to each due time written: counted by ``clock`` alone, a turn
        # was claimed that much early, and deferred again for nothing (or a backoff cut
        # short), while the database's clock ran ahead; late, while it ran behind.
        self.due_clock_ahead_us = 0
        # How many messages were left unrecorded, their claims run out, since this recorder
        # began: sent again later, those sent included.
        self.unrecorded = 0

    async def record(self, outcomes: list[Outcome], leases_end: float) -> set[str]:
        """Record the round; if the database refuses it (one message's record it will not
        hold), record its messages one at a time, so that the refusal costs that message
        alone: the round unrecorded would be sent again, whole, once its claims ran out.
        Returns the ids of the messages that ended cancelled, not sent, because their
        rule's cancel was asked while they were being sent."""
        # One time for every try: a try whose commit went through but whose answer was
        # lost is then known by its attempts' time when the next try finds its claims gone.
        now_us = to_micros(self._clock())
        retries = RoundRetries(now_us)
        ended = _Ended(retries, set(), set())
        try:
            await self._record_round(outcomes, now_us, ended, leases_end)
        except Exception as exc:
            if not _refused(exc):
                left = [o for o in outcomes if o.row.message_id not in ended.recorded]
                self.unrecorded += len(left)
                say_unrecorded(left)
            raise
        finally:  # those recorded, even when the rest could not be
            retries.say()
        return ended.cancelled

    async def _record_round(
        self, outcomes: list[Outcome], now_us: int, ended: _Ended, leases_end: float
    ) -> None:
        try:
            await self._retry_while_claimed(
                partial(self._record, outcomes, now_us, ended), leases_end
            )
        except Exception as exc:
            if not _refused(exc):
                raise
            log.warning(
                "recording a round of %d message(s) was refused; recording each alone: %s",
                len(outcomes),
                database_said(exc),
            )
        else:
            return
        for outcome in outcomes:
            await self._retry_while_claimed(
                partial(self._record_alone, outcome, now_us, ended), leases_end
            )

    async def _retry_while_claimed(self, record: Callable[[], None], leases_end: float) -> None:
        """Run ``record``. A database unavailable meanwhile (restarting, its connections
        dropped, SQLite's write lock held by another for longer than a wait lasts) is
        asked again while the claims hold: given up, the round's sends would be made
        again once their leases ran out. Recording twice changes nothing: only messages
        still claimed by this dispatcher are recorded."""
        loop = asyncio.get_running_loop()
        pause = _FIRST_PAUSE_S
        while True:
            try:
                await self._storage(record)
                return
            except Exception as exc:
                if _refused(exc) or loop.time() + pause >= leases_end:
                    raise
                log.warning(
                    "recording a round's outcomes failed; trying again while claims hold: %s",
                    database_said(exc),
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_RECORDING_PAUSE_S)

    def _record(self, outcomes: list[Outcome], now_us: int, ended: _Ended) -> None:
        """Record ``outcomes`` in one transaction, then count and log those recorded (the
        retries with ``ended.retries``, which says them once the round is recorded); add
        to ``ended.cancelled`` those a rule's cancel ended."""
        cancels: dict[str, str] = {}  # of this try alone: one rolled back ended none
        with UnitOfWork(self._database, wait=self._wait_for_lock) as uow:
            recorded = self._write(uow.outbox, outcomes, now_us, cancels)
            uow.commit()
        ended.recorded.update(recorded)
        ended.cancelled.update(cancels)
        for outcome in outcomes:
            row, result = outcome.row, outcome.result
            if row.message_id in recorded and not isinstance(result, Deferred | Withdrawn):
                due_us = outcome.due_us(now_us)
                cancel = cancels.get(row.message_id)
                if cancel is not None:
                    self._lines.cancelled(row, result.status, result.detail, cancel)
                else:
                    self._lines.recorded(row, result.status, result.detail, ended.retries, due_us)

    def _record_alone(self, outcome: Outcome, now_us: int, ended: _Ended) -> None:
        """Record one message's outcome in a transaction of its own; one the database
        refuses is made a dead letter, so that it is not sent again and again."""
        try:
            self._record([outcome], now_us, ended)
        except Exception as exc:
            if not _refused(exc):
                raise
            self._dead_letter_unrecorded(outcome, database_said(exc))

    def _dead_letter_unrecorded(self, outcome: Outcome, said: str) -> None:
        """A message whose outcome the database refused: a sent one claimed again would be
        sent twice, and one to retry would be refused again each time. It becomes a dead
        letter whose reason says so (the log has the database's words; a dead letter is
        sent again only when an operator re-queues it). Were even that refused, it stays
        claimed, to be claimed and sent again when its lease runs out."""
        row, result = outcome.row, outcome.result
        log.error(
            "message %s: the database refused to record its outcome (%s): %s",
            row.message_id,
            outcome.status,
            said,
        )
        if isinstance(result, Deferred | Withdrawn):
            return  # not sent: claimed again when its lease runs out, it costs nothing
        reason = (
            f"its outcome ({outcome.status}) could not be recorded: the database "
            "refused it (see the dispatcher's log); not sent again unless re-queued"
        )
        try:
            with UnitOfWork(self._database, wait=self._wait_for_lock) as uow:
                uow.outbox.dead_letter_unrecorded(
                    row.message_id, worker=self.worker_id, attempt=row.attempts + 1, reason=reason
                )
                uow.commit()
        except Exception as exc:
            if not _refused(exc):
                raise
            log.error(
                "message %s: the database refused to make it a dead letter too; it stays "
                "claimed and will be sent again when its lease runs out: %s",
                row.message_id,
                database_said(exc),
            )

    def _write(
        self,
        outbox: OutboxRepository,
        outcomes: list[Outcome],
        now_us: int,
        cancelled: dict[str, str],
    ) -> set[str]:
        """Stage ``outcomes``; the ids of the messages whose attempt was recorded, those
        whose claim this dispatcher still held. Those that ended cancelled instead of
        waiting for a retry, becoming dead letters or going back unsent (their rule's cancel
        was asked while they were claimed) are added to ``cancelled``, with the cancel's
        reason."""
        records = []
        for outcome in outcomes:
            row, result = outcome.row, outcome.result
            due_us = outcome.due_us(now_us) + self.due_clock_ahead_us
            if isinstance(result, Deferred):
                cancel = outbox.release(
                    row.message_id, worker=self.worker_id, due_us=due_us, reason=result.reason
                )
                if cancel is not None:  # said in the round's count, not as deferred
                    cancelled[row.message_id] = cancel
                continue
            if isinstance(result, Withdrawn):
                outbox.cancel(row.message_id, worker=self.worker_id, reason=result.reason)
                continue
            retry = result.status is DeliveryStatus.RETRY
            records.append(
                AttemptRecord(
                    row.message_id,
                    row.attempts + 1,
                    now_us,
                    result.status.value,
                    result.described(),
                    due_us if retry else None,
                )
            )
        recorded = outbox.record_attempts(records, worker=self.worker_id, cancelled=cancelled)
        unrecorded = [record for record in records if record.message_id not in recorded]
        # Found by an earlier try whose answer was lost: recorded, and not yet announced.
        recorded |= outbox.recorded_earlier(unrecorded, worker=self.worker_id)
        for record in unrecorded:
            if record.message_id not in recorded:
                # Its lease ran out (this dispatcher stalled) and another took it over:
                # that one's outcome is the message's, and its metrics and log lines.
                log.warning(
                    "message %s: its claim was taken over before this attempt's outcome "
                    "(%s) was recorded; not recorded",
                    record.message_id,
                    record.outcome,
                )
        return recorded

    def announce_claimed(
        self, interrupted: list[ClaimedMessage], given_up: list[ClaimedMessage]
    ) -> None:
        """Count and log the attempts a claim recorded itself, those whose earlier claim
        ran out with no outcome: ``interrupted``, retried now, in this round; ``given_up``,
        that attempt their last, dead letters."""
        now_us = to_micros(self._clock())
        retries = RoundRetries(now_us)
        for row in interrupted:
            self._lines.recorded(row, DeliveryStatus.RETRY, INTERRUPTED, retries, now_us)
        retries.say()
        for row in given_up:
            self._lines.recorded(row, DeliveryStatus.FAILED, row.last_error, retries, now_us)

    def announce_cancelled_at_claim(self, cancelled: list[ClaimedMessage]) -> None:
        """Count and log the attempts a claim recorded for ``cancelled``, whose earlier
        claim ran out after their rule's cancel: the claim ended them cancelled, the
        attempt cut off counted (it may have gone out), as a retry's would be."""
        for row in cancelled:
            self._lines.cancelled(row, DeliveryStatus.RETRY, INTERRUPTED, row.last_error or "")


@dataclass(frozen=True, slots=True)
class _Ended:
    """How a round's messages ended, other than sent: put back for a retry (``retries``,
    said once the round is recorded) or, their rule cancelled while they were being sent,
    cancelled (their ids); and the ids of those whose outcome is recorded."""

    retries: RoundRetries
    cancelled: set[str]
    recorded: set[str]


def _refused(exc: BaseException) -> bool:
    """Whether the database refused what it was asked, as opposed to being unable to
    serve now (down, or its write lock held elsewhere too long): asked again, it would
    refuse again."""
    return not (unavailable(exc) or isinstance(exc, WriteLockBusy))
