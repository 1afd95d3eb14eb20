"""The log of an outage: enough to see it begin, go on and end, never a line per failed
request. Time is a hand-moved clock, so no test sleeps."""

from __future__ import annotations

import logging

import pytest

from herald.observability.outage import OutageLog

LOGGER = "herald.test.outage"


class HandClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def outage(clock: HandClock, caplog: pytest.LogCaptureFixture) -> OutageLog:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return OutageLog(logging.getLogger(LOGGER), "ingestion", every_s=5.0, clock=clock)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def down() -> ConnectionError:
    return ConnectionError("connection refused\nDETAIL: a second line")


def test_the_first_failure_of_an_outage_is_logged_with_its_traceback(
    outage: OutageLog, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(down())

    [record] = caplog.records
    assert record.levelname == "ERROR" and record.exc_info is not None
    assert record.getMessage() == (
        "ingestion failed: the database cannot serve it now: connection refused; its "
        "requests are answered 503 until it can, with a line every 5 s meanwhile"
    )


def test_further_failures_make_a_counted_line_at_most_every_few_seconds(
    outage: OutageLog, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(down())
    for _ in range(1000):  # a burst within the first seconds: not a line more
        clock.now += 0.004
        outage.failed(down(), requests=2)
    clock.now = 105.0
    outage.failed(down())
    clock.now = 107.0
    outage.failed(down())

    assert len(caplog.records) == 2
    repeat = caplog.records[1]
    assert repeat.levelname == "WARNING" and repeat.exc_info is None
    assert repeat.getMessage() == (
        "ingestion still failing: 2001 more request(s) failed in 5 s (2002 since the "
        "first failure 5 s ago): connection refused"
    )


def test_the_end_of_an_outage_is_one_line_with_how_long_and_how_many(
    outage: OutageLog, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(down(), requests=3)
    clock.now += 20
    outage.failed(down())
    clock.now += 42
    outage.succeeded()
    outage.succeeded()

    assert messages(caplog)[-1:] == [
        "ingestion succeeds again: 4 request(s) failed while the database could not "
        "serve them, the first 62 s ago, the last 42 s ago"
    ]


def test_the_end_of_an_outage_on_an_idle_server_does_not_stretch_it_to_the_next_request(
    outage: OutageLog, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A blip of a second at night, and the first request in the morning: the line said
    the database had been unavailable for the eight hours between."""
    outage.failed(down())
    clock.now += 1
    outage.failed(down())
    clock.now += 8 * 3600
    outage.succeeded()

    [end] = messages(caplog)[1:]
    assert "unavailable for" not in end
    assert end.endswith("the first 28801 s ago, the last 28800 s ago")


def test_the_next_outage_is_logged_with_its_traceback_again(
    outage: OutageLog, clock: HandClock, caplog: pytest.LogCaptureFixture
) -> None:
    outage.failed(down())
    outage.succeeded()
    clock.now += 1
    outage.failed(down())

    assert [record.exc_info is not None for record in caplog.records] == [True, False, True]


def test_success_outside_an_outage_logs_nothing(
    outage: OutageLog, caplog: pytest.LogCaptureFixture
) -> None:
    outage.succeeded()

    assert caplog.records == []
