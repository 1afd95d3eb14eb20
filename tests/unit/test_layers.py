"""The folders are layers: the HTTP API and the command line are two entry points on the
same service, and the API leans on no part of the command line, so that a change to a
command cannot break the server, nor a server be built without the commands."""

from __future__ import annotations

import subprocess
import sys


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
