"""What to say of a template written as another template language writes it.

Marketing tools write their templates in Liquid (`{{ name | default: "there" }}`,
`{% unless %}`) or Handlebars (`{{#if name}}`), and an author coming from one writes
Herald's so; Jinja's syntax error names only the token it stopped at ("expected token
'end of print statement', got ':'"), which says nothing of the other language.
"""

from __future__ import annotations

import re

_OTHER_SYNTAX = (
    (
        re.compile(r"\|\s*\w+\s*:"),
        'Jinja gives a filter its arguments in parentheses: `| default("there")`',
    ),
    (
        re.compile(r"\{\{\s*(?:[#/]|else\s*\}\})"),
        "Jinja writes blocks as `{% if ... %}...{% endif %}`, `{% for x in ... %}...{% endfor %}`",
    ),
    (
        re.compile(r"\|\||&&"),
        'Jinja writes `or`, `and` and `not`; a fallback is `| default("there")`',
    ),
    (
        re.compile(r"\{%-?\s*(?:unless|endunless)\b"),
        "Jinja has no `unless`: write `{% if not ... %}...{% endif %}`",
    ),
)


def other_syntax(source: str, line: int | None) -> str:
    """How Jinja writes what line ``line`` of ``source`` (a part that does not compile)
    wrote as Liquid or Handlebars does, in parentheses after a space; empty otherwise."""
    lines = source.splitlines()
    if line is None or not 0 < line <= len(lines):
        return ""
    said = [hint for found, hint in _OTHER_SYNTAX if found.search(lines[line - 1])]
    return f" ({'; '.join(said)})" if said else ""
