"""The folders are layers, each standing on those below: the HTTP API and the command
line are two entry points on the same service, and the API leans on no part of the
command line, so that a change to a command cannot break the server, nor a server be
built without the commands."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import herald


def test_the_api_loads_no_module_of_the_command_line() -> None:
    # A fresh interpreter: this one has loaded the command line for other tests.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, herald.api.app, herald.api.factory; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('herald.cli'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    assert loaded == []


# From the ground up: a layer may import the layers below it, never one above. The pure
# rule engine stands on the domain alone; storage knows nothing of delivery; delivery
# nothing of the service that ingests; the entry points sit on top.
_LAYERS = (
    {"domain", "config", "json_lines", "orphans"},
    {"rules"},
    {"observability"},
    {"store"},
    {"delivery"},
    {"service"},
    {"bootstrap"},
    {"api"},
    {"cli", "__main__"},
)


def _layer_of(module: str) -> int:
    part = module.split(".")[1]
    return next(level for level, names in enumerate(_LAYERS) if part in names)


def _imports_of(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_layer_imports_one_above_it() -> None:
    package = Path(herald.__file__).parent
    upward = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == package:
            continue
        module = "herald." + ".".join(path.relative_to(package).with_suffix("").parts)
        for imported in _imports_of(path):
            if imported.startswith("herald.") and _layer_of(imported) > _layer_of(module):
                upward.append(f"{module} imports {imported}")

    assert upward == []
