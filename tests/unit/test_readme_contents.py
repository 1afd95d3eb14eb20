"""The README's table of contents lists its sections as they are, in order."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _anchor(title: str) -> str:
    # As GitHub makes a heading's anchor: lower case, punctuation dropped, spaces to dashes.
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def test_the_contents_list_every_section_in_order() -> None:
    text = README.read_text(encoding="utf-8")
    contents = text.split("**Contents**", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^( *)- \[(.+?)\]\(#(.+?)\)$", contents, re.M)
    headings = re.findall(r"^(##|###) (.+)$", text, re.M)

    assert [(title, anchor) for _, title, anchor in listed] == [
        (title, _anchor(title)) for _, title in headings
    ]
    assert [len(indent) for indent, _, _ in listed] == [
        0 if level == "##" else 2 for level, _ in headings
    ]
