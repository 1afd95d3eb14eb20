"""The README's rule-file section: its example, with its templates, passes `herald rules
check`, it names every section, rule key and limit the loader knows, and its example of a
template's whitespace sends what it shows."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from herald.cli.main import app
from herald.rules.definition import Limit
from herald.rules.loader import SECTIONS
from herald.rules.rule_reader import RULE_KEYS
from herald.rules.templates import TemplateSet

REPOSITORY = Path(__file__).resolve().parents[2]
# A template's file is named in the sentence before its code block: `templates/x/body.txt`.
_TEMPLATE = re.compile(r"`(templates/[^`]+)`[^`\n]*\n\n```\w*\n(.*?)```", re.DOTALL)
# A template and the text it sends: "```jinja ... ``` sends, for ...: ```text ... ```".
_SENDS = re.compile(r"```jinja\n([^`]*)```\n\nsends, for a `(\w+)` [^\n]*\n\n```text\n([^`]*)```")


def rule_file_section() -> str:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    return readme.split("### Rule file\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_example_passes_rules_check(tmp_path: Path) -> None:
    section = rule_file_section()
    [rules] = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    (tmp_path / "rules.yaml").write_text(rules, encoding="utf-8")
    templates = _TEMPLATE.findall(section)
    for name, text in templates:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")

    result = CliRunner().invoke(app, ["rules", "check", str(tmp_path / "rules.yaml")])

    assert [name for name, _ in templates] == [
        "templates/pro_welcome/subject.txt",
        "templates/pro_welcome/body.txt",
    ]
    assert result.exit_code == 0, result.output
    assert "OK: 2 rules over 2 event types" in result.output


def test_the_readme_names_every_section_rule_key_and_limit() -> None:
    section = rule_file_section()
    # The first cell of each table row: `events` (required), `providers`, `delivery`, ...
    named = set(re.findall(r"`(\w+)`", " ".join(re.findall(r"^\| ([^|]+) \|", section, re.M))))

    assert set(SECTIONS) - named == set()
    assert RULE_KEYS - named == set()
    assert {limit.value for limit in Limit} - set(re.findall(r"`(\w+)`", section)) == set()


def test_the_readme_s_whitespace_example_sends_what_it_shows() -> None:
    section = rule_file_section()
    [(body, plan, shown)] = _SENDS.findall(section)
    templates = TemplateSet({"example": {"subject.txt": "Hello", "body.txt": body}})

    rendered = templates.render("example", {"event": {"properties": {"plan": plan}}, "user": {}})

    assert "`trim_blocks`" in section and "`keep_trailing_newline`" in section
    # The file's final newline is not sent; the one closing the README's block is Markdown's.
    assert rendered.body == shown.removesuffix("\n")
