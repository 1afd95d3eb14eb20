"""Writing a small rule file with its templates, and reading the problems loading it reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from herald.cli.main import app
from herald.rules.loader import RuleFileError, load_ruleset
from tests.support.rule_files import listed_problems

EVENTS = """
events:
  signup_completed: {}
  payment_failed:
    properties:
      amount: {type: number, required: true}
traits:
  email: string
  first_name: string
"""

GOOD_RULE = """
  - id: GOOD
    trigger: signup_completed
    channel: email
    category: transactional
    template: hello
"""

HELLO = {"subject.txt": "Hello {{ user.first_name }}", "body.txt": "Welcome, {{ user.email }}."}

# A terminal wide enough that Rich prints paths and problems on one line each.
WIDE = {"COLUMNS": "1000"}


def write_rule_file(
    directory: Path,
    rules: str,
    templates: dict[str, dict[str, str]] | None = None,
) -> Path:
    """A rule file with the shared event types, and a ``templates/`` folder beside it."""
    for name, parts in {"hello": HELLO, **(templates or {})}.items():
        folder = directory / "templates" / name
        folder.mkdir(parents=True, exist_ok=True)
        for part, text in parts.items():
            (folder / part).write_text(text, encoding="utf-8")
    path = directory / "rules.yaml"
    path.write_text(EVENTS + "rules:\n" + rules, encoding="utf-8")
    return path


def redeclare(path: Path, declared: str, instead: str) -> None:
    """Replace ``declared``, a declaration of the shared ones, in the rule file at ``path``."""
    text = path.read_text(encoding="utf-8")
    assert declared in text
    path.write_text(text.replace(declared, instead), encoding="utf-8")


def payment_email_rule_file(
    directory: Path, template: dict[str, str], *declarations: str, rule: str = "ORDER"
) -> Path:
    """A rule file whose one rule, ``rule``, emails ``template`` (named as the rule, in
    lower case) on ``payment_failed``, whose properties also declare ``declarations``
    (``"meta: object"``)."""
    name = rule.lower()
    path = write_rule_file(
        directory,
        f"  - {{id: {rule}, trigger: payment_failed, channel: email, category: transactional,"
        f" template: {name}}}\n",
        {name: template},
    )
    amount = "amount: {type: number, required: true}"
    redeclare(path, amount, "\n      ".join([amount, *declarations]))
    return path


def checked_problems(path: Path) -> list[str]:
    """What ``herald rules check`` lists for the rule file at ``path``, which it refuses."""
    result = CliRunner().invoke(app, ["rules", "check", str(path)], env=WIDE)
    assert result.exit_code == 1
    return listed_problems(result.output)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        load_ruleset(path)
    assert caught.value.path == str(path)
    return caught.value.problems
