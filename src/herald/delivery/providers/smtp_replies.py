"""What an SMTP server's reply means for a message: 5xx will be refused again, and fails;
anything else (4xx, or a reply that cannot be read) may pass, and is retried."""

from __future__ import annotations

from herald.delivery.provider import DeliveryResult


def classify_reply(code: int, error: bytes | str, prefix: str = "") -> DeliveryResult:
    """The outcome of a send the server answered ``code`` and ``error``, said after ``prefix``."""
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    detail = f"{prefix}SMTP {code}: {' '.join(text.split())[:200]}"
    if 500 <= code < 600:
        return DeliveryResult.failed(detail)
    # 4xx is "try again later" by definition; anything odd (e.g. -1 for an
    # unreadable greeting) is treated the same rather than losing the message.
    return DeliveryResult.retry(detail)


def classify_refused(recipients: dict[str, tuple[int, bytes]]) -> DeliveryResult:
    """The outcome of a send whose recipient the server refused, naming the address."""
    address, (code, error) = next(iter(recipients.items()))
    return classify_reply(code, error, prefix=f"{address} refused: ")
