"""What may keep a claimed message from going out now: its user's consent, their quiet
hours, its channel's pause or rate limit. Each gate answers with the outcome that gives
the message back for later (or cancels it), or None to let it through."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from herald.delivery.outcomes import Deferred, Outcome, Withdrawn
from herald.delivery.provider import DeliveryResult, DeliveryStatus
from herald.delivery.quiet_hours import HoldPolicy
from herald.delivery.ratelimit import ChannelPauses, ChannelRateLimits
from herald.domain.model import UserProfile
from herald.domain.timeutil import iso
from herald.rules.definition import Category
from herald.rules.eligibility import closed_by, closed_now
from herald.store.outbox import ClaimedMessage

log = logging.getLogger(__name__)

# A receiver's answer that pauses a channel already paused is logged only when it holds
# the channel back at least this much longer.
_LONGER_PAUSE_S = 1.0


class SendGates:
    """One dispatcher's gates. Its rate limits and pauses are this process's own."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        hold: HoldPolicy | None,
        hold_channels: frozenset[str],
        rate_limits: ChannelRateLimits,
        longest_pause_s: float,
    ) -> None:
        """``hold``: asked on ``hold_channels`` (those with quiet hours) with the user's
        traits. ``longest_pause_s``: the most a receiver's ``Retry-After`` pauses its
        channel, as for a message's own retry."""
        self._clock = clock
        self._hold = hold
        self._hold_channels = hold_channels if hold is not None else frozenset()
        self._limits = rate_limits
        self._pauses = ChannelPauses(lambda: clock().timestamp())
        self._longest_pause_s = longest_pause_s

    def needs_profile(self, row: ClaimedMessage) -> bool:
        """Whether ``kept`` reads the user's profile for ``row``: it may be held for quiet
        hours, or withdrawn (marketing)."""
        return row.channel in self._hold_channels or row.category == Category.MARKETING

    def kept(self, row: ClaimedMessage, profiles: Mapping[str, UserProfile]) -> Outcome | None:
        """``row`` cancelled, for consent withdrawn since it was decided, or given back
        until its user's quiet hours end; None to send it."""
        return _withdrawn(row, profiles, self._clock) or self._held(row, profiles)

    def paused(self, row: ClaimedMessage) -> Outcome | None:
        """``row`` given back until its channel's pause ends, or None to send it now."""
        held = self._pauses.held(row.channel)
        if held is None:
            return None
        since, seconds = held
        left = since + seconds - self._clock().timestamp()
        reason = f"{row.channel} paused: its receiver asked to wait ({left:.1f} s more)"
        # Due as the message answered with the pause is (its retry counts from the same
        # answer), not a few microseconds apart by when each was looked at: the backlog
        # then goes out in the order it was made, that message first.
        return Outcome(row, Deferred(reason), seconds, decided_at=since)

    def rate_limited(self, row: ClaimedMessage) -> Outcome | None:
        """``row`` given back for its turn under its channel's rate, or None to send it now
        (a token taken, or its turn come). A message deferred keeps its turn: one asking
        after it, however early its due time, is given a later one."""
        delay = self._limits.turn(row.channel, row.message_id)
        if delay <= 0.0:
            return None
        return Outcome(
            row, Deferred(f"{row.channel} rate limit: its turn is in {delay:.1f} s"), delay
        )

    def pause_if_asked(
        self, channel: str, result: DeliveryResult, answered_at: float | None = None
    ) -> None:
        """A receiver's ``Retry-After`` is about the receiver, not the one message: every
        other message sent meanwhile would be refused as well, each using an attempt.
        ``answered_at``: Unix seconds of the answer, from which the pause counts (now when
        None)."""
        if result.status is not DeliveryStatus.RETRY or not result.retry_after:
            return
        # As for the message's own retry, a date far ahead waits no longer than a backoff.
        seconds = min(result.retry_after, self._longest_pause_s)
        already = self._pauses.remaining(channel)
        self._pauses.pause(channel, seconds, since=answered_at)
        # The turns booked move back with the pause: due in it, they would all come out
        # at its end together, each in its turn by then.
        self._limits.hold(channel, self._pauses.remaining(channel))
        if seconds < already + _LONGER_PAUSE_S:
            # The round's other sends, under way when the first answer came, are answered
            # alike: their pause was said once, as it began.
            return
        log.warning(
            "%s paused for %.1f s in this dispatcher: its receiver answered %s",
            channel,
            seconds,
            result.detail,
        )

    def say_rate_limits_are_this_process_own(self) -> None:
        # Each process keeps its own buckets (a shared limiter would put the database in
        # every send): the operator sizing a channel's rate must know to divide it.
        rates = self._limits.rates()
        if rates:
            log.info(
                "rate limits are this process's own: %s; N processes delivering send up to "
                "N times that (set a channel's rate to its limit / N)",
                ", ".join(f"{channel} {rate:g}/s" for channel, rate in sorted(rates.items())),
            )

    def _held(self, row: ClaimedMessage, profiles: Mapping[str, UserProfile]) -> Outcome | None:
        if self._hold is None or row.channel not in self._hold_channels:
            return None
        now = self._clock()
        profile = profiles.get(row.user_id)
        held = self._hold(row.channel, profile.traits if profile else {}, now)
        if held is None:
            return None
        release, reason = held
        return Outcome(row, Deferred(reason), max(0.0, (release - now).total_seconds()))


def _withdrawn(
    row: ClaimedMessage, profiles: Mapping[str, UserProfile], clock: Callable[[], datetime]
) -> Outcome | None:
    """``row`` cancelled unsent when it is marketing and its user has closed its channel
    to marketing since it was decided (a later event's traits, an unsubscribe racing a
    retry): consent is asked again before every send, not only when deciding."""
    if row.category != Category.MARKETING or row.user_id not in profiles:
        return None
    if row.channel not in closed_now(profiles[row.user_id]):
        return None
    # What closed it and when it was found: the audit keeps this as the message's reason.
    reason = (
        f"not sent: the user closed {row.channel} to marketing after it was decided "
        f"({closed_by(profiles[row.user_id], row.channel)}); cancelled at {iso(clock())}"
    )
    return Outcome(row, Withdrawn(reason))
