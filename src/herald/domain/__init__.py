"""The domain: events, user profiles and decisions. Standard library only, no I/O."""
