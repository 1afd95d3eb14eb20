"""Recipients: what a recipient trait must look like to be sent to (one plain email
address, or one phone number), and how operators see one, in decisions and logs (a
hint, never the whole address or number).

Deliberately simpler than RFC 5322: a trait is the client's value, and an address with a
display name, a comment or a second address in it would be read one way by the mail
server (the envelope) and another by the reader (the ``To`` header)."""

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


# Quoting, comments and routes (RFC 5322) that no plain address needs.
_EMAIL_SPECIALS = ';:"()[]\\'
_EMAIL_SPECIAL_SET = frozenset(_EMAIL_SPECIALS)
_PHONE_SEPARATORS = " ().-"
_DIGITS = "0123456789"
# E.164 numbers have at most 15 digits; short codes have a few.
PHONE_DIGITS = (3, 15)


def email_problem(value: str) -> str | None:
    """Why ``value`` is not one plain address (``local@domain``: no display name, no
    comma, no whitespace, one ``@``), or None when it is."""
    if "," in value:
        return "has a comma: one address only"
    if "<" in value or ">" in value:
        return "has a display name or angle brackets"
    # A plain address has none of the characters the loop looks for one by one, in Python:
    # told first in C (the one printable whitespace is the space), it costs about 6,500
    # instructions less. When it has one, the loop finds the first, whose problem is said.
    if not (value.isprintable() and " " not in value and _EMAIL_SPECIAL_SET.isdisjoint(value)):
        for char in value:
            if char.isspace():
                return "has whitespace"
            if not char.isprintable():
                return "has a control character"
            if char in _EMAIL_SPECIALS:
                return f"has a `{char}`"
    local, at, domain = value.partition("@")
    if not at:
        return "has no @"
    if "@" in domain:
        return "has more than one @"
    if not local:
        return "has nothing before the @"
    if not domain:
        return "has nothing after the @"
    return None


def phone_problem(value: str) -> str | None:
    """Why ``value`` is not one phone number (digits, an optional leading ``+``, and
    spaces, dots, dashes or parentheses between them), or None when it is."""
    if value != value.strip():
        return "starts or ends with whitespace"
    for char in value:
        if not char.isprintable():
            return "has a control character"
        if char not in _DIGITS and char not in _PHONE_SEPARATORS and char != "+":
            return f"has a `{char}`"
    if "+" in value[1:]:
        return "has a + that does not start it"
    digits = sum(char in _DIGITS for char in value)
    fewest, most = PHONE_DIGITS
    if not fewest <= digits <= most:
        return f"has {digits} digits, not {fewest} to {most}"
    return None
