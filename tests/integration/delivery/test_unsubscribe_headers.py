"""The unsubscribe link a marketing email carries (RFC 2369 ``List-Unsubscribe``, with
RFC 8058's one-click ``List-Unsubscribe-Post``), as it reaches a real SMTP server; a
transactional email carries none."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage
from pathlib import Path

from herald.delivery.providers.smtp import SmtpProvider
from herald.delivery.providers.stub import StubProvider
from herald.domain.model import Event
from herald.domain.timeutil import parse_timestamp
from herald.domain.unsubscribe_tokens import UnsubscribeLinks, Unsubscriber, read_token
from herald.store.database import Database
from tests.conftest import FixedClock
from tests.support.delivery import dispatcher, funds_failure, store
from tests.support.smtp_sink import SmtpSink

KEY = "an-unsubscribe-key-of-32-characters-or-more"
LINKS = UnsubscribeLinks("https://herald.example.com", KEY)


def _signup(user: str) -> Event:
    traits = {"email": f"{user}@example.com", "marketing_opt_in": True}
    return Event(
        f"s-{user}", user, "signup_completed", parse_timestamp("2025-11-03T09:00:00Z"), {}, traits
    )


def _received(
    database: Database, clock: FixedClock, links: UnsubscribeLinks | None
) -> dict[str, EmailMessage]:
    """The emails the dispatcher sent through a real SMTP server, by recipient: a
    marketing welcome to ``marketing@``, a transactional notice to ``transactional@``."""
    store(database, clock, [_signup("marketing"), funds_failure("transactional")])
    with SmtpSink() as sink:
        smtp = SmtpProvider("email", sink.host, sink.port, sender="herald@example.com")
        worker = dispatcher(database, clock, {"email": smtp}, unsubscribe_links=links)
        assert asyncio.run(worker.run_once()).sent == 2
        return {received.message["To"]: received.message for received in sink.messages}


def test_a_marketing_email_carries_a_one_click_unsubscribe_link(
    database: Database, clock: FixedClock
) -> None:
    email = _received(database, clock, LINKS)["marketing@example.com"]

    link = email["List-Unsubscribe"]
    prefix = "<https://herald.example.com/unsubscribe/"
    assert link.startswith(prefix) and link.endswith(">"), link
    assert read_token(KEY, link[len(prefix) : -1]) == Unsubscriber("marketing", "email")
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_link_reaches_the_relay_as_written_on_one_line(
    database: Database, clock: FixedClock
) -> None:
    """Left to the email package, a header longer than a line was written as encoded
    words (``=?utf-8?q?=3Chttps...``), which no mail client reads as a URL."""
    long_id = "a-user-id-long-enough-to-make-a-link-longer-than-a-line-of-78-characters"
    store(database, clock, [_signup(long_id)])
    with SmtpSink() as sink:
        smtp = SmtpProvider("email", sink.host, sink.port, sender="herald@example.com")
        asyncio.run(
            dispatcher(database, clock, {"email": smtp}, unsubscribe_links=LINKS).run_once()
        )
        [received] = sink.messages

    [line] = [
        line for line in received.content.splitlines() if line.startswith(b"List-Unsubscribe:")
    ]
    assert line.startswith(b"List-Unsubscribe: <https://herald.example.com/unsubscribe/")
    assert line.endswith(b">")


def test_a_transactional_email_carries_no_unsubscribe_link(
    database: Database, clock: FixedClock
) -> None:
    email = _received(database, clock, LINKS)["transactional@example.com"]

    assert email["List-Unsubscribe"] is None
    assert email["List-Unsubscribe-Post"] is None


def test_without_the_settings_no_email_carries_a_link(
    database: Database, clock: FixedClock
) -> None:
    emails = _received(database, clock, None)

    assert [email["List-Unsubscribe"] for email in emails.values()] == [None, None]


def test_the_stub_shows_a_marketing_message_s_link(
    database: Database, clock: FixedClock, tmp_path: Path
) -> None:
    store(database, clock, [_signup("marketing"), funds_failure("transactional")])
    outbox = tmp_path / "outbox.jsonl"
    worker = dispatcher(database, clock, {"email": StubProvider(outbox)}, unsubscribe_links=LINKS)

    asyncio.run(worker.run_once())

    lines = {line["user_id"]: line for line in map(json.loads, outbox.read_text().splitlines())}
    assert lines["marketing"]["unsubscribe_url"].startswith(
        "https://herald.example.com/unsubscribe/"
    )
    assert "unsubscribe_url" not in lines["transactional"]
