"""The statuses of a message in the outbox, as stored."""

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
CANCELLED = "cancelled"  # not sent, for good: the user unsubscribed while it waited
REDACTED = "(pruned)"  # the body of a message a prune redacted
