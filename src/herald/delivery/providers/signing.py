"""Webhook signatures: how a receiver knows a request came from Herald, unaltered.

Every webhook request carries a header; for the secret ``b"whsec_example"``
and the body ``{"message_id":"m-1"}`` signed at 1718000000 it reads::

  Herald-Signature: t=1718000000,v1=37cb32798bf0646e75be7128dcbed002798014b74f5dfc9f162a4c11e02e1892

``t`` is the Unix time in seconds when Herald signed the request and ``v1`` is
the lowercase hex HMAC-SHA256, keyed with the shared secret, of the bytes
``b"<t>." + body``, where body is the raw request body exactly as received.

To verify a request, a receiver:

1. reads the raw body bytes *before* parsing the JSON (re-serialising changes
   the bytes and breaks the signature);
2. splits the header on ``,`` and each part on the first ``=``; takes ``t`` and
   every ``v1`` value (more than one may be present while a secret is rotated;
   unknown keys are ignored, so new schemes can be added);
3. computes ``hex(hmac_sha256(secret, f"{t}.".encode() + body))`` and compares
   it with each ``v1`` value in constant time (``hmac.compare_digest``);
4. rejects the request unless one matches and ``|now - t|`` is at most a
   tolerance (300 seconds here), so that a captured request cannot be replayed
   later. The ``Idempotency-Key`` header then de-duplicates retries.

``verify`` below does exactly this and can be copied into a receiver.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Herald-Signature"
SCHEME = "v1"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body`` keyed by ``secret``.

    ``timestamp`` is Unix time in whole seconds.
    """
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret, signed, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The value of the ``Herald-Signature`` header: ``t=<timestamp>,v1=<hex>``."""
    return f"t={timestamp},{SCHEME}={sign(secret, timestamp, body)}"


def verify(secret: bytes, header_value: str, body: bytes, now: int, tolerance: int = 300) -> bool:
    """True when ``header_value`` is a valid, fresh signature of ``body`` under ``secret``.

    Args:
        secret: the shared secret.
        header_value: the ``Herald-Signature`` header as received.
        body: the raw request body bytes as received.
        now: the receiver's current Unix time in seconds.
        tolerance: largest accepted ``|now - t|`` in seconds; a timestamp
            further in the past (a replay) or the future (a skewed clock) fails.

    Never raises: a malformed header is simply not valid.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header_value.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    # Check every candidate, without stopping early, so that timing does not
    # reveal which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode("ascii", "replace"))
    return matched
