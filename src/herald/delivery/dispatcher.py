"""The dispatcher: claims due messages from the outbox and delivers them through providers,
in rounds, one a claim, that overlap (a round: dispatch_round.py; sending it:
round_sending.py; recording it: round_recording.py).

Delivery is at least once with the message id as idempotency key: a claim has a lease,
and a dispatcher that dies mid-send leaves its messages to be claimed again when the
lease runs out. A message whose provider answered ``sent`` is never claimed again.

A live dispatcher never lets a lease run out under a send: a send starts only while its
claim's lease has time left, is cut off before the lease ends, and its outcome is
recorded while the lease still holds. Otherwise another dispatcher would claim the
message again while (or after) it was being sent, and the first one's result would be
dropped as no longer its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import TypeVar

from herald.delivery.backoff import RetryPolicy
from herald.delivery.dispatch_round import Claim, Round
from herald.delivery.outcomes import DispatchReport
from herald.delivery.provider import DeliveryStatus, Provider
from herald.delivery.quiet_hours import HoldPolicy
from herald.delivery.ratelimit import ChannelRateLimits
from herald.delivery.round_failures import RoundFailures
from herald.delivery.round_recording import RoundRecorder
from herald.delivery.round_sending import RoundSender
from herald.delivery.send_gates import SendGates
from herald.domain.model import UserProfile
from herald.domain.timeutil import to_micros
from herald.domain.unsubscribe_tokens import UnsubscribeLinks
from herald.store.database import Database
from herald.store.outbox import ClaimedMessage
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
# At most this many rounds under way at once: each one's recording waits for the database,
# and one that is slow to answer must not let claims pile up behind it.
_ROUNDS = 32


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
        concurrency: int = 16,  # sends at once on each channel
        on_result: Callable[[str, DeliveryStatus], None] = lambda _c, _s: None,
        on_send_seconds: Callable[[str, float], None] = lambda _c, _s: None,
        inline_storage: bool = False,
        hold: HoldPolicy | None = None,
        hold_channels: frozenset[str] = frozenset(),
        lock_wait_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
        database_time: bool = False,
        unsubscribe_links: UnsubscribeLinks | None = None,
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
        still sending, and sent them again. The due times it writes (a turn, a pause's or
        quiet hours' end, a retry's backoff) are then moved by as much as that clock runs
        ahead of ``clock``, since it is that clock that finds them due.

        ``unsubscribe_links``: give each marketing message the link that unsubscribes its
        user from its channel (``SendRequest.unsubscribe_url``)."""
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
        self._concurrency = concurrency
        # A claim takes at least half a round (a channel's slots' worth, when more):
        # claimed as each slot freed, a fast receiver's messages went a few at a time,
        # each few a claim and a recording of its own.
        self._least_claim = max(min(concurrency, batch_size), batch_size // 2)
        self._failures = RoundFailures()
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
            on_send_seconds=on_send_seconds,
            unsubscribe_links=unsubscribe_links,
        )
        # The lease ends of claims whose commit failed, as far as this dispatcher heard:
        # one may have gone through, its messages claimed but never sent.
        self._unanswered_claims: set[int] = set()
        self._last_lease_end = 0  # microseconds
        # The recorder's count of unrecorded messages when the stop was asked for: those
        # of the rounds then under way are what the stop leaves to be sent again.
        self._unrecorded_at_stop = 0
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

    @property
    def left_unrecorded(self) -> int:
        """How many messages the rounds under way when ``run`` was told to stop sent or
        tried but could not record before their claims ran out (the database away): they
        go again once claimed again."""
        return self._recorder.unrecorded - self._unrecorded_at_stop

    def wake(self) -> None:
        """Thread-safe nudge: new messages were committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until ``stopping`` is set, then let the sends under way end and be
        recorded; a failing database pauses, never ends, the loop.

        Rounds overlap: the next one is claimed once the local sends of the last are done
        and its remote ones under way or waiting for a slot of their channel, not once its
        slowest receiver has answered. The claims leave fewer than a round's worth of
        messages waiting for a slot, as one round did."""
        self._loop = asyncio.get_running_loop()
        self._stopping = stopping
        self._gates.say_rate_limits_are_this_process_own()
        # Noted as the stop is asked for, not once the loop sees it: a round it awaits may
        # fail its recording in between.
        stop_noted = asyncio.ensure_future(stopping.wait())
        stop_noted.add_done_callback(self._note_stop)
        rounds: set[asyncio.Task[None]] = set()
        try:
            while not stopping.is_set():
                room = self._batch_size - self._sender.waiting
                if room < self._least_claim or len(rounds) >= _ROUNDS:
                    # Receivers slow to answer: a claim now would only wait, its leases running.
                    await self._sender.fewer_waiting(_POLL_S)
                    continue
                claimed = await self._start_round(room, rounds)
                self._say_if_its_file_is_gone()
                if claimed >= room:
                    continue  # more is waiting
                if claimed:
                    await asyncio.sleep(_GATHER_S)
                pause = min(_POLL_S * 2 ** min(self._failures.count, 7), _LONGEST_PAUSE_S)
                # While rounds fail, a commit's wake-up must not cut the pause short.
                await self._idle(stopping, pause, wakeable=not self._failures.count)
        finally:
            # Stopping: no send starts, those under way end and are recorded.
            await asyncio.gather(*rounds, return_exceptions=True)
            stop_noted.cancel()

    def _note_stop(self, _stopped: object) -> None:
        self._unrecorded_at_stop = self._recorder.unrecorded

    async def _start_round(self, limit: int, rounds: set[asyncio.Task[None]]) -> int:
        """Claim up to ``limit`` messages and start their round, added to ``rounds`` until
        it ends; returns once what is left of it waits for receivers. How many it claimed."""
        try:
            round_ = await self._claim_round(limit)
        except Exception as exc:
            self._failures.failed(exc)
            return 0
        if round_ is None:
            self._failures.succeeded()
            return 0
        task = asyncio.ensure_future(self._deliver_said(round_))
        rounds.add(task)
        task.add_done_callback(rounds.discard)
        handed_over = asyncio.ensure_future(round_.handed_over.wait())
        await asyncio.wait({task, handed_over}, return_when=asyncio.FIRST_COMPLETED)
        handed_over.cancel()
        return round_.claimed

    async def _deliver_said(self, round_: Round) -> None:
        try:
            await round_.deliver()
        except Exception as exc:
            self._failures.failed(exc)
        else:
            self._failures.succeeded()

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
        """Claim one batch of due messages, deliver it and record it, all of it."""
        round_ = await self._claim_round(self._batch_size)
        return DispatchReport() if round_ is None else await round_.deliver()

    async def _claim_round(self, limit: int) -> Round | None:
        """A round of up to ``limit`` due messages, claimed; None when none is due."""
        # On the loop's own clock: the injected one may stand still (tests), time may not.
        # Read before the claim, whose leases therefore end no sooner than this says.
        started = asyncio.get_running_loop().time()
        claimed, interrupted, profiles, cancelled = await self._storage(partial(self._claim, limit))
        # Ended by the claim itself, not sent: said now, as they are in no round.
        self._recorder.announce_cancelled_at_claim(cancelled)
        if not claimed:
            return None
        return Round(
            Claim(claimed, interrupted, profiles, started),
            sender=self._sender,
            recorder=self._recorder,
            lease_s=self._lease_s,
            send_window_s=self._send_window_s,
            read_cancels=lambda: self._storage(self._cancels_asked),
            stopping=self._stopping,
        )

    def _cancels_asked(self) -> set[str]:
        with ReadOnly(self._database) as read:
            return read.outbox.cancels_asked(worker=self.worker_id)

    def _claim(
        self, limit: int
    ) -> tuple[
        list[ClaimedMessage], list[ClaimedMessage], dict[str, UserProfile], list[ClaimedMessage]
    ]:
        """The claimed rows, those among them whose earlier claim ran out (that attempt
        counted), the profiles of their users whose messages may hold (quiet hours) or be
        withdrawn (marketing), and the messages whose claim ran out after their rule's
        cancel, which the claim ended cancelled (that attempt counted) rather than took."""
        with UnitOfWork(self._database, wait=not self._inline_storage) as uow:
            # The time the leases start from is read with the write lock held: read before
            # waiting for it, the leases would end that much sooner than the sends meant
            # to fit in them, and another dispatcher could claim a message being sent.
            if self._database_time:
                # Read first, the difference errs towards due times written a hair late
                # (by the statement's time), never early: a turn claimed before it comes
                # is only given back again.
                asked_us = to_micros(self._clock())
                now_us = uow.outbox.database_time_us()
                self._recorder.due_clock_ahead_us = now_us - asked_us
            else:
                now_us = to_micros(self._clock())
            if self._unanswered_claims:
                # Given back now, rather than left for their leases to run out, which
                # would count an attempt that may have gone out: none did.
                uow.outbox.release_unanswered(
                    worker=self.worker_id, lease_ends=self._unanswered_claims
                )
            # Each claim's leases end at a time of their own, by which an unanswered claim
            # is known: rounds overlap, and one still sending must not be given back with it.
            lease_us = max(self._lease_us, self._last_lease_end + 1 - now_us)
            self._last_lease_end = now_us + lease_us
            interrupted: list[ClaimedMessage] = []
            cancelled: list[ClaimedMessage] = []
            rows = uow.outbox.claim_due(
                now_us=now_us,
                limit=limit,
                worker=self.worker_id,
                lease_us=lease_us,
                max_attempts=self._retry.max_attempts,
                interrupted=interrupted,
                cancelled=cancelled,
            )
            asked = {row.user_id for row in rows if self._gates.needs_profile(row)}
            profiles = uow.users.get_many(asked) if asked else {}
            self._unanswered_claims.add(now_us + lease_us)  # until the commit answers
            uow.commit()
        self._unanswered_claims.clear()
        return rows, interrupted, profiles, cancelled
