"""The statuses of a message in the outbox, as stored."""

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
# Not sent, for good: the user unsubscribed or was forgotten, or an operator cancelled
# the message's rule, while it waited (or as its attempt ended).
CANCELLED = "cancelled"
# The body of a message redacted by a prune (kept for its limit) or by forgetting its user.
REDACTED = "(pruned)"
