"""A condition whose work grows as the product of two sizes a client chooses (a loop over
a client's list inside a loop over another) is refused when the rule file loads: it has
no time limit, and on SQLite it is decided on the thread that answers requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.domain.properties import PropertySpec
from herald.rules.conditions.condition import Condition
from herald.rules.definition import EventType
from herald.rules.loader import RuleFileError, load_ruleset
from herald.rules.rule_file.condition_work import product_work

ORDER = EventType(
    "order_placed",
    {
        "items": PropertySpec("items", "array"),
        "vips": PropertySpec("vips", "array"),
        "note": PropertySpec("note", "string"),
        "meta": PropertySpec("meta", "object"),
    },
)
TRAITS = {"tags": "array", "pattern": "string", "plans": "object"}

REFUSED = {
    "a_list_looped_over_in_a_loop_over_itself": (
        "has(event.properties.items) && event.properties.items.exists(x, "
        'event.properties.items.exists(y, x == y && x == "zz"))',
        "loops over `event.properties.items` in the body of "
        "`event.properties.items.exists(x, ...)`, once for each item of "
        "`event.properties.items`: its work grows as the product of two sizes the client "
        "chooses",
    ),
    "a_trait_list_in_a_loop_over_an_event_list": (
        "event.properties.items.all(x, user.tags.exists_one(t, t == x))",
        "loops over `user.tags` in the body of `event.properties.items.all(x, ...)`",
    ),
    "a_list_looked_up_by_the_item": (
        "event.properties.items.exists(x, event.properties.meta[x].exists(g, g == 1))",
        "loops over `event.properties.meta[x]` in the body of",
    ),
    "a_filter_in_a_map_s_transform": (
        "event.properties.items.map(x, x != 0, event.properties.vips.filter(v, v == x)"
        ".size()).exists(n, n > 1)",
        "loops over `event.properties.vips` in the body of `event.properties.items.map(x, ...)`",
    ),
    "a_value_read_in_a_loop": (
        "event.properties.items.exists(i, i.price > 3 && i.name == event.properties.note)",
        "reads `event.properties.note` in the body of `event.properties.items.exists(i, ...)`,"
        " which takes as long as what the condition reads of `event`, once for each item of "
        "`event.properties.items`",
    ),
    "a_client_list_bound_outside_the_loop_and_looked_through_in_it": (
        "[event.properties.vips].exists(v, event.properties.items.exists(x, x in v))",
        "looks for a value in `v` in the body of `event.properties.items.exists(x, ...)`",
    ),
    "a_client_list_bound_outside_the_loop_and_looped_over_in_it": (
        "[user.tags].exists(v, event.properties.items.exists(x, v.exists(w, w == x)))",
        "loops over `v` in the body of `event.properties.items.exists(x, ...)`",
    ),
    "in_a_client_list_in_a_loop": (
        "event.properties.items.exists(x, x in event.properties.vips)",
        "looks for a value in `event.properties.vips` in the body of "
        "`event.properties.items.exists(x, ...)` (`x in event.properties.vips`), going "
        "through that list once for each item of `event.properties.items`",
    ),
    "in_a_client_list_in_a_loop_over_the_item_s_own_list": (
        "event.properties.items.exists(i, i.tags.exists(t, t in user.tags))",
        "looks for a value in `user.tags` in the body of `event.properties.items.exists(i, ...)`",
    ),
    "in_a_branch_of_a_ternary": (
        "has(event.properties.vips) ? user.tags.exists(t, t in event.properties.vips) : false",
        "looks for a value in `event.properties.vips` in the body of `user.tags.exists(t, ...)`",
    ),
    "a_client_string_searched_in_a_loop": (
        "event.properties.items.exists(x, event.properties.note.contains(x))",
        "searches with `event.properties.note` in the body of",
    ),
    "a_client_pattern_matched_in_a_loop": (
        "user.tags.exists(t, t.matches(user.pattern))",
        "searches with `user.pattern` in the body of `user.tags.exists(t, ...)`",
    ),
}

ACCEPTED = {
    "a_loop_over_the_item_s_own_list": (
        'event.properties.items.exists(i, i.tags.exists(t, t == "vip"))'
    ),
    "in_a_list_written_in_the_rule": 'event.properties.items.exists(x, x in ["gold", "vip"])',
    "a_loop_over_a_list_written_in_the_rule": (
        'event.properties.items.exists(x, ["a", "b"].exists(y, y == x))'
    ),
    "a_value_bound_once_outside_the_loop": (
        "[event.properties.note].exists(n, event.properties.items.exists(i, i.name == n))"
    ),
    "a_client_list_in_a_loop_over_a_list_written_in_the_rule": (
        '["a", "b"].exists(k, k in event.properties.items && user.tags.exists(t, t == k))'
    ),
    "in_a_map_bound_outside_the_loop": (
        "[event.properties.meta, user.plans].exists(m, event.properties.items.exists(x, x in m))"
    ),
    "two_loops_side_by_side": (
        'event.properties.items.exists(x, x == "zz") && event.properties.vips.all(v, v != "zz")'
    ),
    "a_loop_over_a_loop_s_result": (
        "event.properties.items.map(x, x.size()).exists(n, n > 3)"
        " && event.properties.vips.size() > 0"
    ),
    "a_loop_written_in_a_string_or_a_comment": (
        'event.properties.items.exists(x, x == "event.properties.items.exists(y, y in '
        'user.tags)") // user.tags.exists(t, t in event.properties.items)'
    ),
    "searches_for_what_the_rule_writes": (
        'user.tags.exists(t, t.contains("vip") || t.matches("^gold") || t.contains(t))'
    ),
}


@pytest.mark.parametrize(("condition", "problem"), list(REFUSED.values()), ids=list(REFUSED))
def test_a_loop_over_a_client_s_list_inside_another_is_refused_saying_why(
    condition: str, problem: str
) -> None:
    Condition(condition)  # CEL compiles it: it is refused for its work alone
    [found] = product_work(condition, ORDER, TRAITS)

    assert found.startswith(problem), found


@pytest.mark.parametrize("condition", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_a_condition_whose_work_is_linear_in_the_event_is_accepted(condition: str) -> None:
    Condition(condition)
    assert product_work(condition, ORDER, TRAITS) == []


RULES = """
events:
  order_placed:
    properties:
      items: {type: array}
