"""The dispatcher: claims due messages from the outbox and delivers them through providers
(sending a round: round_sending.py; recording it: round_recording.py).

Delivery is at least once with the message id as idempotency key: a claim has a lease,
and a dispatcher that dies mid-send leaves its messages to be claimed again when the
lease runs out. A message whose provider answered ``sent`` is never claimed again.

A live dispatcher never lets a lease run out under a send: a send starts only while its
claim's lease has time left, is cut off before the lease ends, and the round's results
are recorded while the leases still hold. Otherwise another dispatcher would claim the
message again while (or after) it was being sent, and the first one's result would be
dropped as no longer its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import astuple
from datetime import datetime
from typing import TypeVar

from herald.delivery.backoff import RetryPolicy
from herald.delivery.cancel_watch import CancelWatch
from herald.delivery.outcomes import DispatchReport
from herald.delivery.provider import DeliveryStatus, Provider
from herald.delivery.quiet_hours import HoldPolicy
from herald.delivery.ratelimit import ChannelRateLimits
from herald.delivery.round_recording import RoundRecorder
from herald.delivery.round_sending import RoundSender
from herald.delivery.send_gates import SendGates
from herald.domain.model import UserProfile
from herald.domain.timeutil import to_micros
from herald.store.database import Database
from herald.store.database_errors import database_said
from herald.store.outbox import FAILED, ClaimedMessage
from herald.store.sqlite_connections import SQLITE_BUSY_TIMEOUT_MS
from herald.store.unit_of_work import ReadOnly, UnitOfWork, when_unlocked

log = logging.getLogger(__name__)
T = TypeVar("T")


# How long a claim holds its messages: a round's sends, and its recording, end within it.
LEASE_S = 60.0
# The last tenth of a lease (6 s of the default 60) is kept for recording a round.
_RECORDING_SHARE = 0.1
# An idle dispatcher looks for due messages this often, unless woken sooner (only one in
# the API process is woken by commits; a dispatcher process finds new messages this way).
_POLL_S = 0.25
# After a round that was not full, let a few commits' worth of messages gather: a round
# has a fixed cost (claim, record, commit) that one message at a time would pay each time.
_GATHER_S = 0.05
# Failing rounds (the database is down) are tried again further and further apart, up to this.
_LONGEST_PAUSE_S = 30.0


class Dispatcher:
    def __init__(
        self,
        database: Database,
        providers: Mapping[str, Provider],
        *,
        worker_id: str,
        clock: Callable[[], datetime],
        retry: RetryPolicy | None = None,
        rate_limits: ChannelRateLimits | None = None,
        batch_size: int = 200,
        lease_seconds: float = LEASE_S,
        concurrency: int = 16,
        on_result: Callable[[str, DeliveryStatus], None] = lambda _c, _s: None,
        inline_storage: bool = False,
        hold: HoldPolicy | None = None,
        hold_channels: frozenset[str] = frozenset(),
        lock_wait_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
        database_time: bool = False,
    ) -> None:
        """``inline_storage``: run the outbox's statements on the event loop rather than on
        a thread. Right for SQLite, whose statements take microseconds and whose writes
        are serialised anyway; wrong for a database across a network. A wait there for
        SQLite's write lock gives up after ``lock_wait_s`` (and is asked again while the
        round's claims hold, when recording).

        ``hold``: asked before each send on ``hold_channels`` (those with quiet hours), with
        the user's traits: a message due in the user's quiet hours (a retry, a re-queued
        dead letter, a backlog) goes back unsent until they end.

        ``database_time``: time claims and their leases by the database server's clock,
        not ``clock``: every dispatcher's leases are then written and judged by one clock,
        whichever host it runs on. Judged by each host's own, a dispatcher whose clock ran
        ahead of another's by more than a lease's margin took over messages the other was
        still sending, and sent them again."""
        self._database = database
        self.worker_id = worker_id
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._gates = SendGates(
            clock=clock,
            hold=hold,
            hold_channels=hold_channels,
            rate_limits=rate_limits or ChannelRateLimits(),
            longest_pause_s=self._retry.max_backoff,
        )
        self._batch_size = batch_size
        self._lease_s = lease_seconds
        self._lease_us = int(lease_seconds * 1_000_000)
        # What a round leaves itself, of each lease, to record its results.
        self._send_window_s = lease_seconds * (1 - _RECORDING_SHARE)
        self._sender = RoundSender(
            providers,
            gates=self._gates,
            retry=self._retry,
            concurrency=concurrency,
            clock=lambda: clock().timestamp(),
        )
        # The lease ends of claims whose commit failed, as far as this dispatcher heard:
        # one may have gone through, its messages claimed but never sent.
        self._unanswered_claims: set[int] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()  # ``run``'s: once set, no send starts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inline_storage = inline_storage
        self._lock_wait_s = lock_wait_s
        self._database_time = database_time
        self._file_gone_said = False
        self._recorder = RoundRecorder(
            database,
            worker_id=worker_id,
            clock=clock,
            storage=self._storage,
            wait_for_lock=not inline_storage,
            on_result=on_result,
        )

    async def _storage(self, work: Callable[[], T]) -> T:
        if not self._inline_storage:
            return await asyncio.to_thread(work)
        # On the event loop, never sleep in SQLite's busy handler: the HTTP requests
        # sharing the loop would wait too.
        return await when_unlocked(work, timeout_s=self._lock_wait_s)

    def wake(self) -> None:
        """Thread-safe nudge: new messages were committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping`` is set; a failing database pauses, never ends, the loop."""
        self._loop = asyncio.get_running_loop()
        self._stopping = stopping
        self._gates.say_rate_limits_are_this_process_own()
        failures = 0
        while not stopping.is_set():
            try:
                report = await self.run_once()
            except Exception as exc:
                failures += 1
                report = DispatchReport()
                # The whole traceback once; then a line per try, further and further apart,
                # so that an outage of the database does not flood the log.
                # The driver's first line, not SQLAlchemy's statement and link: the first
                # line of an outage says why, as the lines after it do.
                said = database_said(exc)
                if failures == 1:
                    log.exception("dispatch round failed: %s; retrying", said)
                else:
                    log.warning("dispatch round failed again (%d in a row): %s", failures, said)
            else:
                if failures:
                    log.info("dispatch rounds succeed again after %d failure(s)", failures)
                failures = 0
            self._say_if_its_file_is_gone()
            if report.claimed >= self._batch_size:
                continue  # more is waiting
            if report.claimed:
                await asyncio.sleep(_GATHER_S)
            pause = min(_POLL_S * 2 ** min(failures, 7), _LONGEST_PAUSE_S)
            # While rounds fail, a commit's wake-up must not cut the pause short.
            await self._idle(stopping, pause, wakeable=not failures)

    def _say_if_its_file_is_gone(self) -> None:
        """Say, once, that the SQLite file at the database's path is no longer the one this
        dispatcher opened (deleted, or replaced by a restored copy): it goes on delivering
        from the file it holds open, and what is stored at the path waits unseen. The
        API's /readyz says so for the API; a dispatcher has no such probe."""
        if self._file_gone_said:
            return
        problem = self._database.sqlite_file_problem()
        if problem is not None:
            self._file_gone_said = True
            log.error(
                "%s; this dispatcher delivers only the messages stored in the file it opened: "
                "restart it (and the API) to deliver from the file at the path",
                problem,
            )

    async def _idle(self, stopping: asyncio.Event, seconds: float, *, wakeable: bool) -> None:
        """Wait ``seconds``, or less if stopped or (``wakeable``) woken."""
        self._wake.clear()
        waits = {asyncio.ensure_future(stopping.wait())}
        if wakeable:
            waits.add(asyncio.ensure_future(self._wake.wait()))
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()

    async def run_once(self) -> DispatchReport:
        """Claim one batch of due messages and deliver it."""
        # On the loop's own clock: the injected one may stand still (tests), time may not.
        # Read before the claim, whose leases therefore end no sooner than this says.
        started = asyncio.get_running_loop().time()
        leases_end = started + self._lease_s
        claimed, interrupted, profiles = await self._storage(self._claim)
        if not claimed:
            return DispatchReport()
        # A lease that ran out (its dispatcher died or stalled mid-send) is an attempt that
        # may have gone out: counted and logged as a retry, sent again now; when it was the
        # last one, the message comes back a dead letter.
        given_up = [row for row in claimed if row.status == FAILED]
        self._recorder.announce_claimed(interrupted, given_up)
        to_send = [row for row in claimed if row.status != FAILED] if given_up else claimed
        # From the same reading: a claim slow to commit (a locked table, a slow disk) has
        # used part of the leases, and timed from its end the sends could outlast them.
        sends_end = started + self._send_window_s
        cancels = CancelWatch(
            lambda: self._storage(self._cancels_asked),
            started=started,
            clock=asyncio.get_running_loop().time,
        )
        outcomes = await self._sender.deliver_all(
            to_send, sends_end, profiles, self._stopping, cancels
        )
        cancelled = await self._recorder.record(outcomes, leases_end)
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
            len(claimed),
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
            extra={"worker": self.worker_id},
        )
        return report

    def _cancels_asked(self) -> set[str]:
        with ReadOnly(self._database) as read:
            return read.outbox.cancels_asked(worker=self.worker_id)

    def _claim(
        self,
    ) -> tuple[list[ClaimedMessage], list[ClaimedMessage], dict[str, UserProfile]]:
        """The claimed rows, those among them whose earlier claim ran out (that attempt
        counted), and the profiles of their users whose messages may hold (quiet hours)
        or be withdrawn (marketing)."""
        with UnitOfWork(self._database, wait=not self._inline_storage) as uow:
            # The time the leases start from is read with the write lock held: read before
            # waiting for it, the leases would end that much sooner than the sends meant
            # to fit in them, and another dispatcher could claim a message being sent.
            if self._database_time:
                now_us = uow.outbox.database_time_us()
            else:
                now_us = to_micros(self._clock())
            if self._unanswered_claims:
                # Given back now, rather than left for their leases to run out, which
                # would count an attempt that may have gone out: none did.
                uow.outbox.release_unanswered(
                    worker=self.worker_id, lease_ends=self._unanswered_claims
                )
            interrupted: list[ClaimedMessage] = []
            rows = uow.outbox.claim_due(
                now_us=now_us,
                limit=self._batch_size,
                worker=self.worker_id,
                lease_us=self._lease_us,
                max_attempts=self._retry.max_attempts,
                interrupted=interrupted,
            )
            asked = {row.user_id for row in rows if self._gates.needs_profile(row)}
            profiles = uow.users.get_many(asked) if asked else {}
            self._unanswered_claims.add(now_us + self._lease_us)  # until the commit answers
            uow.commit()
        self._unanswered_claims.clear()
        return rows, interrupted, profiles
