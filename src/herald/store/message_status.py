"""The statuses of a message in the outbox, as stored."""

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
# Not sent, for good: the user unsubscribed or was forgotten, or an operator cancelled
# the message's rule, while it waited (or as its attempt ended).
CANCELLED = "cancelled"
# The body of a message redacted by a prune (kept for its limit) or by forgetting its
# user: each says which, for a support agent reading the audit.
PRUNED = "(pruned)"
FORGOTTEN = "(forgotten at the user's request)"
REDACTED = (PRUNED, FORGOTTEN)
# Messages on their way, and dead letters an operator may re-queue: what the outbox gauge
# shows, few however long Herald runs. (Retention counts a dead letter as finished: no
# dispatcher sends it again.)
OPEN = (PENDING, SENDING, FAILED)
