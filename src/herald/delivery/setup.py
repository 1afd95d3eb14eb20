"""Build channel providers and delivery policy from the ``providers`` and ``delivery``
sections of the rule file. Secrets are never in the file: it names environment variables.

As in the rule loader, every problem is collected before failing, each named by the setting
it is in (``providers.sms``, ``delivery.max_attempts``), so one check lists all of them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herald.delivery import readers
from herald.delivery.backoff import RetryPolicy
from herald.delivery.plan import DeliveryPlan
from herald.delivery.provider import Provider
from herald.delivery.providers.smtp_config import SMTP_KEYS, smtp_provider
from herald.delivery.providers.stub import FanOutProvider, LogAlertProvider, StubProvider
from herald.delivery.providers.webhook_config import WEBHOOK_KEYS, webhook_provider
from herald.delivery.quiet_hours import QuietHours
from herald.rules.definition import CHANNELS

_DEFAULT_PROVIDERS = {
    "email": {"type": "stub"},
    "sms": {"type": "stub"},
    "internal": {"type": "log"},
}
_PROVIDER_KEYS = {
    "stub": {"type"},
    "log": {"type"},
    "smtp": SMTP_KEYS,
    "webhook": WEBHOOK_KEYS,
}
# Why a channel other than email cannot send through SMTP, and what it can use instead.
_NOT_EMAIL = {
    "sms": "an sms goes to the user's phone number: use webhook or stub",
    "internal": "an internal alert goes to the team, not to an address: use log, webhook or stub",
}
_DELIVERY_KEYS = {
    "max_attempts",
    "backoff_seconds",
    "max_backoff_seconds",
    "rate_limits",
    "quiet_hours",
}
# Retries further apart than a year are a slip of the pen; much further and the due time
# would no longer fit the outbox's 64-bit microseconds, failing the dispatcher's write.
_LONGEST_BACKOFF_S = 365 * 86_400


class DeliveryConfigError(ValueError):
    """The ``providers`` or ``delivery`` section is invalid; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def build_delivery(
    document: Mapping[str, Any],
    *,
    outbox: Path,
    env: Mapping[str, str] | None = None,
) -> DeliveryPlan:
    """The plan of ``plan_delivery``; raises ``DeliveryConfigError`` listing every problem."""
    problems: list[str] = []
    plan = plan_delivery(document, problems, outbox=outbox, env=env)
    if problems:
        raise DeliveryConfigError(problems)
    return plan


def plan_delivery(
    document: Mapping[str, Any],
    problems: list[str],
    *,
    outbox: Path,
    env: Mapping[str, str] | None = None,
    folder: Path | None = None,
) -> DeliveryPlan:
    """Providers per channel (stub email/sms and a logged internal channel by default) and
    the delivery policy. Each problem is appended to ``problems`` and its setting left out
    of the plan, so the plan is only for use when none was found. No connection is opened
    (a ``ca_file`` is read): building the plan is also how a rule file's delivery is
    checked. ``folder`` is the rule file's, where a relative ``ca_file`` is."""
    env = os.environ if env is None else env
    delivery = readers.mapping(document.get("delivery"), "delivery", problems) or {}
    readers.unknown_keys(delivery, _DELIVERY_KEYS, "delivery", problems)
    return DeliveryPlan(
        _providers(document.get("providers"), _Reading(outbox, env, problems, folder)),
        _retry_policy(delivery, problems),
        _rates(delivery.get("rate_limits"), problems),
        _quiet_hours(delivery.get("quiet_hours"), problems),
    )


@dataclass(frozen=True, slots=True)
class _Reading:
    """What every provider's settings are read with: the stub's file, the environment the
    secrets come from, the list problems go to, and the rule file's folder."""

    outbox: Path
    env: Mapping[str, str]
    problems: list[str]
    folder: Path | None


def _providers(raw: Any, reading: _Reading) -> dict[str, Provider]:
    problems = reading.problems
    specs = {**_DEFAULT_PROVIDERS, **(readers.mapping(raw, "providers", problems) or {})}
    providers: dict[str, Provider] = {}
    for channel, raw_spec in specs.items():
        where = f"providers.{channel}"
        if raw_spec is None and channel in _DEFAULT_PROVIDERS:
            # Its settings left out (commented out, say) would send through the default
            # (the development stub, for email and sms) without a word.
            default = _DEFAULT_PROVIDERS[channel]["type"]
            problems.append(
                f"{where}: empty: give its settings, e.g. {{type: webhook, url: ...}}, or "
                f"remove it to keep the default, {default}"
            )
            continue
        spec = readers.mapping(raw_spec, where, problems)
        if not _is_channel(channel, where, problems) or spec is None:
            continue
        provider = _channel_provider(channel, spec, where, reading)
        if provider is not None:
            providers[channel] = provider
    return providers


def _channel_provider(
    channel: str, spec: Mapping[str, Any], where: str, reading: _Reading
) -> Provider | None:
    if channel != "internal":
        return _provider(channel, spec, where, reading)
    provider = _provider(channel, spec, where, reading, also_known=("webhook",))
    if not spec.get("webhook"):
        return provider
    # The log line is the alert of record; the webhook (e.g. a chat channel) is extra.
    hook = readers.mapping(spec["webhook"], f"{where}.webhook", reading.problems)
    if hook is None:
        return None
    extra = _provider(channel, {"type": "webhook", **hook}, f"{where}.webhook", reading)
    if provider is None or extra is None:
        return None
    return FanOutProvider(f"{provider.name}+webhook", provider, extra)


