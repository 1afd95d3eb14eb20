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


class RateLimiter:
    """A token bucket: ``burst`` sends at once, then ``rate_per_second`` on average.

    The bucket starts full. It refills continuously at ``rate_per_second``
    tokens per second up to ``burst`` tokens; each send takes one token.

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
        self._tokens = float(burst)
        self._updated_at = clock()
        self._promised = float("-inf")  # the last slot ``book_turn`` promised

    def try_acquire(self) -> bool:
        """Take one token if one is available now; True when it was taken."""
        self._refill()
        if self._tokens >= 1.0 - _TOKEN_EPSILON:
            self._tokens -= 1.0
            return True
        return False

    def delay_until_available(self) -> float:
        """Seconds until ``try_acquire`` would succeed; 0.0 when it would now.

        Takes no token: a caller that waits this long must still call
        ``try_acquire``, since another sender may have taken the token first.
        """
        self._refill()
        missing = 1.0 - self._tokens
        if missing <= _TOKEN_EPSILON:
            return 0.0
        return missing / self.rate_per_second

    def book_turn(self) -> float:
        """Seconds until the next send slot that no earlier caller was promised, and
        promise it: the n-th message deferred while the bucket is empty is told to come
        back n slots later, not all of them at the first one (where one would be sent and
        the rest deferred again, every slot, the whole backlog rewritten to send one).

        Takes no token, like ``delay_until_available``."""
        now = self._clock()
        turn = max(now + self.delay_until_available(), self._promised + 1.0 / self.rate_per_second)
        self._promised = turn
        return turn - now

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated_at
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_second)
        # Moving the reference point even when the clock went backwards avoids
        # crediting the same interval twice once it moves forward again.
        self._updated_at = now


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

    def book_turn(self, channel: str) -> float:
        """Seconds until a slot of ``channel`` promised to the caller alone (see
        ``RateLimiter.book_turn``); 0.0 for an unlimited channel."""
        limiter = self.limiter_for(channel)
        return 0.0 if limiter is None else limiter.book_turn()


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
