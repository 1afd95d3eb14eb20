"""A rule file wrong in its rules and in its delivery settings at once, and the problems
`herald rules check`, `herald serve` and `herald worker` must all list, in this order."""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

BROKEN_RULES_AND_DELIVERY = """
events:
  signup_completed: {}
rules:
  - {id: NO_TRIGGER, trigger: signup_exploded, channel: internal}
  - {id: BY_FAX, trigger: signup_completed, channel: fax}
  - {id: SOMETIMES, trigger: signup_completed, channel: internal, limit: sometimes}
  - {id: MISSPELT, trigger: signup_completed, channel: internal, when: user.plann == "pro"}
providers:
  email: {type: smtp, host: smtp.example.com, port: 99999, sender: hello}
  sms: {type: webhook, url: sms.example.com/send, secret_env: HERALD_TEST_UNSET_SECRET}
delivery:
  max_attempts: 0
  quiet_hours: {sms: {start: '25:00', end: '08:00'}}
"""

# The start of each line, rules first, then providers and delivery, as in the file.
EVERY_PROBLEM = [
    "rule NO_TRIGGER: `trigger: signup_exploded` is not a declared event type",
    "rule BY_FAX: unknown channel 'fax'",
    "rule SOMETIMES: unknown limit 'sometimes'",
    'rule MISSPELT: `when: user.plann == "pro"` uses user.plann, which the rule file does not',
    "providers.email.port: must be a whole number from 1 to 65535, got 99999",
    "providers.email: `sender` must be an email address like hello@example.com, got 'hello'",
    "providers.sms: `url` must be an http:// or https:// URL",
    "providers.sms: environment variable HERALD_TEST_UNSET_SECRET (for secret) is not set",
    "delivery.max_attempts: must be a whole number of at least 1, got 0",
    "delivery.quiet_hours.sms.start: '25:00' is not a time like 21:00",
]


def write_broken_rule_file(directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(BROKEN_RULES_AND_DELIVERY, encoding="utf-8")
    return path


def listed_problems(output: str) -> list[str]:
    """The problems a command listed, one a line under the file's name."""
    return [line[4:] for line in output.splitlines() if line.startswith("  - ")]


def beginnings(listed: list[str]) -> list[str]:
    """Each listed problem cut to the length of the one expected in its place, so that
    ``beginnings(listed) == EVERY_PROBLEM`` shows what differs when it fails."""
    pairs = zip_longest(listed, EVERY_PROBLEM, fillvalue="")
    return [line[: len(wanted) or None] for line, wanted in pairs]
