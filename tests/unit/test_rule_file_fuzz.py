"""A rule file, however wrong, is refused with a message naming the problem: the loader
never fails with anything else. Hypothesis replaces one node of the default file (a
value, a list item, a whole section) with arbitrary YAML data and loads the result."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.rules.loader import RuleFileError, default_rules_path, parse_ruleset

DEFAULT = yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))
TEMPLATES = default_rules_path().parent / "templates"

yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["24h", "99999999999d", "0s", "-1h", "event.x >", "once_per_user", "sms"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=10) | st.integers(), inner, max_size=3)
    ),
    max_leaves=10,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the document a value stands, the root's children first."""
    found = []
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return found
    for key, child in items:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


PATHS = paths(DEFAULT)


def replaced(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(DEFAULT)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return document


@given(path=st.sampled_from(PATHS), value=yaml_values)
@settings(max_examples=300, deadline=None)
def test_any_one_node_changed_loads_or_is_refused_with_a_message(
    path: tuple[Any, ...], value: Any
) -> None:
    text = yaml.safe_dump(replaced(path, value), allow_unicode=True)
    try:
        ruleset = parse_ruleset(text, source="rules.yaml", template_dir=TEMPLATES)
    except RuleFileError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert str(exc).startswith("rules.yaml: ")
    else:  # e.g. an empty list of rules: a file that only declares event types
        assert ruleset.event_types


@given(document=yaml_values)
@settings(max_examples=100, deadline=None)
def test_a_file_of_arbitrary_data_is_refused_with_a_message(document: Any) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        parse_ruleset(text, source="rules.yaml", template_dir=Path("/nonexistent"))
    except RuleFileError as exc:
        assert exc.problems
    else:  # only a document that is a whole rule file could load
        raise AssertionError(f"loaded {document!r}")
