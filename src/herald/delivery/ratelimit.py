"""Per-channel send rate limits (token buckets).

Providers such as an SMTP relay or a partner's webhook accept only so many
requests per second; the dispatcher asks the limiter before each send and
defers the message instead of provoking 429s or a relay ban.

Time comes from an injected clock so that tests drive it by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

# Waiting exactly ``delay_until_available()`` seconds must be enough, but the
# refill arithmetic can land a hair below one token; count that as a token.
_TOKEN_EPSILON = 1e-9
# A message back this little before its booked turn is in it: its due time was counted by
# the dispatcher's (or the database's) clock, not this one, and a hair early by this one
# it would be claimed again for nothing.
_TURN_EARLY_S = 0.001
# A message asked for again after its booked turn has passed by more than this is late for
# it (its dispatcher stalled, or waited for the database or for a slow receiver). Every
# late turn honoured at once would be a burst past the rate, so one is honoured only while
# this bucket's sends, counted together, keep to the rate (with ``_LATE_SLACK_S``); the
# others ask again as a message with no turn does. Booked again behind turns that would be
# missed alike, none of a backlog that always came back late was ever sent. A round takes
# up a turn well within it (a poll is a quarter of a second).
_TURN_KEPT_S = 1.0
# How far ahead of the rate the sends may be and a late turn still be honoured: a poll's
# worth, so that the late turns claimed together in a round go out in it, not one a round.
_LATE_SLACK_S = 0.25
# A turn passed by this long is forgotten: its message went to another dispatcher, was held
# for quiet hours or was cancelled; kept, the turns booked would grow for ever.
_TURN_FORGOTTEN_S = 300.0


class RateLimiter:
    """A token bucket: ``burst`` sends at once, then ``rate_per_second`` on average, each
    message in its turn.

    The bucket starts full. It refills continuously at ``rate_per_second``
    tokens per second up to ``burst`` tokens; each send takes one token.

    ``turn`` hands an empty bucket's next tokens out in the order they are asked for: the
    message that finds no token is booked the next slot and its token taken in advance,
    leaving the bucket owing it, so that a message asking later (made later, or claimed
    before it with an earlier due time) finds no token free before that slot and is
    booked after it.

    ``clock`` returns seconds as a float from any fixed origin, and should be
    monotonic (``time.monotonic``). If it ever steps backwards the bucket simply
    gains nothing until it moves forward again.

    Not thread-safe: it is meant to be used from the dispatcher's event loop.
    """

    def __init__(self, rate_per_second: float, burst: int, clock: Callable[[], float]) -> None:
        if not rate_per_second > 0:
            raise ValueError(f"rate_per_second must be > 0, got {rate_per_second}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)  # below zero: owed to the turns booked
        self._updated_at = clock()
        self._held_until = float("-inf")  # the bucket gains nothing before then (``hold``)
        # Each booked message's slot, less ``_moved`` as it was booked: a hold moves every
        # turn booked before it back by adding to ``_moved`` alone.
        self._turns: dict[str, float] = {}
        self._moved = 0.0
        self._forget_at = float("-inf")
        # When this bucket's sends, at the rate from the last, would send the next (less
        # ``_LATE_SLACK_S``): whether a late turn may still be honoured.
        self._sends_paced_to = float("-inf")

    def try_acquire(self) -> bool:
        """Take one token if one is available now; True when it was taken."""
        return self._take(self._refill())

    def _take(self, now: float) -> bool:
        if self._tokens >= 1.0 - _TOKEN_EPSILON and now >= self._held_until:
            self._tokens -= 1.0
            return True
        return False

    def delay_until_available(self) -> float:
        """Seconds until ``try_acquire`` would succeed; 0.0 when it would now.

        Takes no token: a caller that waits this long must still call
        ``try_acquire``, since another sender may have taken the token first.
        """
        return self._wait(self._refill())

    def turn(self, key: str) -> float:
        """Seconds until ``key`` (a message) may be sent; 0.0: send it now, its token taken.

        A message with no turn booked takes a token if the bucket has one, else is booked
        the next slot no earlier message holds, its token taken in advance. Asked again, a
        message sends in its turn: 0.0 once its slot has come, else the seconds until it.
        A turn passed by more than ``_TURN_KEPT_S`` is honoured only when the bucket has a
        token free or the sends keep to the rate; else it is lost, and asked for again."""
        now = self._refill()
        booked = self._turns.pop(key, None)
        if booked is not None:
            slot = booked + self._moved
            if slot - now > _TURN_EARLY_S:  # back before its turn (another clock's due time)
                self._turns[key] = booked
                return slot - now
            if now - slot <= _TURN_KEPT_S:
                return self._sent(now)
        if self._take(now) or (booked is not None and self._late_honoured(now)):
            return self._sent(now)
        wait = self._wait(now)
        self._tokens -= 1.0
        self._turns[key] = now + wait - self._moved
        if now >= self._forget_at:
            self._forget_turns_passed(now)
        return wait

    def _late_honoured(self, now: float) -> bool:
        return now >= self._held_until and self._paced(now) <= now

    def _paced(self, now: float) -> float:
        """When the sends, at the rate from the last, allow the next one."""
        slack = max(0.0, _LATE_SLACK_S - 1.0 / self.rate_per_second)
        return max(self._sends_paced_to, now - slack)

    def _sent(self, now: float) -> float:
        self._sends_paced_to = self._paced(now) + 1.0 / self.rate_per_second
        return 0.0

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (a receiver asked to be left alone): the
        bucket gains nothing meanwhile and every turn booked moves back by as much as this
        adds to a hold already on, so that the messages booked go out after it in the
        order they were booked, at the rate, not all at its end."""
        now = self._refill()
        added = now + seconds - max(now, self._held_until)
        if added > 0:
            self._moved += added
            self._held_until = now + seconds

    def _wait(self, now: float) -> float:
        """Seconds from ``now`` until the bucket has a token free, past any hold."""
        held = max(0.0, self._held_until - now)
        missing = 1.0 - self._tokens
        if missing <= _TOKEN_EPSILON:
            return held
        return held + missing / self.rate_per_second

    def _forget_turns_passed(self, now: float) -> None:
        self._forget_at = now + _TURN_FORGOTTEN_S
        oldest = now - _TURN_FORGOTTEN_S - self._moved
        self._turns = {key: slot for key, slot in self._turns.items() if slot > oldest}

    def _refill(self) -> float:
        """Credit the tokens earned since last asked; the clock's time now."""
        now = self._clock()
        elapsed = now - max(self._updated_at, self._held_until)
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_second)
        # Moving the reference point even when the clock went backwards avoids
        # crediting the same interval twice once it moves forward again.
        self._updated_at = now
        return now


