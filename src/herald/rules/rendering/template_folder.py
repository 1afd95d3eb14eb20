"""A template read from its folder: ``subject.txt``, ``body.txt`` and optionally
``body.html``, with every problem of the folder said at once.

A file named as a part but misspelt, or a part that cannot be read, does not stop the
other parts being checked: an author hears of each problem of a template in one run of
``herald rules check``, not of the first and then, once it is fixed, of the next.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from herald.rules.rendering.template_set import (
    PARTS,
    TemplateProblem,
    TemplateSet,
    compile_problems,
    not_utf8,
)

# A part's name as an author may slip on it: another case (which a case-insensitive disk
# on the author's machine reads as the part, a server's does not), `.htm` or `.text`.
_MISNAMED = {
    **{part.upper(): part for part in PARTS},
    "BODY.HTM": "body.html",
    "SUBJECT.TEXT": "subject.txt",
    "BODY.TEXT": "body.txt",
}


def read_template(directory: Path, name: str) -> tuple[dict[str, str] | None, list[str]]:
    """The text of each part of template ``name``, the folder ``name`` of ``directory``,
    by the part's file name, and every problem of the folder. The parts are None where the
    template cannot be rendered (no folder, a part it needs missing or unreadable, one
    that does not compile); they are given beside a problem that leaves it renderable (a
    ``body.htm`` beside the parts it needs), so that the rule file's samples still try
    them."""
    folder = directory / name
    if not folder.is_dir():
        return None, [f"template {name!r} not found (no folder {folder}){_meant(directory, name)}"]
    try:
        files = sorted(entry.name for entry in folder.iterdir())
    except OSError as exc:
        return None, [f"template {name}: cannot list its folder: {exc.strerror}"]
    misnamed = _misnamed(files)
    problems = [_rename(name, file, part) for file, part in misnamed.items()]
    sources, unreadable = _read_parts(name, folder)
    problems += unreadable.values()
    missing = {"subject.txt", "body.txt"} - sources.keys()
    if missing and missing <= {*misnamed.values(), *unreadable}:
        # Said above, as the file to rename or to save again: the parts there are
        # compiled, as they cannot be rendered without it.
        return None, problems + compile_problems(name, sources)
    try:
        TemplateSet({name: sources})
    except TemplateProblem as exc:
        return None, problems + exc.said
    return sources, problems


def _misnamed(files: list[str]) -> dict[str, str]:
    """Each of ``files`` named as a part, misspelt, with the part: it would not be read,
    and the message would go without its HTML, or the template be said to lack a part it
    has."""
    found = {}
    for file in files:
        part = _MISNAMED.get(file.upper())
        if part is not None and file != part:
            found[file] = part
    return found


def _rename(name: str, file: str, part: str) -> str:
    return (
        f"template {name}: {file} is not read (a template's parts are subject.txt, "
        f"body.txt and body.html): rename it {part}"
    )


def _read_parts(name: str, folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The text of each part of ``folder`` that reads, and what stops each other one."""
    sources = {}
    unreadable = {}
    for part in PARTS:
        path = folder / part
        if not path.is_file():
            continue
        try:
            # utf-8-sig: a byte order mark some editors save at the start of the file
            # would otherwise be sent, invisible, at the start of every subject and body.
            sources[part] = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            unreadable[part] = f"template {name}/{part} {not_utf8(exc)}"
        except OSError as exc:
            unreadable[part] = f"template {name}/{part}: cannot read: {exc.strerror}"
    return sources, unreadable


def _meant(directory: Path, name: str) -> str:
    """``: did you mean 'welcome'?`` naming the folder of ``directory`` that ``name``, a
    template not found, looks like: misspelt, or in another case, which a case-insensitive
    disk (the author's) finds and a server's does not; empty when none does."""
    try:
        folders = {e.name.casefold(): e.name for e in directory.iterdir() if e.is_dir()}
    except OSError:  # no templates folder at all: the path said shows it
        return ""
    close = difflib.get_close_matches(name.casefold(), folders, n=1, cutoff=0.75)
    return f": did you mean {folders[close[0]]!r}?" if close else ""
