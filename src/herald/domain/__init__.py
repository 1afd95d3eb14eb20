"""The domain: events, user profiles, decisions and time. No I/O; beyond the standard
library only orjson, for the canonical JSON that fingerprints an event."""
