"""A condition whose work the size of a client's values squares (`map`, `filter`, `+` of a
value bound before a loop, in it) is weighed on each event before CEL runs it, and its
rule skipped, saying so, when it would take more than a condition may: it has no time
limit, and on SQLite it is decided on the thread that answers requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.domain.model import Outcome
from herald.rules.conditions.size import MAX_CONDITION_STEPS, costly_loops
from herald.rules.loader import load_ruleset
from tests.support.engine_replay import event as an_event
from tests.support.engine_replay import replay, the_one

ITEMS = ("event", "properties", "items")
NOTE = ("event", "properties", "note")

# Each form weighed: the part shown, the values it goes through and those it copies.
WEIGHED = {
    "a_map_over_an_event_list": (
        "event.properties.items.map(i, i * 2).exists(n, n > 9)",
        "event.properties.items.map(i, ...)",
        (ITEMS,),
        (ITEMS,),
    ),
    "a_filter_over_a_trait_list": (
        'user.tags.filter(t, t.startsWith("v")).size() > 2',
        "user.tags.filter(t, ...)",
        (("user", "tags"),),
        (("user", "tags"),),
    ),
    "a_map_with_a_filter_of_its_own": (
        "event.properties.items.map(i, i > 0, i).size() > 2",
        "event.properties.items.map(i, ...)",
        (ITEMS,),
        (ITEMS,),
    ),
    "a_map_over_each_item_s_own_list": (
        'event.properties.items.exists(i, i.tags.map(t, t + "!").size() > 2)',
        "i.tags.map(t, ...)",
        ((*ITEMS, "[]", "tags"),),
        ((*ITEMS, "[]", "tags"),),
    ),
    "a_map_over_two_lists_joined": (
        "(event.properties.items + user.tags).map(x, x).size() > 2",
        "(event.properties.items + user.tags).map(x, ...)",
        (ITEMS, ("user", "tags")),
        (ITEMS, ("user", "tags")),
    ),
    "a_string_bound_before_a_loop_and_joined_in_it": (
        "[event.properties.note].exists(n, event.properties.items.exists(x, (n + x).size() > 9))",
        "n + x",
        (ITEMS,),
        (NOTE,),
    ),
    "a_list_bound_before_a_loop_and_joined_in_it": (
        "[event.properties.items].exists(n, user.tags.all(t, (n + [t]).size() > 1))",
        "n + [t]",
        (("user", "tags"),),
        (ITEMS,),
    ),
    "an_item_s_string_joined_in_a_loop_over_its_own_list": (
        "event.properties.items.exists(i, i.tags.exists(t, (t + i.note).size() > 9))",
        "t + i.note",
        ((*ITEMS, "[]", "tags"),),
        ((*ITEMS, "[]", "note"),),
    ),
}

NOT_WEIGHED = {
    "exists_all_and_exists_one_go_through_a_list_once": (
        "event.properties.items.exists(i, i > 3) && user.tags.all(t, t != 'x') "
        "&& user.tags.exists_one(t, t == 'y')"
    ),
    "a_map_over_a_list_written_in_the_rule": '["a", "b"].map(k, k + "!").size() == 2',
    "a_join_of_the_item_alone": 'user.tags.exists(t, t + "!" == "vip!")',
    "a_join_of_a_name_bound_in_the_loop_to_the_item_s_value": (
        'event.properties.items.exists(i, [i.note].exists(n, (n + "!").size() > 2))'
    ),
    "a_join_outside_any_loop": "(event.properties.note + user.name).size() > 9",
    "a_value_bound_before_a_loop_and_compared_in_it": (
        "[event.properties.note].exists(n, event.properties.items.exists(x, x == n))"
    ),
    "a_comparison": "event.properties.amount > 3 && user.plan == 'pro'",
}


@pytest.mark.parametrize(
    ("condition", "shown", "over", "copied"), list(WEIGHED.values()), ids=list(WEIGHED)
)
def test_a_form_whose_work_a_client_s_sizes_square_is_weighed(
    condition: str, shown: str, over: tuple[tuple[str, ...], ...], copied: tuple[str, ...]
) -> None:
    [loop] = costly_loops(condition)

    assert (loop.shown, loop.over, loop.copied) == (shown, over, copied)


@pytest.mark.parametrize("condition", list(NOT_WEIGHED.values()), ids=list(NOT_WEIGHED))
def test_a_condition_whose_work_is_linear_in_the_event_is_not_weighed(condition: str) -> None:
    assert costly_loops(condition) == ()


def test_a_filter_then_a_map_over_its_result_is_weighed_once() -> None:
    [loop] = costly_loops("event.properties.items.filter(i, i > 0).map(i, i).size() > 1")

    assert loop.shown == "event.properties.items.filter(i, ...)"


def test_a_loop_over_each_item_s_list_counts_all_their_items_times_the_longest() -> None:
    [loop] = costly_loops("event.properties.items.exists(i, i.tags.map(t, t).size() > 2)")
    items = [{"tags": list(range(10))} for _ in range(999)] + [{"tags": list(range(30))}, {}]

    assert loop.steps({"event": {"properties": {"items": items}}}) == (10_020, 10_020 * 30)


def test_a_string_is_weighed_by_its_characters_in_steps_of_256() -> None:
    [loop] = costly_loops(WEIGHED["a_string_bound_before_a_loop_and_joined_in_it"][0])
    context = {"event": {"properties": {"items": ["a"] * 1_000, "note": "x" * 2_560}}}

    assert loop.steps(context) == (1_000, 1_000 * 11)


RULES = """
events:
  order_placed:
    properties:
      items: {type: array}
