"""Rules: the declarative rule file, its loader and the pure engine that applies it."""
