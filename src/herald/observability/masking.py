"""Personal data and secrets stay out of logs: addresses, phone numbers and the
passwords in URLs are masked."""

from __future__ import annotations

import re

from herald.domain.recipients import mask_recipient

__all__ = ["hide_url_passwords", "mask_recipient", "mask_text"]

# Letters of any script, as an address may hold them (`josé@exemplo.pt`, `maria@münchen.de`).
# A match starts only where a run of such characters starts: tried from every character
# of a long run with no "@" after it, the pattern read the rest of the run each time, and
# a 200 KB property value in an alert line held up delivery for a minute.
_EMAIL = re.compile(r"(?<![\w.%+-])([\w.%+-])[\w.%+-]*@([\w.-]+\.[^\W\d_]{2,})")
# A phone number as a recipient may be written: digits, an optional leading "+", and
# spaces, dashes or parentheses between them (`+351 912 345 678`, `(555) 123-4567`).
# Bounded, so that a long line costs no more than a few steps per character; whether a
# match is a number is for its count of digits to say (`_phone_masked`), so dates and
# times (8 digits at most before a "T", or a space and a time) are left alone.
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d(?:[ ()-]{0,2}\d){2,18}(?!\w|:\d)")
# A phone number written with dots alone between its groups (`555.123.4567`,
# `+33.6.12.34.56.78`), as a recipient may be: apart from the pattern above, whose
# separators take no dot, so that an amount (`1234567.89`) stays whole. Three to six
# groups of four digits at most, never part of a longer dotted run, and masked by their
# count of digits as above (a dotted date has too few); an IPv4 address, four groups of
# three digits at most, is left alone (`_dotted_phone_masked`).
_DOTTED_PHONE = re.compile(r"(?<![\w+.])\+?\d{1,4}(?:\.\d{1,4}){2,5}(?!\w|[.:]\d)")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# `scheme://user:password@host`, up to the last "@" before the path: a password typed
# with an unescaped "@" is hidden whole, and a port (`host:8080/`) is not a password.
# Starts where a run of scheme characters starts, for the reason given for addresses.
_URL_PASSWORD = re.compile(r"((?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/\s]*@")


def hide_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it (``scheme://user:password@``)
    replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", text) if "://" in text else text


def mask_text(text: str) -> str:
    """Mask every email address, phone-number-like run of digits and URL password in
    free text."""
    if "@" in text:  # the address pattern is slow to rule out; most lines have no "@"
        text = _EMAIL.sub(r"\1***@\2", hide_url_passwords(text))
    if "." in text:
        text = _DOTTED_PHONE.sub(_dotted_phone_masked, text)
    return _PHONE.sub(_phone_masked, text)


def _phone_masked(match: re.Match[str]) -> str:
    """A number of 9 to 15 digits (8 to 16 after a "+", as E.164 writes them) down to its
    last two; anything shorter or longer as it was."""
    found = match.group()
    digits = [char for char in found if char.isdigit()]
    fewest, most = (8, 16) if found.startswith("+") else (9, 15)
    return f"***{''.join(digits[-2:])}" if fewest <= len(digits) <= most else found


def _dotted_phone_masked(match: re.Match[str]) -> str:
    """A dotted number masked as a phone number is, unless it is an IPv4 address."""
    return match.group() if _IPV4.fullmatch(match.group()) else _phone_masked(match)
