import pytest

from herald.delivery.ratelimit import ChannelRateLimits, RateLimiter


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def acquire_all(limiter: RateLimiter) -> int:
    taken = 0
    while limiter.try_acquire():
        taken += 1
    return taken


def test_a_new_limiter_allows_a_full_burst_at_once() -> None:
    limiter = RateLimiter(rate_per_second=1.0, burst=5, clock=FakeClock())

    assert acquire_all(limiter) == 5


def test_the_send_after_the_burst_is_refused_until_time_passes() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=2.0, burst=2, clock=clock)
    acquire_all(limiter)

    assert limiter.try_acquire() is False
    clock.advance(0.49)
    assert limiter.try_acquire() is False
    clock.advance(0.01)
    assert limiter.try_acquire() is True


def test_tokens_come_back_at_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=10.0, burst=1, clock=clock)
    acquire_all(limiter)
    sent = 0

    for _ in range(1_000):  # ten seconds in steps of 10 ms
        clock.advance(0.01)
        sent += acquire_all(limiter)

    assert sent in (99, 100)


def test_an_idle_bucket_fills_up_to_burst_and_no_further() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=100.0, burst=3, clock=clock)
    acquire_all(limiter)

    clock.advance(3_600)

    assert acquire_all(limiter) == 3


def test_delay_is_zero_while_tokens_remain() -> None:
    limiter = RateLimiter(rate_per_second=1.0, burst=2, clock=FakeClock())
    limiter.try_acquire()

    assert limiter.delay_until_available() == 0.0


def test_delay_says_how_many_seconds_until_the_next_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=4.0, burst=1, clock=clock)
    limiter.try_acquire()

    assert limiter.delay_until_available() == pytest.approx(0.25)
    clock.advance(0.1)
    assert limiter.delay_until_available() == pytest.approx(0.15)


def test_asking_for_the_delay_takes_no_token() -> None:
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=FakeClock())

    limiter.delay_until_available()
    limiter.delay_until_available()

    assert limiter.try_acquire() is True


@pytest.mark.parametrize("rate", [3.0, 7.0, 0.3, 1 / 3])
def test_waiting_exactly_the_reported_delay_is_always_enough(rate: float) -> None:
    clock = FakeClock(now=0.1)
    limiter = RateLimiter(rate_per_second=rate, burst=1, clock=clock)
    acquire_all(limiter)

    for _ in range(200):
        clock.advance(limiter.delay_until_available())
        assert limiter.try_acquire() is True


def test_turns_are_booked_one_slot_apart_in_the_order_they_are_asked_for() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=4.0, burst=1, clock=clock)

    assert limiter.turn("m0") == 0.0  # the bucket's token
    assert [limiter.turn(m) for m in ("m1", "m2", "m3")] == pytest.approx([0.25, 0.5, 0.75])
    clock.advance(0.5)
    assert limiter.turn("m4") == pytest.approx(0.5)  # after the last booked, at 0.75


def test_a_message_back_in_its_turn_is_sent_and_none_asking_after_it_takes_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=clock)
    limiter.turn("first")
    assert limiter.turn("early") == pytest.approx(1.0)

    clock.advance(1.0)
    assert limiter.turn("late") == pytest.approx(1.0)  # the token that came is early's
    assert limiter.try_acquire() is False
    assert limiter.turn("early") == 0.0
    assert limiter.turn("early") == pytest.approx(2.0)  # sent: asked again, a new turn


def test_a_message_back_before_its_turn_keeps_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=clock)
    limiter.turn("first")
    limiter.turn("second")
    limiter.turn("third")

    clock.advance(0.5)
    assert limiter.turn("second") == pytest.approx(0.5)
    assert limiter.turn("third") == pytest.approx(1.5)
    clock.advance(0.5)
    assert limiter.turn("second") == 0.0


def test_a_turn_missed_by_more_than_a_second_is_asked_for_again() -> None:
    """A dispatcher that stalled must not send every turn it held back at once."""
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=clock)
    limiter.turn("first")
    for n in range(5):
        limiter.turn(f"m{n}")  # turns 1 to 5 s from now, their tokens taken

    clock.advance(5.5)
    assert limiter.turn("m4") == 0.0  # its turn passed half a second ago
    # The others' passed more than a second ago: booked again, from the tokens to come.
    assert [limiter.turn(f"m{n}") for n in range(4)] == pytest.approx([0.5, 1.5, 2.5, 3.5])


def test_a_hold_moves_the_turns_booked_back_by_its_length() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=clock)
    limiter.turn("first")
    limiter.turn("second")  # its turn in 1 s

    limiter.hold(10.0)
    clock.advance(10.0)
    assert limiter.turn("second") == pytest.approx(1.0)
    assert limiter.turn("later") == pytest.approx(2.0)
    limiter.hold(1.0)  # within the first hold's ten seconds, it adds one
    assert limiter.turn("second") == pytest.approx(2.0)


