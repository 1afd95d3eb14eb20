"""How large a user's traits may grow, and how much an event's traits grow them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

# The most a user's traits may hold, as compact JSON (about: each separator counts), and
# their names: every event reads, copies and rewrites its user's whole profile, so one
# grown without bound by events of new trait names made each later event of that user cost
# seconds, and a batch of them minutes, with the write lock held. Bytes: one event's worth,
# as POST /events takes; names: past what an app declares, and few enough that copying
# them for each event costs microseconds (60,000 short ones in 1 MiB cost 5 ms an event).
MAX_PROFILE_BYTES = 1024 * 1024
MAX_PROFILE_TRAITS = 1_000


def entry_size(key: str, value: Any) -> int:
    """Bytes of ``"key":value,`` in compact JSON."""
    return len(orjson.dumps(key)) + len(orjson.dumps(value)) + 2


_ABSENT = object()


def growth_of(before: Mapping[str, Any], after: Mapping[str, Any], sent: Mapping[str, Any]) -> int:
    """How many bytes of JSON the traits ``sent`` add to a profile's, ``before`` merging
    them and ``after`` (negative when they shrink it)."""
    growth = 0
    for key in sent:
        old, new = before.get(key, _ABSENT), after[key]
        if new is not old:
            growth += entry_size(key, new)
            if old is not _ABSENT:
                growth -= entry_size(key, old)
    return growth
