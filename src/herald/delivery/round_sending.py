"""Sending a dispatcher's round: each claimed message through its channel's provider,
within its claim's lease, the remote ones concurrently (up to ``concurrency`` at once on
each channel, so that a slow receiver's sends take no slot of another's); what each
attempt came to, for the round's recording, handed over as each send ends.

A send starts only while its claim's lease has time left and is cut off before the lease
ends: sent later, the message could already be another dispatcher's, claimed again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from herald.delivery.backoff import RetryPolicy, after_attempt
from herald.delivery.cancel_watch import CancelWatch
from herald.delivery.outcomes import Deferred, Outcome
from herald.delivery.provider import DeliveryResult, Provider, SendRequest
from herald.delivery.send_gates import SendGates
from herald.domain.model import UserProfile
from herald.domain.unsubscribe_tokens import UnsubscribeLinks
from herald.rules.definition import Category
from herald.store.outbox import ClaimedMessage

# Its lines are the dispatcher's, under the same name, which operators filter on.
log = logging.getLogger("herald.delivery.dispatcher")

# A provider that raises does so for every message it is given: its traceback is logged
# once, then again at most this often while it goes on (each message's error is in the
# round's retry line, and its traceback at DEBUG).
_TRACEBACK_EVERY_S = 60.0


class RoundSender:
    """Sends claimed messages through ``providers`` (by channel), at most ``concurrency``
    at once on each channel, asking ``gates`` first; a transient failure is given its
    retry's due time by ``retry``. Shared by the rounds a dispatcher has under way."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        gates: SendGates,
        retry: RetryPolicy,
        concurrency: int,
        clock: Callable[[], float] = time.time,
        on_send_seconds: Callable[[str, float], None] = lambda _c, _s: None,
        unsubscribe_links: UnsubscribeLinks | None = None,
    ) -> None:
        """``unsubscribe_links``: give each marketing message its user's unsubscribe link.
        ``clock``: Unix seconds, the dispatcher's clock: the time each outcome's delay
        counts from (see ``Outcome``), and the spacing of a raising provider's tracebacks.
        ``on_send_seconds``: told the channel and the seconds of each remote provider's
        send, whatever it came to (a metric)."""
        self._providers = dict(providers)
        self._local = {name: provider.local for name, provider in self._providers.items()}
        self._gates = gates
        self._retry = retry
        self._concurrency = concurrency
        # Each channel's own slots: a receiver answering slowly fills its channel's, and
        # the other channels' messages go on being sent meanwhile.
        self._slots: dict[str, asyncio.Semaphore] = {}
        # The remote sends handed to this sender that have not yet taken a slot: what the
        # dispatcher has claimed and not begun to send, which it keeps under a round's worth.
        self._waiting: set[str] = set()
        # Set as one of them stops waiting, for a dispatcher waiting for room to claim more.
        self._fewer_waiting = asyncio.Event()
        self._rng = random.Random()  # the jitter of retry backoffs
        self._clock = clock
        self._on_send_seconds = on_send_seconds
        self._links = unsubscribe_links
        # When each provider's error of each type was last logged with its traceback.
        self._traceback_logged: dict[tuple[str, type[BaseException]], float] = {}

    @property
    def waiting(self) -> int:
        """How many remote sends handed over wait for a slot of their channel."""
        return len(self._waiting)

    async def fewer_waiting(self, timeout_s: float) -> None:
        """Return once a send that waited for a slot has taken one (or been kept back), or
        after ``timeout_s``. Polled instead, a dispatcher whose claims filled the slots of
        a fast receiver waited out its poll with them free: webhook delivery fell by half."""
        self._fewer_waiting.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._fewer_waiting.wait(), timeout_s)

    def _no_longer_waiting(self, message_id: str) -> None:
        if message_id in self._waiting:
            self._waiting.discard(message_id)
            self._fewer_waiting.set()

    async def deliver_all(
        self,
        rows: list[ClaimedMessage],
        sends_end: float,
        profiles: Mapping[str, UserProfile],
        stopping: asyncio.Event,
        cancels: CancelWatch | None = None,
        *,
        ended: Callable[[Outcome], None] = lambda _outcome: None,
        handed_over: Callable[[], None] = lambda: None,
    ) -> list[Outcome]:
        """Each row's outcome, in no promised order, each also given to ``ended`` as soon
        as it is known. A remote send starts only before ``sends_end`` (the event loop's
        time) and is cut off there; once ``stopping`` is set, no send starts, nor one whose
        rule ``cancels`` says was cancelled. ``profiles``: the users' whose messages may be
        held or withdrawn (see ``SendGates``). ``handed_over`` is called, when there are
        remote sends, once the local ones are done and the remote ones are about to start
        or wait for a slot: what is left waits for receivers."""
        # A local provider (a file, the log) never waits, so its sends are awaited in turn:
        # a task per message would cost more than the send. Remote ones run concurrently.
        outcomes, remote = [], []
        for row in rows:
            kept = self._gates.kept(row, profiles)
            if kept is not None:
                outcome = self._stamped(kept)
            elif self._local.get(row.channel, False):
                outcome = await self._deliver(row, None, stopping, cancels)
            else:
                remote.append(row)
                continue
            outcomes.append(outcome)
            ended(outcome)
        if remote:
            self._waiting.update(row.message_id for row in remote)
            handed_over()
            outcomes += await asyncio.gather(
                *(self._deliver_remote(row, sends_end, stopping, cancels, ended) for row in remote)
            )
        return outcomes

    async def _deliver_remote(
        self,
        row: ClaimedMessage,
        sends_end: float,
        stopping: asyncio.Event,
        cancels: CancelWatch | None,
        ended: Callable[[Outcome], None],
    ) -> Outcome:
        try:
            outcome = await self._deliver(row, sends_end, stopping, cancels)
        finally:
            self._no_longer_waiting(row.message_id)  # if it never took a slot
        ended(outcome)
        return outcome

    async def _deliver(
        self,
        row: ClaimedMessage,
        sends_end: float | None,
        stopping: asyncio.Event,
        cancels: CancelWatch | None,
    ) -> Outcome:
        """Send ``row``; a remote send (``sends_end`` set) only within the claim's lease."""
        return self._stamped(await self._deliver_now(row, sends_end, stopping, cancels))

    def _stamped(self, outcome: Outcome) -> Outcome:
        # A round is recorded once its slowest send has answered: a turn, a pause's end or
        # a backoff counted from then would come late by however long that took.
        if outcome.decided_at is not None:
            return outcome
        return replace(outcome, decided_at=self._clock())

    async def _deliver_now(
        self,
        row: ClaimedMessage,
        sends_end: float | None,
        stopping: asyncio.Event,
        cancels: CancelWatch | None,
    ) -> Outcome:
        # A channel paused is given back before it waits for a slot; its rate is asked
        # only once it has one, just before sending (below).
        kept = self._gates.paused(row)
        if kept is not None:
            return kept
        provider = self._providers.get(row.channel)
        if provider is None:
            return Outcome(row, DeliveryResult.failed(f"no provider for channel {row.channel}"))
        async with self._slots_of(row.channel):
            self._no_longer_waiting(row.message_id)
            if stopping.is_set():
                # Sends under way finish and are recorded; one not begun would only make
                # the stop wait longer, or be cut off by it and be sent again later.
                return Outcome(row, Deferred("the dispatcher stopped before its turn"))
            if cancels is not None and await cancels.asked(row.message_id):
                # Given back, it ends cancelled: its rule's cancel is on the row.
                return Outcome(row, Deferred("its rule was cancelled before its turn"))
            left = None if sends_end is None else sends_end - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                # Its turn came too late in the round (slow sends ahead of it): another
                # round, here or in another dispatcher, sends it under a fresh lease.
                return Outcome(row, Deferred("its claim's lease ran out before its turn"))
            # Asked again: a send ahead of it in the round may have paused the channel.
            # The rate's turn is taken here, as it goes out: taken before waiting for a
            # slot, the turns of the messages waiting behind a stalled receiver were all
            # spent in the instant it caught up, a burst past the rate.
            kept = self._gates.paused(row) or self._gates.rate_limited(row)
            if kept is not None:
                return kept
            started = time.monotonic() if sends_end is not None else 0.0
            result = await self._send_within(provider, row, left)
            if sends_end is not None:
                # A remote receiver's time alone: a local send (a file, the log) says
                # nothing of one, and timing it cost 6% of the stub's rate. Timed by the
                # monotonic clock, not the dispatcher's, which a test may hold still.
                self._on_send_seconds(row.channel, time.monotonic() - started)
        answered = self._clock()
        self._gates.pause_if_asked(row.channel, result, answered)
        retried = after_attempt(result, row.attempts + 1, self._retry, self._rng)
        return Outcome(row, *retried, decided_at=answered)

    async def _send_within(
        self, provider: Provider, row: ClaimedMessage, left: float | None
    ) -> DeliveryResult:
        """``provider``'s answer for ``row``, cut off after ``left`` seconds, what is left of
        the claim's lease (no deadline for a local send: None); a send cut off, or one that
        raised, is to be retried."""
        lease = asyncio.timeout(left)
        try:
            async with lease:
                return await provider.send(_request(row, self._links))
        except Exception as exc:
            if isinstance(exc, TimeoutError) and lease.expired():
                return DeliveryResult.retry(f"no answer within its claim's lease ({left:.0f} s)")
            # A provider bug must not stop the dispatcher.
            self._log_raised(provider.name, exc)
            return DeliveryResult.retry(f"provider error: {type(exc).__name__}: {exc}")

    def _slots_of(self, channel: str) -> asyncio.Semaphore:
        slots = self._slots.get(channel)
        if slots is None:
            slots = self._slots[channel] = asyncio.Semaphore(self._concurrency)
        return slots

    def _log_raised(self, provider: str, exc: Exception) -> None:
        """The traceback of ``exc``, raised by ``provider``'s send: at ERROR the first time
        and then every ``_TRACEBACK_EVERY_S`` for the same provider and error type (a
        backlog of thousands logged one each), else at DEBUG."""
        key, now = (provider, type(exc)), self._clock()
        last = self._traceback_logged.get(key)
        if last is not None and now - last < _TRACEBACK_EVERY_S:
            log.debug("provider %s raised", provider, exc_info=exc)
            return
        self._traceback_logged[key] = now
        log.error(
            "provider %s raised: each send it raises on is a failed attempt (the same "
            "error's traceback is logged again at most every %g s while it goes on)",
            provider,
            _TRACEBACK_EVERY_S,
            exc_info=exc,
        )


def _request(row: ClaimedMessage, links: UnsubscribeLinks | None) -> SendRequest:
    marketing = row.category == Category.MARKETING
    return SendRequest(
        message_id=row.message_id,
        channel=row.channel,
        recipient=row.recipient,
        rule=row.rule,
        dedup_key=row.dedup_key,
        user_id=row.user_id,
        event_id=row.event_id,
        subject=row.subject,
        body=row.body,
        html=row.html,
        category=row.category,
        attempt=row.attempts + 1,
        unsubscribe_url=links.url(row.user_id, row.channel) if marketing and links else None,
    )
