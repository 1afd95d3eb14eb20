"""The token of an unsubscribe link: who it unsubscribes, from which channel, and an
HMAC-SHA256 that only the holder of the key could have made.

A token is ``<payload>.<mac>``, each base64url without padding; the payload is the
channel, a NUL and the user id, in UTF-8 (no user id holds U+0000, and no channel name
does, so the split is unambiguous). It never expires: a link in an email read months
later must still work, and it can do nothing but unsubscribe the user it names."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from herald.domain.immutable import immutable

# Where the API answers a link: the public URL, this, and the token.
LINK_PATH = "/unsubscribe/"
# Keeps a MAC of this kind from ever being taken for one the same key made for another use.
_PURPOSE = b"herald unsubscribe link v1\x00"


@immutable
class Unsubscriber:
    """The user and channel a valid token names."""

    user_id: str
    channel: str


@immutable
class UnsubscribeLinks:
    """The links of one Herald: its public base URL (no trailing slash) and its key."""

    base_url: str
    key: str

    def url(self, user_id: str, channel: str) -> str:
        """The link that unsubscribes ``user_id`` from marketing on ``channel``."""
        return f"{self.base_url}{LINK_PATH}{unsubscribe_token(self.key, user_id, channel)}"


def unsubscribe_token(key: str, user_id: str, channel: str) -> str:
    """The token for ``user_id`` on ``channel``, the same at every call."""
    payload = f"{channel}\x00{user_id}".encode()
    return f"{_encoded(payload)}.{_encoded(_mac(key, payload))}"


def read_token(key: str, token: str) -> Unsubscriber | None:
    """Whom ``token`` unsubscribes, or None for one this key did not make (forged,
    altered, cut short, or not a token at all): the caller is told nothing of why."""
    payload_part, dot, mac_part = token.partition(".")
    payload, mac = _decoded(payload_part), _decoded(mac_part)
    if not dot or payload is None or mac is None:
        return None
    if not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    channel, nul, user_id = payload.decode("utf-8").partition("\x00")
    return Unsubscriber(user_id, channel) if nul and user_id and channel else None


def _mac(key: str, payload: bytes) -> bytes:
    return hmac.new(key.encode(), _PURPOSE + payload, hashlib.sha256).digest()


def _encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decoded(part: str) -> bytes | None:
    """``part`` decoded, or None unless it is the very text ``_encoded`` writes: one
    spelling per token, so that a token matches itself alone."""
    if not part or not part.isascii():
        return None
    try:
        raw = base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if _encoded(raw) == part else None
