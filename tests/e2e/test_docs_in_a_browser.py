"""/docs shows the API in a real browser that can reach nothing but the server: what a
host without internet access sees. Skipped where no Chromium is installed (Debian's
`chromium` package)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import HeraldProcess, herald_environment
from tests.support.serving import sqlite_url

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"
    ),
]


def page_offline(url: str, profile: Path) -> str:
    """The DOM of ``url`` once its scripts ran, in a headless Chromium whose every host
    name but 127.0.0.1 fails to resolve, so nothing is loaded from the internet."""
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # as root, as on CI
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            # Runs the page's timers at once, up to 10 s of page time.
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_docs_lists_the_operations_in_a_browser_that_reaches_only_the_server(
    tmp_path: Path,
) -> None:
    port = free_port()
    with HeraldProcess("serve", log_dir=tmp_path) as server:
        server.start(
            ["serve", "--port", str(port), "--database", sqlite_url(tmp_path)],
            herald_environment(HERALD_OUTBOX_FILE=str(tmp_path / "outbox.jsonl")),
            cwd=tmp_path,
        )
        server.wait_healthy(f"http://127.0.0.1:{port}/readyz")
        dom = page_offline(f"http://127.0.0.1:{port}/docs", tmp_path / "browser")

    # Swagger UI wrote the operations into the page: its script and the document loaded.
    assert 'class="swagger-ui' in dom, dom[:2000]
    for path in ("/events/batch", "/audit/{user_id}", "/readyz"):
        assert path in dom
