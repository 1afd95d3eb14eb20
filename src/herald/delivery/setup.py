"""Build channel providers and delivery policy from the ``providers`` and ``delivery``
sections of the rule file. Secrets are never in the file: it names environment variables."""

from __future__ import annotations

import math
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
from herald.rules.definition import CHANNELS


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


def _secret(spec: Mapping[str, Any], key: str, env: Mapping[str, str], where: str) -> str | None:
    name = spec.get(f"{key}_env")
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        raise DeliveryConfigError(f"{where}.{key}_env: name an environment variable")
    if name not in env:
        raise DeliveryConfigError(f"{where}: environment variable {name} (for {key}) is not set")
    return env[name]


def _mapping(value: Any, where: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DeliveryConfigError(f"{where}: must be a mapping, got {value!r}")
    return value


def _text(spec: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = spec.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DeliveryConfigError(f"{where}: `{key}` must be a non-empty string, got {value!r}")
    return value


def _number(value: Any, where: str, *, minimum: float, whole: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DeliveryConfigError(f"{where}: {value!r} is not a number")
    if value < minimum or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise DeliveryConfigError(f"{where}: must be {kind} of at least {minimum:g}, got {value!r}")
    return float(value)


def _channel(name: Any, where: str) -> str:
    if name not in CHANNELS:
        raise DeliveryConfigError(f"{where}: unknown channel {name!r} (known: {list(CHANNELS)})")
    return str(name)


def _provider(
    channel: str, spec: Mapping[str, Any], outbox: Path, env: Mapping[str, str], where: str
) -> Provider:
    kind = spec.get("type", "stub")
    timeout = _number(spec.get("timeout", 10.0), f"{where}.timeout", minimum=0.001)
    if kind == "stub":
        return StubProvider(outbox, name=f"{channel}:stub")
    if kind == "log":
        return LogAlertProvider(name=f"{channel}:log")
    if kind == "smtp":
        return SmtpProvider(
            name=f"{channel}:smtp",
            host=str(_text(spec, "host", where, required=True)),
            port=int(_number(spec.get("port", 25), f"{where}.port", minimum=1, whole=True)),
            sender=str(_text(spec, "sender", where, required=True)),
            reply_to=_text(spec, "reply_to", where),
            username=_secret(spec, "username", env, where),
            password=_secret(spec, "password", env, where),
            starttls=bool(spec.get("starttls", False)),
            timeout=timeout,
        )
    if kind == "webhook":
        url = str(_text(spec, "url", where, required=True))
        if not url.startswith(("http://", "https://")):
            raise DeliveryConfigError(f"{where}: `url` must be an http:// or https:// URL")
        secret = _secret(spec, "secret", env, where)
        return WebhookProvider(
            name=f"{channel}:webhook",
            url=url,
            secret=secret.encode() if secret else None,
            timeout=timeout,
        )
    raise DeliveryConfigError(f"{where}: unknown type {kind!r} (stub, log, smtp, webhook)")


def _clock_time(value: Any, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise DeliveryConfigError(f"{where}: {value!r} is not a time like 21:00") from None


def build_delivery(
    document: Mapping[str, Any], *, outbox: Path, env: Mapping[str, str] | None = None
) -> DeliveryPlan:
    """Providers per channel (stub email/sms and a logged internal channel by default) and
    the delivery policy; raises ``DeliveryConfigError`` naming the setting that is wrong.
    Nothing is opened: building the plan is also how a rule file's delivery is checked."""
    env = os.environ if env is None else env
    specs: dict[str, Any] = {
        "email": {"type": "stub"},
        "sms": {"type": "stub"},
        "internal": {"type": "log"},
    }
    specs.update(_mapping(document.get("providers"), "providers"))
    providers: dict[str, Provider] = {}
    for channel, spec in specs.items():
        where = f"providers.{channel}"
        channel = _channel(channel, where)
        spec = _mapping(spec, where)
        provider = _provider(channel, spec, outbox, env, where)
        if channel == "internal" and spec.get("webhook"):
            # The log line is the alert of record; the webhook (e.g. a chat channel) is extra.
            hook = {"type": "webhook", **_mapping(spec["webhook"], f"{where}.webhook")}
            extra = _provider(channel, hook, outbox, env, f"{where}.webhook")
            provider = FanOutProvider(f"{channel}:log+webhook", provider, extra)
        providers[channel] = provider
    delivery = _mapping(document.get("delivery"), "delivery")
    retry = RetryPolicy(
        max_attempts=int(
            _number(delivery.get("max_attempts", 5), "delivery.max_attempts", minimum=1, whole=True)
        ),
        base=_number(delivery.get("backoff_seconds", 2.0), "delivery.backoff_seconds", minimum=0),
        max_backoff=_number(
            delivery.get("max_backoff_seconds", 600.0), "delivery.max_backoff_seconds", minimum=0
        ),
    )
    rates: dict[str, tuple[float, int] | None] = {}
    for channel, rate in _mapping(delivery.get("rate_limits"), "delivery.rate_limits").items():
        where = f"delivery.rate_limits.{channel}"
        per_second = None if rate is None else _number(rate, where, minimum=0.001)
        rates[_channel(channel, where)] = (
            None if per_second is None else (per_second, max(1, int(per_second)))
        )
    quiet: dict[str, QuietHours] = {}
    for channel, window in _mapping(delivery.get("quiet_hours"), "delivery.quiet_hours").items():
        where = f"delivery.quiet_hours.{channel}"
        window = _mapping(window, where)
        quiet[_channel(channel, where)] = QuietHours(
            _clock_time(window.get("start"), where), _clock_time(window.get("end"), where)
        )
    return DeliveryPlan(providers, retry, rates, quiet)
