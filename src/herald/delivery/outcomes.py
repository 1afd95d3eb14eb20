"""What a dispatch round makes of each message it claimed, and of the round as a whole."""

from __future__ import annotations

from dataclasses import dataclass

from herald.delivery.provider import DeliveryResult
from herald.domain.immutable import immutable
from herald.store.outbox import ClaimedMessage


@immutable
class Deferred:
    """Why a claimed message goes back unsent, without counting an attempt."""

    reason: str


@immutable
class Withdrawn:
    """Why a claimed marketing message is cancelled unsent: the user closed its channel
    to marketing after it was decided."""

    reason: str


@immutable
class Outcome:
    """What became of one claimed message this round: the provider's result, or why it
    goes back unsent; ``delay``: seconds until it is due again (a retry, a deferral),
    counted from ``decided_at`` (Unix seconds, the dispatcher's clock), or from when the
    round is recorded when None."""

    row: ClaimedMessage
    result: DeliveryResult | Deferred | Withdrawn
    delay: float = 0.0
    decided_at: float | None = None

    def due_us(self, recorded_us: int) -> int:
        """When the message is due again, in microseconds, for a round recorded at
        ``recorded_us``."""
        start = recorded_us if self.decided_at is None else round(self.decided_at * 1_000_000)
        return start + int(self.delay * 1_000_000)

    @property
    def status(self) -> str:
        """sent, retry or failed (the provider's word), deferred or cancelled."""
        if isinstance(self.result, Deferred):
            return "deferred"
        if isinstance(self.result, Withdrawn):
            return "cancelled"
        return self.result.status.value


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """How many messages a round claimed, and what became of them."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    cancelled: int = 0
