"""The README's rule-file section: its example, with its templates, passes `herald rules
check`, it names every section, rule key, limit, property type and key the loader knows
and the type Herald reads each of its own traits as, and its example of a template's
whitespace sends what it shows."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from herald.cli.main import app
from herald.domain.properties import PROPERTY_TYPES
from herald.rules.definition import Limit
from herald.rules.loader import SECTIONS
from herald.rules.rendering.template_set import TemplateSet
from herald.rules.rule_file.declarations import HERALD_TRAITS, PROPERTY_KEYS
from herald.rules.rule_file.reader import RULE_KEYS

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


def test_the_readme_names_every_property_type_and_key_and_the_type_of_each_trait_read() -> None:
    rows = {
        row[0]: row[1]
        for row in re.findall(r"^\| `(\w+)`[^|]* \| (.*) \|$", rule_file_section(), re.M)
    }
    types_given = re.search(r"each property's type \(([^)]*)\), or `\{([^}]*)\}`", rows["events"])
    # "`email`, `phone` and `timezone` are `string`, `marketing_opt_in` is `boolean`, ..."
    clauses = re.findall(r"((?:`\w+`(?:, | and )?)+) (?:is|are) `(\w+)`", rows["traits"])

    assert types_given, "the events row no longer lists the property types and keys"
    assert re.findall(r"`(\w+)`", types_given[1]) == list(PROPERTY_TYPES)
    assert types_given[2].split(", ") == list(PROPERTY_KEYS)
    read_as = {name: kind for names, kind in clauses for name in re.findall(r"`(\w+)`", names)}
    assert read_as == {name: kind for name, (kind, _meaning) in HERALD_TRAITS.items()}