class ChannelRateLimits:
    """One ``RateLimiter`` per channel name.

    A channel that maps to ``None``, or is not mentioned at all, is unlimited.
    The buckets live in this process: N dispatcher processes, each with its own, send
    up to N times a channel's rate together.
    """

    def __init__(self, limiters: Mapping[str, RateLimiter | None] | None = None) -> None:
        self._limiters: dict[str, RateLimiter | None] = dict(limiters or {})

    @classmethod
    def from_rates(
        cls,
        rates: Mapping[str, tuple[float, int] | None],
        clock: Callable[[], float],
    ) -> ChannelRateLimits:
        """Build from ``{channel: (rate_per_second, burst) or None}``, sharing ``clock``."""
        return cls(
            {
                channel: None if rate is None else RateLimiter(rate[0], rate[1], clock)
                for channel, rate in rates.items()
            }
        )

    def rates(self) -> dict[str, float]:
        """Messages per second of each limited channel."""
        return {
            channel: limiter.rate_per_second
            for channel, limiter in self._limiters.items()
            if limiter is not None
        }

    def limiter_for(self, channel: str) -> RateLimiter | None:
        """The channel's limiter, or None when the channel is unlimited."""
        return self._limiters.get(channel)

    def try_acquire(self, channel: str) -> bool:
        """Take one send slot on ``channel``; always True for an unlimited channel."""
        limiter = self.limiter_for(channel)
        return True if limiter is None else limiter.try_acquire()

    def delay_until_available(self, channel: str) -> float:
        """Seconds until ``channel`` has a free slot; 0.0 for an unlimited channel."""
        limiter = self.limiter_for(channel)
        return 0.0 if limiter is None else limiter.delay_until_available()

    def turn(self, channel: str, key: str) -> float:
        """Seconds until ``key``, a message of ``channel``, may be sent in its turn (see
        ``RateLimiter.turn``); 0.0 to send it now, always for an unlimited channel."""
        limiter = self.limiter_for(channel)
        return 0.0 if limiter is None else limiter.turn(key)

    def hold(self, channel: str, seconds: float) -> None:
        """Hold ``channel``'s bucket and turns back ``seconds`` (see ``RateLimiter.hold``)."""
        limiter = self.limiter_for(channel)
        if limiter is not None:
            limiter.hold(seconds)


class ChannelPauses:
    """Channels whose receiver asked to be left alone for a while (a retry answered with
    ``Retry-After``, as a 429 Too Many Requests or a 503 is): until then the dispatcher
    defers, unsent and without using an attempt, every message of the channel, not only
    the one that was answered, since each would only be answered the same and spend an
    attempt on it.

    Like the rate limits, the pauses live in this process: another dispatcher process
    learns of a receiver's request only from its own answers.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # channel -> (when its pause began, its seconds): kept apart, not added up, so that
        # the messages it holds are due at the very microsecond the one answered is.
        self._pauses: dict[str, tuple[float, float]] = {}

    def pause(self, channel: str, seconds: float, since: float | None = None) -> None:
        """Send nothing on ``channel`` for ``seconds`` from ``since`` (the clock's time of
        the answer, now when None); a longer pause already on holds."""
        start = self._clock() if since is None else since
        held = self._pauses.get(channel)
        if held is None or start + seconds > sum(held):
            self._pauses[channel] = (start, seconds)

    def held(self, channel: str) -> tuple[float, float] | None:
        """The pause in force on ``channel``, as ``(since, seconds)``; None when it may
        send now."""
        held = self._pauses.get(channel)
        if held is None:
            return None
        if sum(held) - self._clock() <= 0:
            del self._pauses[channel]
            return None
        return held

    def remaining(self, channel: str) -> float:
        """Seconds until ``channel`` may send again; 0.0 when it may now."""
        held = self.held(channel)
        return 0.0 if held is None else max(0.0, sum(held) - self._clock())
