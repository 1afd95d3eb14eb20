"""`herald users audit USER_ID`: the audit a support agent reads, from the command line,
page by page as the API gives it; an unknown user or a bad cursor, an error."""

from __future__ import annotations

import json
from dataclasses import replace

from typer.testing import CliRunner

from herald.cli.main import app as cli
from herald.service.audit import user_audit
from herald.store.database import Database
from tests.conftest import FixedClock
from tests.support.delivery import funds_failure, store
from tests.support.events import opted_in_signup


def _audit(database_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["users", "audit", *args, "--database", database_url])
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def test_the_audit_pages_through_every_event_once_as_the_api_gives_them(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    store(database, clock, [opted_in_signup("ana"), funds_failure("ana"), funds_failure("bo")])

    code, first, said = _audit(database_url, "ana", "--limit", "1")

    assert code == 0, said
    page = json.loads(first)
    assert page == user_audit(database, "ana", limit=1, cursor=None)
    assert page["user"]["traits"]["email"] == "ana@example.com"
    assert said == f"1 event and 1 message; next page: --cursor {page['next_cursor']}"
    code, second, said = _audit(
        database_url, "ana", "--limit", "1", "--cursor", page["next_cursor"]
    )
    assert code == 0, said
    rest = json.loads(second)
    assert said == "1 event and 1 message; the last page"
    assert [e["event_id"] for p in (page, rest) for e in p["events"]] == ["pf-ana-3", "s-ana"]
    reasons = [d["reason"] for p in (page, rest) for e in p["events"] for d in e["decisions"]]
    assert any("user.marketing_opt_in == true` is true" in r for r in reasons)


def test_the_audit_of_an_unknown_user_or_with_another_user_s_cursor_is_an_error(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("ana"), funds_failure("ana", day=2), funds_failure("bo")])
    cursor = json.loads(_audit(database_url, "ana", "--limit", "1")[1])["next_cursor"]

    assert _audit(database_url, "nobody")[::2] == (
        1,
        "error: no user 'nobody' in the database",
    )
    code, _, said = _audit(database_url, "bo", "--cursor", cursor)
    assert code == 1
    assert said.startswith("error: this cursor is from another user's audit")


def test_a_terminal_showing_the_audit_gets_no_control_or_reordering_character_a_client_sent(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    """The audit is the client's data, written to the support agent's terminal: raw,
    U+009B (CSI, ESC [ in one character) in a trait would have it clear the screen or
    hide what follows, and U+202E display the rest of its line reversed. As JSON escapes,
    they read back as the same characters."""
    name = "Ana\x9b2J\x7f\u202eevil\u2066"
    signup = opted_in_signup("ana")
    store(
        database, clock, [replace(signup, user_traits={**signup.user_traits, "first_name": name})]
    )

    code, shown, said = _audit(database_url, "ana")

    assert code == 0, said
    for raw in ("\x9b", "\x7f", "\u202e", "\u2066"):
        assert raw not in shown
    assert "\\u009b2J\\u007f\\u202eevil\\u2066" in shown
    assert json.loads(shown)["user"]["traits"]["first_name"] == name
