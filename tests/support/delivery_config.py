"""The delivery settings the tests of a rule file's `providers` and `delivery` sections
start from, every provider and policy set, and the ways they change them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from herald.delivery.setup import DeliveryPlan, build_delivery

ENV = {"SMTP_USER": "herald", "SMTP_PASSWORD": "secret", "SMS_WEBHOOK_SECRET": "s3cret"}
FULL = {
    "providers": {
        "email": {
            "type": "smtp",
            "host": "smtp.example.com",
            "port": 587,
            "starttls": True,
            "sender": "hello@example.com",
            "reply_to": "help@example.com",
            "username_env": "SMTP_USER",
            "password_env": "SMTP_PASSWORD",
        },
        "sms": {
            "type": "webhook",
            "url": "https://sms.example.com/send",
            "secret_env": "SMS_WEBHOOK_SECRET",
        },
        "internal": {"type": "log", "webhook": {"url": "https://chat.example.com/hooks/risk"}},
    },
    "delivery": {
        "max_attempts": 5,
        "backoff_seconds": 2,
        "rate_limits": {"sms": 10},
        "quiet_hours": {"sms": {"start": "21:00", "end": "08:00"}},
    },
}


def build(document: dict[str, Any]) -> DeliveryPlan:
    return build_delivery(document, outbox=Path("outbox.jsonl"), env=ENV)


def changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(FULL)
    parent: Any = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return document


def smtp_settings(**settings: Any) -> dict[str, Any]:
    """FULL with the email provider's settings changed; ``None`` removes one."""
    document = copy.deepcopy(FULL)
    email = document["providers"]["email"]
    email.update(settings)
    document["providers"]["email"] = {k: v for k, v in email.items() if v is not None}
    return document


PLAINTEXT_AUTH = (
    "providers.email: `username_env`/`password_env` without TLS would send the password in "
    "clear text: set `tls: starttls` or `tls: implicit`, or `plaintext_auth: true` for a "
    "relay on a network you trust (a loopback host needs neither)"
)
