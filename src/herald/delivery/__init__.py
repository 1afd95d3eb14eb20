"""Delivery: the outbox dispatcher and the channel providers it sends through."""
