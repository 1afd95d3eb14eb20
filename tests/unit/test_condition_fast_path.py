"""Plain comparisons are decided without the CEL library; they must mean exactly what CEL
says they mean, including the explanation that ends up in the audit."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.rules.conditions.comparison import parse_comparison
from herald.rules.conditions.condition import Condition

OPERATORS = ("==", "!=", "<", "<=", ">", ">=")
plain_text = st.text(
    alphabet=st.characters(blacklist_characters='"\\', blacklist_categories=("Cs", "Cc")),
    max_size=8,
)
literals = st.one_of(
    st.booleans().map(lambda b: "true" if b else "false"),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.6f}"),
    plain_text.map(lambda s: f'"{s}"'),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    plain_text,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(plain_text, st.integers(), max_size=2),
)
MISSING = object()


def context_with(path: str, value: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"event": {"type": "payment_failed", "properties": {}}, "user": {}}
    if value is MISSING:
        return context
    node = context
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return context


@settings(max_examples=600, deadline=None)
@given(
    path=st.sampled_from(["event.properties.amount", "user.marketing_opt_in", "user.country"]),
    op=st.sampled_from(OPERATORS),
    literal=literals,
    value=st.one_of(values, st.just(MISSING)),
)
def test_fast_path_agrees_with_cel(path: str, op: str, literal: str, value: Any) -> None:
    condition = Condition(f"{path} {op} {literal}")
    context = context_with(path, value)
    assert condition.evaluate(context) == condition.evaluate_in_cel(context)


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(OPERATORS),
    literal=literals,
    sent=st.lists(st.one_of(values, st.sampled_from([0.0, -0.0, 0, False, ""])), max_size=8),
)
def test_one_condition_explains_each_event_as_cel_does_whatever_came_before(
    op: str, literal: str, sent: list[Any]
) -> None:
    # A condition remembers what it decided for a value: events repeating an equal value
    # (0.0 after -0.0, 1 after true) must still read as CEL reads each.
    condition = Condition(f"event.properties.amount {op} {literal}")
    for value in [*sent, *sent]:
        context = context_with("event.properties.amount", value)
        assert condition.evaluate(context) == condition.evaluate_in_cel(context)


@pytest.mark.parametrize(
    "source",
    [
        'event.properties.failure_reason == "INSUFFICIENT_FUNDS"',
        "event.properties.attempt_number >= 3",
        "user.marketing_opt_in == true",
        "event.properties.amount < -1.5",
    ],
)
def test_the_default_rules_shapes_take_the_fast_path(source: str) -> None:
    assert parse_comparison(source) is not None


@pytest.mark.parametrize(
    "source",
    [
        "event.properties.attempt_number >= 3 && user.country == 'PT'",
        "size(event.properties) > 1",
        'user.country == "P\\"T"',
        "3 <= event.properties.attempt_number",
        "event.properties.amount > 1e5",
    ],
)
def test_anything_else_goes_to_cel(source: str) -> None:
    assert parse_comparison(source) is None


def test_a_missing_field_explains_itself_as_cel_does() -> None:
    condition = Condition("event.properties.attempt_number >= 3")
    result = condition.evaluate({"event": {"properties": {}}, "user": {}})
    assert not result.holds
    assert "could not be evaluated" in result.explanation
    assert "attempt_number" in result.explanation


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ([True, None], "[true,null]"),
        ({"plan": "pro"}, '{"plan":"pro"}'),
        ('say "hi"', '"say \\"hi\\""'),
    ],
)
def test_a_value_in_an_explanation_is_shown_as_json_as_the_client_sent_it(
    value: Any, shown: str
) -> None:
    result = Condition("user.marketing_opt_in == true").evaluate(
        {"event": {}, "user": {"marketing_opt_in": value}}
    )

    assert result.explanation.endswith(f"(user.marketing_opt_in is {shown})")


@pytest.mark.parametrize(
    "source",
    ['event.properties.reason == "INSUFFICIENT_FUNDS"', 'event.properties.reason.startsWith("X")'],
    ids=["fast_path", "cel"],
)
def test_a_long_value_in_an_explanation_is_cut_short_saying_its_length(source: str) -> None:
    # Shown whole, a client's 1 MiB string was stored again in every decision reading it.
    reason = "X" * 500_000

    result = Condition(source).evaluate({"event": {"properties": {"reason": reason}}, "user": {}})

    assert result.explanation.endswith(
        f'(event.properties.reason is "{"X" * 199}... (500,002 characters))'
    )


TAGGED = {"event": {"properties": {"tags": ["new", "vip"]}}, "user": {"id": "u_1", "vip": True}}


@pytest.mark.parametrize(
    "source",
    [
        'event.properties.tags.exists(t, t == "vip")',
        "event.properties.tags.all(t, size(t) > 0)",
        'event.properties.tags.exists_one(t, t == "new")',
        'event.properties.tags.filter(t, t != "new").size() == 1',
    ],
)
def test_cel_macros_with_their_own_variable_load_and_hold(source: str) -> None:
    # The iteration variable is CEL's own, not an unknown one like `customer.plan`.
    assert Condition(source).evaluate(TAGGED).holds


@pytest.mark.parametrize(
    "source", ["user.size() == 2", 'user.exists(trait, trait == "vip")', "event.size() == 1"]
)
def test_a_method_or_macro_called_on_a_variable_sees_all_of_it(source: str) -> None:
    # `user.size()` is a call on the map, not a trait called `size`.
    assert Condition(source).evaluate(TAGGED).holds