def test_a_hold_keeps_the_bucket_from_filling_up_meanwhile() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=1.0, burst=3, clock=clock)
    acquire_all(limiter)

    limiter.hold(5.0)
    clock.advance(4.0)
    assert limiter.try_acquire() is False
    assert limiter.delay_until_available() == pytest.approx(2.0)
    clock.advance(3.0)
    assert acquire_all(limiter) == 2


def test_a_clock_that_steps_backwards_adds_no_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=1.0, burst=1, clock=clock)
    limiter.try_acquire()

    clock.advance(-10.0)
    assert limiter.try_acquire() is False
    clock.advance(0.5)
    assert limiter.try_acquire() is False  # the backwards step is not credited later
    clock.advance(0.5)
    assert limiter.try_acquire() is True


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_limiter_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate_per_second=rate, burst=burst, clock=FakeClock())


def test_a_channel_without_a_limiter_is_unlimited() -> None:
    limits = ChannelRateLimits({"email": None})

    assert all(limits.try_acquire("email") for _ in range(10_000))
    assert limits.delay_until_available("email") == 0.0
    assert limits.limiter_for("email") is None


def test_a_channel_that_is_not_configured_is_unlimited() -> None:
    limits = ChannelRateLimits()

    assert limits.try_acquire("sms") is True
    assert limits.delay_until_available("sms") == 0.0


def test_channels_draw_from_their_own_buckets() -> None:
    clock = FakeClock()
    limits = ChannelRateLimits(
        {
            "email": RateLimiter(rate_per_second=1.0, burst=1, clock=clock),
            "webhook": RateLimiter(rate_per_second=1.0, burst=1, clock=clock),
        }
    )

    assert limits.try_acquire("email") is True
    assert limits.try_acquire("email") is False
    assert limits.try_acquire("webhook") is True
    assert limits.delay_until_available("email") == pytest.approx(1.0)


def test_limits_can_be_built_from_rates_and_bursts() -> None:
    clock = FakeClock()
    limits = ChannelRateLimits.from_rates({"email": (2.0, 3), "push": None}, clock=clock)

    limiter = limits.limiter_for("email")
    assert limiter is not None
    assert (limiter.rate_per_second, limiter.burst) == (2.0, 3)
    assert limits.limiter_for("push") is None
    assert [limits.try_acquire("email") for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)
    assert limits.try_acquire("email") is True


def test_messages_that_all_come_back_late_for_their_turns_still_go_out_at_the_rate() -> None:
    """Every deferred message comes back 1.5 s after its turn: the database's clock, which
    judges what is due, runs behind the dispatcher's, or the dispatcher lags behind a
    backlog of another channel. Booked again behind turns that will be missed alike, none
    was ever sent."""
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=2.0, burst=1, clock=clock)
    due = {f"m{n:02}": clock.now for n in range(20)}
    sent: list[tuple[str, float]] = []
    for _ in range(240):  # a minute of the dispatcher's polls, a quarter of a second apart
        for message in sorted(m for m, at in due.items() if at <= clock.now):
            wait = limiter.turn(message)
            if wait == 0.0:
                sent.append((message, clock.now))
                del due[message]
            else:
                due[message] = clock.now + wait + 1.5
        clock.advance(0.25)

    assert [message for message, _ in sent] == sorted(f"m{n:02}" for n in range(20))
    in_any_second = max(sum(1 for _, t in sent if s <= t < s + 1.0) for _, s in sent)
    assert in_any_second <= 2  # the rate


def test_a_late_turn_sent_with_the_bucket_full_counts_within_its_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=1.0, burst=3, clock=clock)
    acquire_all(limiter)
    limiter.turn("booked")  # its turn in 1 s

    clock.advance(30.0)  # missed by far: the bucket is full again
    assert limiter.turn("booked") == 0.0
    assert sum(limiter.turn(f"new{n}") == 0.0 for n in range(5)) == 2  # three in all


def test_turns_never_taken_up_hold_the_rate_back_only_until_they_pass() -> None:
    """Messages given turns, then claimed by another dispatcher, held for quiet hours or
    cancelled, never ask again: the tokens taken for them are owed only until their turns."""
    clock = FakeClock()
    limiter = RateLimiter(rate_per_second=2.0, burst=2, clock=clock)
    for n in range(100):
        limiter.turn(f"gone{n}")  # two at once, then turns over 49 s

    clock.advance(50.0)
    assert [limiter.turn(f"new{n}") for n in range(2)] == [0.0, 0.0]  # a burst again
    assert limiter.turn("next") == pytest.approx(0.5)  # and then the rate