def _provider(
    channel: str,
    spec: Mapping[str, Any],
    where: str,
    reading: _Reading,
    also_known: tuple[str, ...] = (),
) -> Provider | None:
    problems, env = reading.problems, reading.env
    # Without a type, a channel keeps its default one: `internal: {webhook: ...}` adds a
    # webhook to the log line of record, it does not move the alerts into the stub's file.
    kind = spec.get("type", _DEFAULT_PROVIDERS[channel]["type"])
    if not isinstance(kind, str) or kind not in _PROVIDER_KEYS:
        problems.append(f"{where}: unknown type {kind!r} ({', '.join(_PROVIDER_KEYS)})")
        return None
    known = _PROVIDER_KEYS[kind].union(also_known)
    if "type" not in spec and _type_left_out(channel, spec, known, where, problems):
        return None
    readers.unknown_keys(spec, known, where, problems)
    if kind == "smtp" and channel != "email":
        # Its recipient is no email address: every message would be a dead letter.
        problems.append(f"{where}: `type: smtp` is for the email channel; {_NOT_EMAIL[channel]}")
        return None
    if kind == "log" and channel != "internal":
        senders = "smtp or webhook" if channel == "email" else "webhook"
        problems.append(
            f"{where}: `type: log` is for internal alerts: it logs an alert's subject and sends "
            f"the user nothing; use stub to record {channel} messages in a file, or {senders} "
            "to send them"
        )
        return None
    if kind == "stub":
        return StubProvider(reading.outbox, name=f"{channel}:stub")
    if kind == "log":
        return LogAlertProvider(name=f"{channel}:log")
    if kind == "smtp":
        return smtp_provider(channel, spec, env, where, problems, folder=reading.folder)
    return webhook_provider(channel, spec, env, where, problems, folder=reading.folder)


def _type_left_out(
    channel: str, spec: Mapping[str, Any], known: set[str], where: str, problems: list[str]
) -> bool:
    """Whether ``spec``, which has no ``type``, holds settings of another type than its
    channel's default one (``host`` and ``sender`` with no ``type: smtp``); if so, says
    which type they are for, rather than call each of them an unknown key."""
    settings = {str(key) for key in spec} - known
    fitting = [
        kind
        for kind, keys in _PROVIDER_KEYS.items()
        if settings and settings <= keys and (kind != "smtp" or channel == "email")
    ]
    if not fitting:
        return False
    problems.append(
        f"{where}: {', '.join(f'`{key}`' for key in sorted(settings))} set without a `type`, "
        f"so the channel keeps its default, {_DEFAULT_PROVIDERS[channel]['type']}, which "
        f"takes none of them: add {' or '.join(f'`type: {kind}`' for kind in fitting)}"
    )
    return True


def _retry_policy(delivery: Mapping[str, Any], problems: list[str]) -> RetryPolicy:
    default = RetryPolicy()
    attempts = readers.number(
        delivery.get("max_attempts", default.max_attempts),
        "delivery.max_attempts",
        problems,
        minimum=1,
        whole=True,
    )
    # A backoff needs a first delay above zero.
    base = readers.number(
        delivery.get("backoff_seconds", default.base),
        "delivery.backoff_seconds",
        problems,
        minimum=0.001,
    )
    ceiling = readers.number(
        delivery.get("max_backoff_seconds", default.max_backoff),
        "delivery.max_backoff_seconds",
        problems,
        minimum=0,
        maximum=_LONGEST_BACKOFF_S,
    )
    if attempts is None or base is None or ceiling is None:
        return default
    return RetryPolicy(max_attempts=int(attempts), base=base, max_backoff=ceiling)


def _rates(raw: Any, problems: list[str]) -> dict[str, tuple[float, int] | None]:
    """Messages per second per channel, with a burst of one second's worth."""
    rates: dict[str, tuple[float, int] | None] = {}
    for channel, rate in (readers.mapping(raw, "delivery.rate_limits", problems) or {}).items():
        where = f"delivery.rate_limits.{channel}"
        if not _is_channel(channel, where, problems):
            continue
        if rate is None:
            rates[channel] = None
            continue
        per_second = readers.number(rate, where, problems, minimum=0.001)
        if per_second is not None:
            rates[channel] = (per_second, max(1, int(per_second)))
    return rates


def _quiet_hours(raw: Any, problems: list[str]) -> dict[str, QuietHours]:
    quiet: dict[str, QuietHours] = {}
    for channel, raw_window in (
        readers.mapping(raw, "delivery.quiet_hours", problems) or {}
    ).items():
        where = f"delivery.quiet_hours.{channel}"
        window = readers.mapping(raw_window, where, problems)
        if not _is_channel(channel, where, problems) or window is None:
            continue
        if channel == "internal":
            # Quiet hours are read in the user's timezone trait: an alert about a user goes
            # to the team, whose night that is not, and would wait for the user's morning.
            problems.append(
                f"{where}: quiet hours are the user's, in their timezone; an internal alert "
                "goes to the team and is not held for them (quiet hours take email and sms)"
            )
            continue
        readers.unknown_keys(window, {"start", "end"}, where, problems)
        start = readers.clock_time(window.get("start"), f"{where}.start", problems)
        end = readers.clock_time(window.get("end"), f"{where}.end", problems)
        if start is not None and end is not None:
            quiet[channel] = QuietHours(start, end)
    return quiet


def _is_channel(name: Any, where: str, problems: list[str]) -> bool:
    if name in CHANNELS:
        return True
    problems.append(f"{where}: unknown channel {name!r} (known: {', '.join(CHANNELS)})")
    return False
