"""The README's "Try it" does what it says: its event answers 202 with the decisions it
names, the email goes to the stub's outbox file, posting it again answers 200 "duplicate"
with the same decisions, and its audit answers."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

from herald.api.app import create_app
from herald.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def try_it() -> tuple[str, str]:
    """The section's commands, and its prose after them."""
    section = README.read_text(encoding="utf-8").split("\n## Try it\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    [commands] = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return commands, section.split("```", 2)[2]


def test_the_readme_s_example_answers_as_the_readme_says(database_url: str, tmp_path: Path) -> None:
    commands, said = try_it()
    [body] = re.findall(r"-d '(.*?)'", commands, re.DOTALL)
    [audit] = re.findall(r"curl -s localhost:8000(/audit/\S+)", commands)
    triggered = re.findall(r"`(\w+)` triggered", said)
    outbox = tmp_path / "outbox.jsonl"
    settings = Settings(database_url=database_url, outbox_file=str(outbox))

    with TestClient(create_app(settings)) as client:
        first = client.post("/events", content=body, headers={"content-type": "application/json"})
        again = client.post("/events", content=body, headers={"content-type": "application/json"})
        audited = client.get(audit)
        deadline = time.monotonic() + 10
        while not outbox.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    assert "answer is `202`" in said and triggered == [
        "INSUFFICIENT_FUNDS_EMAIL",
        "HIGH_RISK_ALERT",
    ]
    assert first.status_code == 202
    assert {d["rule"]: d["outcome"] for d in first.json()["decisions"]} == dict.fromkeys(
        triggered, "triggered"
    )
    assert '`200` `"duplicate"`' in said
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert again.json()["decisions"] == first.json()["decisions"]
    assert audited.status_code == 200 and len(audited.json()["events"]) == 1
    assert "`outbox.jsonl`" in said
    [line] = outbox.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["rule"] == "INSUFFICIENT_FUNDS_EMAIL"
