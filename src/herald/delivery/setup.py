"""Build channel providers and delivery policy from the ``providers`` and ``delivery``
sections of the rule file. Secrets are never in the file: it names environment variables."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

from herald.delivery.dispatcher import RetryPolicy
from herald.delivery.provider import Provider
from herald.delivery.quiet_hours import QuietHours
from herald.delivery.ratelimit import ChannelRateLimits
from herald.delivery.smtp import SmtpProvider
from herald.delivery.stub import FanOutProvider, LogAlertProvider, StubProvider
from herald.delivery.webhook import WebhookProvider


class DeliveryConfigError(ValueError):
    pass


@dataclass(frozen=True)
class DeliveryPlan:
    providers: dict[str, Provider]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rates: dict[str, tuple[float, int] | None] = field(default_factory=dict)
    quiet_hours: dict[str, QuietHours] = field(default_factory=dict)

    def rate_limits(self, clock: Callable[[], float]) -> ChannelRateLimits:
        return ChannelRateLimits.from_rates(self.rates, clock)


def _secret(spec: Mapping[str, Any], key: str, env: Mapping[str, str]) -> str | None:
    name = spec.get(f"{key}_env")
    if name is None:
        return None
    if name not in env:
        raise DeliveryConfigError(f"environment variable {name} (for {key}) is not set")
    return env[name]


def _provider(
    channel: str, spec: Mapping[str, Any], outbox: Path, env: Mapping[str, str]
) -> Provider:
    kind = spec.get("type", "stub")
    if kind == "stub":
        return StubProvider(outbox, name=f"{channel}:stub")
    if kind == "log":
        return LogAlertProvider(name=f"{channel}:log")
    if kind == "smtp":
        for key in ("host", "sender"):
            if not spec.get(key):
                raise DeliveryConfigError(f"providers.{channel}: smtp needs `{key}`")
        return SmtpProvider(
            name=f"{channel}:smtp",
            host=spec["host"],
            port=int(spec.get("port", 25)),
            sender=spec["sender"],
            reply_to=spec.get("reply_to"),
            username=_secret(spec, "username", env),
            password=_secret(spec, "password", env),
            starttls=bool(spec.get("starttls", False)),
            timeout=float(spec.get("timeout", 10.0)),
        )
    if kind == "webhook":
        if not spec.get("url"):
            raise DeliveryConfigError(f"providers.{channel}: webhook needs `url`")
        secret = _secret(spec, "secret", env)
        return WebhookProvider(
            name=f"{channel}:webhook",
            url=spec["url"],
            secret=secret.encode() if secret else None,
            timeout=float(spec.get("timeout", 10.0)),
        )
    raise DeliveryConfigError(
        f"providers.{channel}: unknown type {kind!r} (stub, log, smtp, webhook)"
    )


def _clock_time(value: Any, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise DeliveryConfigError(f"{where}: {value!r} is not a time like 21:00") from None


def build_delivery(
    document: Mapping[str, Any], *, outbox: Path, env: Mapping[str, str] | None = None
) -> DeliveryPlan:
    """Providers per channel (stub email/sms and a logged internal channel by default)."""
    env = os.environ if env is None else env
    specs: dict[str, Any] = {
        "email": {"type": "stub"},
        "sms": {"type": "stub"},
        "internal": {"type": "log"},
    }
    specs.update(document.get("providers") or {})
    providers: dict[str, Provider] = {}
    for channel, spec in specs.items():
        spec = spec or {}
        provider = _provider(channel, spec, outbox, env)
        if channel == "internal" and spec.get("webhook"):
            # The log line is the alert of record; the webhook (e.g. a chat channel) is extra.
            extra = _provider(channel, {"type": "webhook", **spec["webhook"]}, outbox, env)
            provider = FanOutProvider(f"{channel}:log+webhook", provider, extra)
        providers[channel] = provider
    delivery = document.get("delivery") or {}
    retry = RetryPolicy(
        max_attempts=int(delivery.get("max_attempts", 5)),
        base=float(delivery.get("backoff_seconds", 2.0)),
        max_backoff=float(delivery.get("max_backoff_seconds", 600.0)),
    )
    rates: dict[str, tuple[float, int] | None] = {}
    for channel, rate in (delivery.get("rate_limits") or {}).items():
        rates[channel] = None if rate is None else (float(rate), max(1, int(float(rate))))
    quiet: dict[str, QuietHours] = {}
    for channel, window in (delivery.get("quiet_hours") or {}).items():
        where = f"delivery.quiet_hours.{channel}"
        quiet[channel] = QuietHours(
            _clock_time(window.get("start"), where), _clock_time(window.get("end"), where)
        )
    return DeliveryPlan(providers, retry, rates, quiet)
