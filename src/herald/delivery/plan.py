"""What a rule file's ``providers`` and ``delivery`` sections make: a provider per
channel and the delivery policy (built by ``setup.plan_delivery``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time

from herald.delivery.backoff import RetryPolicy
from herald.delivery.provider import Provider
from herald.delivery.quiet_hours import QuietHours, clock
from herald.delivery.ratelimit import ChannelRateLimits


@dataclass(frozen=True)
class DeliveryPlan:
    providers: dict[str, Provider]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Messages per second and burst per channel; None: set to no limit.
    rates: dict[str, tuple[float, int] | None] = field(default_factory=dict)
    quiet_hours: dict[str, QuietHours] = field(default_factory=dict)

    def rate_limits(self, clock: Callable[[], float]) -> ChannelRateLimits:
        return ChannelRateLimits.from_rates(self.rates, clock)

    def channels_described(self) -> list[str]:
        """Each channel's provider and where it sends (``sms: webhook, https://...``), for
        the operator to see where messages go."""
        return [
            f"{channel}: {provider.name.partition(':')[2] or provider.name}, {provider.target}"
            for channel, provider in self.providers.items()
        ]

    def policy_described(self) -> list[str]:
        """The retries, and the rate limits and quiet hours when there are any."""
        retry = self.retry
        if retry.max_attempts == 1:  # no second attempt to say when
            retries = "retries: none, one attempt; then a dead letter"
        elif retry.base > retry.max_backoff:  # every wait is the ceiling
            retries = (
                f"retries: {retry.max_attempts} attempts at most, each {retry.max_backoff:g} s "
                f"after the one before (backoff_seconds {retry.base:g} is above "
                f"max_backoff_seconds {retry.max_backoff:g}); then a dead letter"
            )
        else:
            retries = (
                f"retries: {retry.max_attempts} attempts at most, the second after "
                f"{retry.base:g} s, each wait x{retry.factor:g}, at most {retry.max_backoff:g} s; "
                "then a dead letter"
            )
        lines = [retries]
        limited = {channel: rate for channel, rate in self.rates.items() if rate is not None}
        if limited:
            said = ", ".join(f"{channel} {rate:g}/s" for channel, (rate, _) in limited.items())
            lines.append(f"rate limits: {said}, per delivering process")
        if self.quiet_hours:
            said = ", ".join(
                f"{channel} {_window(window.start, window.end)}"
                for channel, window in self.quiet_hours.items()
            )
            lines.append(f"quiet hours: {said}, in each user's timezone (else UTC)")
        return lines


def _window(start: time, end: time) -> str:
    """A quiet-hours window as the operator reads it: one whose start is its end holds
    nothing back (a way to switch it off and keep the setting), and says so rather than
    read as quiet all day."""
    if start == end:
        return f"none ({clock(start)}-{clock(end)}: the start is the end)"
    return f"{clock(start)}-{clock(end)}"
