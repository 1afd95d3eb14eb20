"""Any one setting changed to any value builds a plan or fails with a config error that
names where, never another exception."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from herald.delivery.setup import DeliveryConfigError
from tests.support.delivery_config import FULL, build, changed


def places(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    if isinstance(node, dict):
        for key, child in node.items():
            found.append((*prefix, key))
            found += places(child, (*prefix, key))
    return found


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["stub", "log", "smtp", "webhook", "http://x", "25:00", "SMTP_USER"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(path=st.sampled_from(places(FULL)), value=values)
@settings(max_examples=300, deadline=None)
def test_any_one_setting_changed_builds_or_fails_with_a_config_error(
    path: tuple[str, ...], value: Any
) -> None:
    try:
        build(changed(path, value))
    except DeliveryConfigError as exc:
        # The operator is told where: the provider or delivery setting that was changed.
        named = path[1] if len(path) > 1 else path[0]
        assert exc.problems and any(named in p for p in exc.problems), (path, exc.problems)
