"""A dispatcher round's retries said in a few lines. While a receiver is down, every message
of a backlog comes back for a retry, and a line for each flooded the log with thousands of
near-identical lines; an operator needs how many, the error and when they go again. Each
message's own line is at DEBUG; its attempt is counted and audited all the same."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from herald.delivery.providers.email_message import ascii_domain
from herald.domain.recipients import INTERNAL_RECIPIENT
from herald.domain.timeutil import from_micros, iso
from herald.store.outbox import ClaimedMessage

# Its lines are the dispatcher's, under the same name, which operators filter on.
log = logging.getLogger("herald.delivery.dispatcher")

# A channel's errors are said a line each, the most frequent first, up to this many; the
# round's others (a receiver quoting a reference of its own in each answer) share one.
_ERRORS_SAID = 3


@dataclass
class _Retries:
    """Messages put back with one error: how many, and their next attempts' due times."""

    count: int
    first_due_us: int
    last_due_us: int

    def add(self, count: int, first_due_us: int, last_due_us: int) -> None:
        self.count += count
        self.first_due_us = min(self.first_due_us, first_due_us)
        self.last_due_us = max(self.last_due_us, last_due_us)


class RoundRetries:
    """The messages of one round put back for a retry, said by ``say`` as a line per
    channel and error. ``now_us``: the round's time, from which the due times count."""

    def __init__(self, now_us: int) -> None:
        self._now_us = now_us
        # By channel, then error, in the order first met.
        self._by_channel: dict[str, dict[str, _Retries]] = {}

    def add(self, row: ClaimedMessage, error: str, due_us: int) -> None:
        """``row`` goes back with ``error``, its next attempt due at ``due_us``."""
        errors = self._by_channel.setdefault(row.channel, {})
        key = _shared_error(row, error)
        if key in errors:
            errors[key].add(1, due_us, due_us)
        else:
            errors[key] = _Retries(1, due_us, due_us)

    def say(self) -> None:
        """Log what was added, then forget it."""
        for channel, errors in sorted(self._by_channel.items()):
            ranked = sorted(errors.items(), key=lambda item: -item[1].count)  # stable
            for error, retries in ranked[:_ERRORS_SAID]:
                self._say(channel, error, retries)
            others = ranked[_ERRORS_SAID:]
            if others:
                first, merged = others[0][0], replace(others[0][1])
                for _, retries in others[1:]:
                    merged.add(retries.count, retries.first_due_us, retries.last_due_us)
                error = f"{len(others)} other error(s), each message's at DEBUG, such as {first}"
                self._say(channel, error, merged)
        self._by_channel.clear()

    def _say(self, channel: str, error: str, retries: _Retries) -> None:
        log.info(
            "%s: %d message(s) will be retried: %s; %s",
            channel,
            retries.count,
            error,
            self._when(retries),
            # As fields too: a JSON log is searched and counted by them.
            extra={
                "channel": channel,
                "retried": retries.count,
                "error": error,
                "next_attempt_from": iso(from_micros(retries.first_due_us)),
                "next_attempt_until": iso(from_micros(retries.last_due_us)),
            },
        )

    def _when(self, retries: _Retries) -> str:
        first, last = retries.first_due_us, retries.last_due_us
        if last <= self._now_us:  # claims that ran out: sent again in the round that found them
            return "next attempt now"
        if first == last:
            return f"next attempt due in {self._in(first)}, at {_second(first)}"
        first_at, last_at = _second(first), _second(last)
        at = f"at {first_at}" if first_at == last_at else f"from {first_at} to {last_at}"
        return f"next attempts due in {self._in(first, unit='')} to {self._in(last)}, {at}"

    def _in(self, due_us: int, unit: str = " s") -> str:
        seconds = max(0.0, (due_us - self._now_us) / 1_000_000)
        return f"{seconds:.1f}{unit}" if seconds < 10 else f"{seconds:.0f}{unit}"


def _second(micros: int) -> str:
    """A due time to the second, in UTC as the log's own times are."""
    return from_micros(micros).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shared_error(row: ClaimedMessage, error: str) -> str:
    """``error`` as the round's other messages refused alike have it: a relay quotes each
    recipient in its refusal (``ana@example.com refused: SMTP 451 ...``), an address at a
    domain beyond ASCII in the form it was given (``ana@xn--bcher-kva.example``), and a
    receiver may echo the message's id. (Not the internal channel's recipient, a plain
    word.)"""
    if row.recipient and row.recipient != INTERNAL_RECIPIENT:
        for written in {row.recipient, ascii_domain(row.recipient)}:
            error = error.replace(written, "<recipient>")
    return error.replace(row.message_id, "<message id>")
