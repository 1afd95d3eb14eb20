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


def json_size(traits: Mapping[str, Any]) -> int:
    """Bytes of ``traits`` as compact JSON."""
    return len(orjson.dumps(traits, option=orjson.OPT_NON_STR_KEYS))


_ABSENT = object()


def growth_of(before: Mapping[str, Any], after: Mapping[str, Any], sent: Mapping[str, Any]) -> int:
    """How many bytes of JSON the traits ``sent`` add to a profile's, ``before`` merging
    them and ``after`` (negative when they shrink it)."""
    added: dict[str, Any] = {}
    replaced: dict[str, Any] = {}
    for key in sent:
        old, new = before.get(key, _ABSENT), after[key]
        # Most events send again the traits the profile holds: equal, they change nothing,
        # and a comparison costs far less than writing them as JSON.
        if new is old or (type(new) is type(old) and new == old):
            continue
        added[key] = new
        if old is not _ABSENT:
            replaced[key] = old
    if not added:
        return 0
    # Written together, once each: one call per trait cost 3% of an event's ingestion.
    return json_size(added) - (json_size(replaced) if replaced else 2)