rules:
  - id: REPEATED_ITEM
    trigger: order_placed
    channel: internal
    when: 'has(event.properties.items) && event.properties.items.exists(x,
      event.properties.items.exists(y, x == y && x == "zz"))'
"""


def test_rules_check_refuses_a_file_whose_condition_loops_over_a_list_inside_another(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env={"COLUMNS": "1000"})

    assert result.exit_code == 1
    assert f"{path}: 1 problem(s)" in result.output
    assert (
        "rule REPEATED_ITEM: `when: has(event.properties.items) && "
        "event.properties.items.exists(x, event.properties.items.exists(y, x == y && x == "
        '"zz"))` loops over `event.properties.items` in the body of '
        "`event.properties.items.exists(x, ...)`" in result.output
    )
    assert "loop over what the outer macro gives" in result.output
    with pytest.raises(RuleFileError):
        load_ruleset(path)


def test_the_default_rule_file_still_loads() -> None:
    ruleset = load_ruleset()

    assert len(ruleset.rules) == 4


BOUND_ONCE = """
events:
  order_placed:
    properties:
      items: {type: array}
      limit: {type: number}
rules:
  - id: PRICEY_ITEM
    trigger: order_placed
    channel: internal
    when: '[event.properties.limit].exists(n, event.properties.items.exists(i,
      has(i.price) && i.price > n))'
"""


def test_a_value_bound_once_outside_the_loop_loads(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(BOUND_ONCE, encoding="utf-8")

    ruleset = load_ruleset(path)

    assert [rule.id for rule in ruleset.rules] == ["PRICEY_ITEM"]


def test_a_condition_of_a_thousand_clauses_is_checked_not_a_traceback(tmp_path: Path) -> None:
    # Written by a script, as a list of codes a client may send: CEL takes it, and the
    # readers of its work, nested once a clause, ran out of Python's recursion.
    codes = " || ".join(f'event.properties.note == "C{n}"' for n in range(1_000))
    path = tmp_path / "rules.yaml"
    path.write_text(
        "events:\n  order_placed:\n    properties:\n      note: {type: string, required: true}\n"
        f"rules:\n  - id: CODED\n    trigger: order_placed\n    channel: internal\n"
        f"    when: '{codes}'\n",
        encoding="utf-8",
    )

    result = CliRunner().invoke(app, ["rules", "check", str(path)], env={"COLUMNS": "1000"})

    assert result.exit_code == 0, result.output
    assert result.output.endswith("OK: 1 rule over 1 event type\n")
    assert product_work(codes, ORDER, TRAITS) == []
