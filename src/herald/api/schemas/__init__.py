"""The HTTP contract: request and response bodies, kept apart from the tables."""
