"""How often and how long to wait before retrying a delivery.

A pure function of the attempt count: the dispatcher stores the attempt count and
the next due time on the outbox row, so no state lives here.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from herald.delivery.provider import DeliveryResult, DeliveryStatus


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The rule file's ``delivery`` settings for retries; these defaults are Herald's."""

    max_attempts: int = 5  # the last one failing makes a dead letter
    base: float = 2.0  # seconds before the second attempt
    factor: float = 2.0
    max_backoff: float = 600.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``attempt`` failed attempts (see ``compute_backoff``)."""
        return compute_backoff(
            attempt,
            base=self.base,
            factor=self.factor,
            max_backoff=self.max_backoff,
            jitter=self.jitter,
            rng=rng,
        )


_DEFAULT = RetryPolicy()


def compute_backoff(
    attempt: int,
    *,
    base: float = _DEFAULT.base,
    factor: float = _DEFAULT.factor,
    max_backoff: float = _DEFAULT.max_backoff,
    jitter: float = _DEFAULT.jitter,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next attempt, after ``attempt`` failed attempts.

    The nominal delay is ``base * factor ** (attempt - 1)`` seconds, capped at
    ``max_backoff``: with the defaults 2, 4, 8, ... up to 600 seconds.

    Jitter is proportional and only ever shortens the delay: the result lies in
    ``[nominal * (1 - jitter), nominal]``. Shortening rather than spreading both
    ways keeps ``max_backoff`` a hard ceiling without piling every capped retry
    onto exactly ``max_backoff``, and still spreads out messages that failed
    together (an outage) so they do not all retry in the same second.

    Args:
        attempt: number of failed attempts so far, at least 1.
        base: delay after the first failure, in seconds (> 0).
        factor: growth per further failure (>= 1).
        max_backoff: ceiling for the delay, in seconds (>= 0).
        jitter: fraction of the nominal delay that may be taken off, in [0, 1].
        rng: source of randomness; pass a seeded ``random.Random`` for
            reproducible results. ``None`` uses the ``random`` module's shared
            generator. Not consulted at all when ``jitter`` is 0.

    Raises:
        ValueError: when an argument is outside the ranges above.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if not base > 0:
        raise ValueError(f"base must be > 0, got {base}")
    if not factor >= 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if not max_backoff >= 0:
        raise ValueError(f"max_backoff must be >= 0, got {max_backoff}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be within [0, 1], got {jitter}")

    nominal = min(_exponential(base, factor, attempt - 1), max_backoff)
    if jitter == 0:
        return nominal
    draw = (rng or random).random()  # in [0, 1)
    return nominal * (1.0 - jitter * draw)


def _exponential(base: float, factor: float, exponent: int) -> float:
    # Around attempt 1000 with factor 2, factor ** exponent no longer fits in a
    # float; the cap applies long before that, so overflow just means "capped".
    try:
        value = base * factor**exponent
    except OverflowError:
        return math.inf
    return value


def after_attempt(
    result: DeliveryResult, attempt: int, policy: RetryPolicy, rng: random.Random
) -> tuple[DeliveryResult, float]:
    """A provider's result after ``attempt`` attempts, as the retry policy has it: a
    retry past the last attempt is a dead letter; a retry waits its backoff, or as long
    as the receiver asked (up to the longest backoff: a date far ahead must not park the
    message beyond what the policy allows). Returns the result and the delay in seconds."""
    if result.status is not DeliveryStatus.RETRY:
        return result, 0.0
    if attempt >= policy.max_attempts:
        return DeliveryResult.failed(
            f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}: {result.detail}"
        ), 0.0
    delay = policy.delay(attempt, rng)
    if result.retry_after is not None:
        delay = max(delay, min(result.retry_after, policy.max_backoff))
    return result, delay