rules:
  - id: MANY_DOUBLED
    trigger: order_placed
    channel: internal
    when: event.properties.items.map(i, i * 2).filter(d, d > 10).size() > 2
"""


def test_a_map_over_50000_items_skips_the_rule_saying_why_unevaluated(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    ruleset = load_ruleset(path)
    order = an_event(
        "order_placed", "2025-11-03T10:00:00+00:00", properties={"items": list(range(50_000))}
    )

    decision = the_one(replay([order], ruleset), "MANY_DOUBLED")

    assert decision.outcome is Outcome.SKIPPED
    assert decision.reason == (
        "`event.properties.items.map(i, i * 2).filter(d, d > 10).size() > 2` was not "
        "evaluated: its `event.properties.items.map(i, ...)` would take 2,500,000,000 steps "
        "over the 50,000 items of event.properties.items, more than the 250,000 a "
        "condition may take (a map or filter over 500 items), as it has no time limit"
    )


def test_a_map_over_a_short_list_is_evaluated(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    ruleset = load_ruleset(path)
    order = an_event(
        "order_placed", "2025-11-03T10:00:00+00:00", properties={"items": [4, 6, 9, 12]}
    )

    decision = the_one(replay([order], ruleset), "MANY_DOUBLED")

    assert decision.outcome is Outcome.TRIGGERED
    assert decision.reason.startswith(
        "`event.properties.items.map(i, i * 2).filter(d, d > 10).size() > 2` is true"
    )


def test_a_map_at_the_bound_is_evaluated(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    ruleset = load_ruleset(path)
    assert MAX_CONDITION_STEPS == 500 * 500
    order = an_event(
        "order_placed", "2025-11-03T10:00:00+00:00", properties={"items": list(range(500))}
    )

    decision = the_one(replay([order], ruleset), "MANY_DOUBLED")

    assert decision.outcome is Outcome.TRIGGERED


def test_rules_check_says_when_a_condition_is_skipped_unevaluated(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env={"COLUMNS": "1000"})

    assert result.exit_code == 0, result.output
    assert (
        "  skipped when `event.properties.items.map(i, ...)` would take more than 250,000 "
        "steps (the items of event.properties.items, squared: a map or filter over 500 "
        "items); `exists`, `all` and `exists_one` go through a list once\n" in result.output
    )


def test_a_join_in_a_loop_is_described_by_what_it_goes_through_and_copies() -> None:
    [loop] = costly_loops(WEIGHED["a_string_bound_before_a_loop_and_joined_in_it"][0])

    assert loop.described() == (
        "skipped when `n + x` would take more than 250,000 steps (the items of "
        "event.properties.items times the size of event.properties.note: a map or filter "
        "over 500 items)"
    )
