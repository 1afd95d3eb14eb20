"""The limits the README's API table and its paragraph on refused values state are the
ones the API applies: body sizes, a batch's length, the audit's page, an id's length."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from herald.api.app import create_app
from herald.api.schemas.requests import MAX_BATCH, MAX_BATCH_BYTES, MAX_EVENT_BYTES
from herald.config import Settings
from herald.service.audit import MAX_PAGE_BYTES

README = Path(__file__).resolve().parents[2] / "README.md"
MIB = 2**20


def api_row(endpoint: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## The API\n", 1)[1].split("\n## ", 1)[0]
    [row] = [line for line in section.splitlines() if line.startswith(f"| `{endpoint}` |")]
    return row


def whole(text: str) -> int:
    return int(text.replace(",", ""))


def audit_parameters(tmp_path: Path) -> dict[str, Any]:
    """The audit route's parameters, by name, as its OpenAPI document gives them."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'herald.db'}")
    document = create_app(settings).openapi()
    operation = document["paths"]["/audit/{user_id}"]["get"]
    return {parameter["name"]: parameter["schema"] for parameter in operation["parameters"]}


def test_the_body_limits_are_the_api_s() -> None:
    event, batch = api_row("POST /events"), api_row("POST /events/batch")

    said = re.search(r"`413` over (\d+) MiB", event)
    assert said and whole(said[1]) * MIB == MAX_EVENT_BYTES
    said = re.search(r"up to ([\d,]+) \((\d+) MiB, and (\d+) MiB per event", batch)
    assert said, batch
    assert whole(said[1]) == MAX_BATCH
    assert whole(said[2]) * MIB == MAX_BATCH_BYTES
    assert whole(said[3]) * MIB == MAX_EVENT_BYTES


def test_the_audit_s_page_and_an_id_s_length_are_the_api_s(tmp_path: Path) -> None:
    parameters = audit_parameters(tmp_path)
    row = api_row("GET /audit/{user_id}")
    refused = " ".join(README.read_text(encoding="utf-8").split())

    said = re.search(r"\(default ([\d,]+), at most ([\d,]+); .* hold (\d+) MiB of JSON", row)
    assert said, row
    assert whole(said[1]) == parameters["limit"]["default"]
    assert whole(said[2]) == parameters["limit"]["maximum"]
    assert whole(said[3]) * MIB == MAX_PAGE_BYTES
    length = re.search(r"ids \(`user_id`, `event_id`\) empty or over (\d+) characters", refused)
    assert length and whole(length[1]) == parameters["user_id"]["maxLength"]
