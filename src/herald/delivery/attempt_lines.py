"""What a dispatcher says of the attempts it records: each counted (``on_result``, the
metrics), a dead letter on a line of its own, a retry added to its round's one line, a
cancel that ended a message being sent; and the one line that explains a repeat, when a
round's outcomes could not be recorded before their claims ran out."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from herald.delivery.outcomes import Outcome
from herald.delivery.provider import DeliveryStatus
from herald.delivery.round_retries import RoundRetries
from herald.store.outbox import ClaimedMessage

# Its lines are the dispatcher's, under the same name, which operators filter on.
log = logging.getLogger("herald.delivery.dispatcher")


class AttemptLines:
    """Counts each recorded attempt through ``on_result`` and logs it."""

    def __init__(self, on_result: Callable[[str, DeliveryStatus], None]) -> None:
        self._on_result = on_result

    def recorded(
        self,
        row: ClaimedMessage,
        status: DeliveryStatus,
        detail: str | None,
        retries: RoundRetries,
        due_us: int,
    ) -> None:
        """Count ``row``'s recorded outcome; log a dead letter on a line of its own, each
        a message lost until an operator re-queues it, and a retry at DEBUG, added to
        ``retries`` (due again at ``due_us``) to be said with the round's others."""
        self._on_result(row.channel, status)
        about = message_fields(row)
        if status is DeliveryStatus.FAILED:
            # Its rule and user too: an operator deciding whether to re-queue it asks both.
            log.error(
                "message %s (%s for user %s) dead-lettered: %s",
                row.message_id,
                row.rule,
                row.user_id,
                detail,
                extra=about,
            )
        elif status is DeliveryStatus.RETRY:
            log.debug("message %s will be retried: %s", row.message_id, detail, extra=about)
            retries.add(row, detail or "", due_us)

    def cancelled(
        self, row: ClaimedMessage, status: DeliveryStatus, detail: str | None, reason: str
    ) -> None:
        """Count ``row``'s recorded attempt, and log that its rule's cancel (``reason``),
        asked while it was being sent, ended the message rather than a retry or a dead
        letter."""
        self._on_result(row.channel, status)  # the attempt's own result: metrics count attempts
        log.info(
            "message %s cancelled, not sent: %s (its attempt: %s)",
            row.message_id,
            reason,
            detail,
            extra=message_fields(row),
        )


def say_unrecorded(outcomes: list[Outcome]) -> None:
    """Say that ``outcomes`` could not be recorded before their claims ran out, and that
    the sent ones among them will be sent again: the one line that explains a recipient's
    repeat, which the dispatcher that sends it again can only call "interrupted"."""
    if not outcomes:
        return
    by_status = Counter(outcome.status for outcome in outcomes)
    sent = [outcome.row.message_id for outcome in outcomes if outcome.status == "sent"]
    log.error(
        "could not record the outcomes of %d message(s) (%s) before their claims ran out: "
        "they will be claimed and sent again, with the same message ids; %s",
        len(outcomes),
        ", ".join(f"{count} {status}" for status, count in sorted(by_status.items())),
        f"sent already, so sent twice unless the provider drops the repeat: {', '.join(sent)}"
        if sent
        else "none was sent",
        extra={"message_ids": sent},
    )


def message_fields(row: ClaimedMessage) -> dict[str, str]:
    # As fields too, as the stub's and the alerts' lines have them: a JSON log is searched
    # by message, not by the words of a line.
    return {
        "message_id": row.message_id,
        "channel": row.channel,
        "rule": row.rule,
        "user_id": row.user_id,
    }
