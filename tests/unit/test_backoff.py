import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.delivery.backoff import RetryPolicy, after_attempt, compute_backoff
from herald.delivery.provider import DeliveryResult, DeliveryStatus


def test_the_first_retry_waits_base_seconds() -> None:
    assert compute_backoff(1, base=2.0, jitter=0) == 2.0


def test_each_failed_attempt_multiplies_the_delay_by_factor_without_jitter() -> None:
    delays = [compute_backoff(attempt, base=2.0, factor=2.0, jitter=0) for attempt in range(1, 7)]

    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]


def test_delays_never_shrink_as_attempts_grow_without_jitter() -> None:
    delays = [compute_backoff(attempt, factor=1.5, jitter=0) for attempt in range(1, 100)]

    assert delays == sorted(delays)


def test_the_delay_stops_growing_at_max_backoff() -> None:
    assert compute_backoff(9, jitter=0) == 512.0
    assert compute_backoff(10, jitter=0) == 600.0
    assert compute_backoff(50, jitter=0) == 600.0


def test_huge_attempt_counts_are_capped_instead_of_overflowing() -> None:
    assert compute_backoff(100_000, jitter=0) == 600.0
    assert compute_backoff(100_000, jitter=0.5, rng=random.Random(1)) <= 600.0


def test_jitter_only_shortens_the_delay_by_at_most_the_jitter_fraction() -> None:
    rng = random.Random(42)

    delays = [compute_backoff(3, base=2.0, jitter=0.2, rng=rng) for _ in range(1_000)]

    assert all(6.4 <= delay <= 8.0 for delay in delays)
    assert min(delays) < 6.6 and max(delays) > 7.8  # spread over the whole range


def test_jitter_keeps_capped_delays_under_max_backoff() -> None:
    rng = random.Random(7)

    delays = [compute_backoff(30, jitter=0.2, rng=rng) for _ in range(1_000)]

    assert all(480.0 <= delay <= 600.0 for delay in delays)


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [compute_backoff(a, rng=random.Random(3)) for a in range(1, 10)]
    second = [compute_backoff(a, rng=random.Random(3)) for a in range(1, 10)]

    assert first == second


def test_no_randomness_is_drawn_when_jitter_is_zero() -> None:
    rng = random.Random(5)
    state = rng.getstate()

    compute_backoff(4, jitter=0, rng=rng)

    assert rng.getstate() == state


@pytest.mark.parametrize(
    "arguments",
    [
        {"attempt": 0},
        {"attempt": -1},
        {"attempt": 1, "base": 0},
        {"attempt": 1, "factor": 0.5},
        {"attempt": 1, "max_backoff": -1},
        {"attempt": 1, "jitter": -0.1},
        {"attempt": 1, "jitter": 1.5},
        {"attempt": 1, "base": float("nan")},
    ],
)
def test_arguments_out_of_range_are_rejected(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        compute_backoff(**arguments)  # type: ignore[arg-type]


@given(
    attempt=st.integers(min_value=1, max_value=5_000),
    base=st.floats(min_value=0.001, max_value=3_600),
    factor=st.floats(min_value=1.0, max_value=10.0),
    max_backoff=st.floats(min_value=0.0, max_value=86_400),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_delay_lies_between_the_jittered_and_the_nominal_capped_delay(
    attempt: int, base: float, factor: float, max_backoff: float, jitter: float, seed: int
) -> None:
    nominal = compute_backoff(attempt, base=base, factor=factor, max_backoff=max_backoff, jitter=0)

    delay = compute_backoff(
        attempt,
        base=base,
        factor=factor,
        max_backoff=max_backoff,
        jitter=jitter,
        rng=random.Random(seed),
    )

    assert 0.0 <= nominal * (1 - jitter) <= delay <= nominal <= max_backoff


@given(
    attempt=st.integers(min_value=1, max_value=5_000),
    factor=st.floats(min_value=1.0, max_value=10.0),
)
def test_one_more_failure_never_shortens_the_nominal_delay(attempt: int, factor: float) -> None:
    assert compute_backoff(attempt, factor=factor, jitter=0) <= compute_backoff(
        attempt + 1, factor=factor, jitter=0
    )


POLICY = RetryPolicy(max_attempts=3, base=10, jitter=0, max_backoff=300)


def test_a_result_that_is_not_a_retry_goes_as_it_is_without_a_delay() -> None:
    for result in (DeliveryResult.sent("ok"), DeliveryResult.failed("550")):
        assert after_attempt(result, 1, POLICY, random.Random(0)) == (result, 0.0)


def test_a_retry_waits_its_backoff() -> None:
    result = DeliveryResult.retry("HTTP 503")

    assert after_attempt(result, 2, POLICY, random.Random(0)) == (result, 20.0)


def test_a_retry_waits_as_long_as_the_receiver_asked_up_to_the_longest_backoff() -> None:
    asked = DeliveryResult.retry("HTTP 429", after=120)
    too_long = DeliveryResult.retry("HTTP 429", after=86_400)
    shorter = DeliveryResult.retry("HTTP 429", after=1)

    assert after_attempt(asked, 1, POLICY, random.Random(0))[1] == 120
    assert after_attempt(too_long, 1, POLICY, random.Random(0))[1] == 300
    assert after_attempt(shorter, 1, POLICY, random.Random(0))[1] == 10  # the backoff


def test_a_retry_at_the_last_attempt_is_a_dead_letter_that_says_why() -> None:
    result, delay = after_attempt(DeliveryResult.retry("HTTP 503"), 3, POLICY, random.Random(0))

    assert (result.status, delay) == (DeliveryStatus.FAILED, 0.0)
    assert result.detail == "gave up after 3 attempts: HTTP 503"


def test_a_policy_of_one_attempt_gives_up_after_one_attempt_in_words() -> None:
    one = replace(POLICY, max_attempts=1)

    result, _ = after_attempt(DeliveryResult.retry("HTTP 503"), 1, one, random.Random(0))

    assert result.detail == "gave up after 1 attempt: HTTP 503"
