"""The contract between the dispatcher and a channel provider.

A provider turns one ``SendRequest`` into one attempt at the outside world and
reports how it went as a ``DeliveryResult``. It never raises for a delivery
failure: the dispatcher decides about retries from the result's ``status``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from herald.domain.immutable import immutable


@immutable
class SendRequest:
    """One message as a provider sees it.

    ``message_id`` is stable across attempts: providers pass it on as an
    idempotency key so that a retried delivery is not delivered twice. ``attempt``
    counts from 1 (again after a dead letter is re-queued); it is not sent on, only
    said where a repeat cannot be dropped by its key (the log line of an alert).
    ``unsubscribe_url``: the link that unsubscribes the user from marketing on this
    channel, for a marketing message when Herald makes such links (else None).
    """

    message_id: str
    channel: str
    recipient: str
    rule: str
    dedup_key: str
    user_id: str
    event_id: str
    subject: str
    body: str
    html: str | None = None
    category: str = "transactional"
    attempt: int = 1
    unsubscribe_url: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "channel": self.channel,
            "recipient": self.recipient,
            "rule": self.rule,
            "dedup_key": self.dedup_key,
            "user_id": self.user_id,
            "event_id": self.event_id,
            "subject": self.subject,
            "body": self.body,
            "html": self.html,
            "category": self.category,
        }


class DeliveryStatus(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # transient: connection error, timeout, 5xx, 408/429, SMTP 4xx
    FAILED = "failed"  # permanent: other 4xx, SMTP 5xx, bad recipient


@immutable
class DeliveryResult:
    """``retry_after``: for a retry, the seconds the receiver asked to be left alone
    (HTTP ``Retry-After``); the next attempt waits at least that long, up to the
    policy's longest backoff."""

    status: DeliveryStatus
    detail: str = ""
    provider_reference: str | None = None
    retry_after: float | None = None

    def described(self) -> str:
        """What the audit keeps of this attempt: the detail, with the provider's own
        reference for the message when it gave one (to find it in the provider's logs)."""
        if self.provider_reference:
            return f"{self.detail} (reference {self.provider_reference})"
        return self.detail

    @classmethod
    def sent(cls, detail: str = "", reference: str | None = None) -> DeliveryResult:
        return cls(DeliveryStatus.SENT, detail, reference)

    @classmethod
    def retry(cls, detail: str, after: float | None = None) -> DeliveryResult:
        return cls(DeliveryStatus.RETRY, detail, retry_after=after)

    @classmethod
    def failed(cls, detail: str) -> DeliveryResult:
        return cls(DeliveryStatus.FAILED, detail)


class Provider(Protocol):
    """A channel provider (stub, SMTP, webhook, ...)."""

    name: str
    # True for a provider whose send never waits on anything outside the process (a local
    # file, the log): the dispatcher then sends in turn instead of concurrently.
    local: bool

    @property
    def target(self) -> str:
        """Where it sends, for the operator: a file, the log, a host. Never a secret: a
        webhook's path and query, which often carry its token, are left out."""
        ...

    async def send(self, request: SendRequest) -> DeliveryResult:
        """Attempt one delivery. Must not raise for delivery failures."""
        ...

    async def aclose(self) -> None:
        """Release connections; called once, when the process's runtime stops."""
        ...
