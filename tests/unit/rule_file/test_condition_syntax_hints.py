"""A condition written as another language writes it (`and`, `=`, `True`, `None`) is
refused saying how CEL writes it: CEL's own error names only the token it stopped at and
the tokens it expected there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.rule_file_writing import problems_of, write_rule_file

AND_OR_NOT = "CEL writes and, or and not as `&&`, `||` and `!`"
EQUALS = "CEL compares with `==` and `!=`"
LITERALS = "CEL writes `true`, `false` and `null`, in lower case"
COMMENT = (
    "a comment in a condition starts with `//`: YAML reads `#` as its own only outside"
    " quotes and block scalars (`|`, `>`)"
)


def _problem(tmp_path: Path, when: str) -> str:
    rule = f"  - id: R1\n    trigger: payment_failed\n    channel: internal\n    when: {when}\n"
    (problem,) = problems_of(write_rule_file(tmp_path, rule))
    return problem


@pytest.mark.parametrize(
    ("when", "hint"),
    [
        ("event.properties.amount > 5 and user.first_name == 'Ada'", AND_OR_NOT),
        ("event.properties.amount > 5 OR user.first_name == 'Ada'", AND_OR_NOT),
        ("'not has(user.first_name)'", AND_OR_NOT),
        ("user.first_name = 'Ada'", EQUALS),
        ("user.first_name === 'Ada'", EQUALS),
        ("user.first_name <> 'Ada'", EQUALS),
        ("user.first_name is 'Ada'", EQUALS),
        ("event.properties.amount > 5 && True", LITERALS),
        ("user.first_name != None", LITERALS),
        ("'user.first_name == \"Ada\" # first customer'", COMMENT),
    ],
)
def test_another_language_s_syntax_is_refused_saying_how_cel_writes_it(
    when: str, hint: str, tmp_path: Path
) -> None:
    problem = _problem(tmp_path, when)

    written = when[1:-1] if when.startswith("'") else when  # as YAML reads it
    assert problem.startswith(f"rule R1: `when: {written}` ")
    assert f"({hint})" in problem


def test_words_inside_a_string_or_a_name_give_no_hint(tmp_path: Path) -> None:
    # The condition fails to compile (it ends on `&&`), for none of these words.
    problem = _problem(
        tmp_path, """'user.first_name == "Tom and Jerry = None" && event.properties.is_not &&'"""
    )

    assert "does not compile" in problem
    assert "CEL writes" not in problem
    assert "CEL compares" not in problem


def test_a_hash_comment_in_a_block_condition_is_refused_saying_how_cel_writes_one(
    tmp_path: Path,
) -> None:
    rule = (
        "  - id: R1\n    trigger: payment_failed\n    channel: internal\n"
        "    when: |\n      # big ones only\n      event.properties.amount > 100\n"
    )
    (problem,) = problems_of(write_rule_file(tmp_path, rule))

    assert problem.endswith(f"({COMMENT})")
