"""Personal data stays out of logs: addresses and phone numbers are masked."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# A phone number in E.164 form, or a run of 9+ digits; dates and times don't match.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{6,14}|\d{7,13})(\d{2})(?!\w)")


def mask_recipient(value: str) -> str:
    if value == "internal":
        return value
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"***{value[-2:]}" if len(value) > 2 else "***"


def mask_text(text: str) -> str:
    """Mask every email address and phone-number-like run of digits in free text."""
    if "@" in text:  # the address pattern is slow to rule out; most lines have no "@"
        text = _EMAIL.sub(r"\1***@\2", text)
    return _PHONE.sub(r"***\1", text)
