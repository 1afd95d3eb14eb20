"""Recipients as operators see them, in decisions and in logs: a hint, never the whole
address or number."""

from __future__ import annotations

INTERNAL_RECIPIENT = "internal"  # an internal alert's recipient: the team, not a person

_SHOWN_DIGITS = 2  # a phone number's last two characters


def mask_recipient(value: str) -> str:
    """``value`` down to a hint: an email address keeps its first character and its
    domain (``m***@example.com``), anything else its last two characters (``***78``),
    or none (``***``) when it has no more than two; ``internal`` stays as it is."""
    if value == INTERNAL_RECIPIENT:
        return value
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"***{value[-_SHOWN_DIGITS:]}" if len(value) > _SHOWN_DIGITS else "***"
