"""A long command's progress: the first step at once, then at most every few seconds, and
what is left unsaid when the work ends or stops."""

from __future__ import annotations

from herald.cli.progress_lines import ThrottledProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_step_is_said_at_once_then_the_latest_count_every_few_seconds() -> None:
    clock, said = FakeClock(), []
    progress = ThrottledProgress(said.append, lambda kind, n: f"{kind}: {n}", 5.0, clock)

    progress("events", 5)
    clock.now = 1.0
    progress("events", 10)
    progress("messages", 2)
    clock.now = 5.0
    progress("events", 15)
    clock.now = 6.0
    progress("events", 20)
    progress.flush()
    progress.flush()

    assert said == ["events: 5", "events: 15", "messages: 2", "events: 20"]
