"""Personal data and secrets stay out of logs: addresses, phone numbers and the
passwords in URLs are masked."""

from __future__ import annotations

import re

from herald.domain.recipients import mask_recipient

__all__ = ["hide_url_passwords", "mask_recipient", "mask_text"]

# Letters of any script, as an address may hold them (`josé@exemplo.pt`, `maria@münchen.de`).
_EMAIL = re.compile(r"([\w.%+-])[\w.%+-]*@([\w.-]+\.[^\W\d_]{2,})")
# A phone number in E.164 form, or a run of 9+ digits; dates and times don't match.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{6,14}|\d{7,13})(\d{2})(?!\w)")
# `scheme://user:password@host`, up to the last "@" before the path: a password typed
# with an unescaped "@" is hidden whole, and a port (`host:8080/`) is not a password.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/\s]*@")


def hide_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:password@``)
    replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", text) if "://" in text else text


def mask_text(text: str) -> str:
    """Mask every email address, phone-number-like run of digits and URL password in
    free text."""
    if "@" in text:  # the address pattern is slow to rule out; most lines have no "@"
        text = _EMAIL.sub(r"\1***@\2", hide_url_passwords(text))
    return _PHONE.sub(r"***\1", text)
