"""`herald users forget USER_ID`: what it deletes and redacts, said; with `--dry-run`,
said and not done; an unknown user, an error."""

from __future__ import annotations

from typer.testing import CliRunner

from herald.cli.main import app as cli
from herald.store.database import Database
from herald.store.unit_of_work import ReadOnly
from tests.conftest import FixedClock
from tests.support.delivery import funds_failure, store
from tests.support.events import opted_in_signup
from tests.support.store_rows import claim


def _forget(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["users", "forget", *args, "--database", database_url])
    return result.exit_code, " ".join(result.output.split())


def test_forget_says_what_it_would_do_then_does_it(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    store(database, clock, [opted_in_signup("ana"), funds_failure("ana"), funds_failure("bo")])
    with ReadOnly(database) as read:
        foreseen = read.erasure.count("ana")

    code, said = _forget(database_url, "ana", "--dry-run")

    assert code == 0
    assert said == (
        "would delete 2 events and 0 delivery attempts of user 'ana'; would redact 2 "
        "messages and would cancel the 2 of them not sent yet (dry run: nothing changed)"
    )
    with ReadOnly(database) as read:
        assert read.erasure.count("ana") == foreseen  # nothing changed

    code, said = _forget(database_url, "ana")

    assert code == 0
    assert said == (
        "deleted 2 events and 0 delivery attempts of user 'ana'; redacted 2 messages and "
        "cancelled the 2 of them not sent yet"
    )
    with ReadOnly(database) as read:
        assert read.erasure.count("ana").events == 0
        assert read.erasure.count("bo").events == 1
    assert _forget(database_url, "ana") == (
        0,
        "deleted 0 events and 0 delivery attempts of user 'ana'; redacted 0 messages",
    )


def test_forget_says_a_message_being_sent_ends_cancelled_and_how_to_finish(
    database: Database, database_url: str, clock: FixedClock
) -> None:
    store(database, clock, [funds_failure("ana")])
    assert len(claim(database, "w", now_us=10**17)) == 1  # being sent

    code, said = _forget(database_url, "ana")

    assert code == 0
    assert said.endswith(
        "1 message being sent now: cancelled when the attempt ends, unless sent; the "
        "attempt's record is written then, so run this again afterwards to delete it"
    )


def test_forgetting_an_unknown_user_is_an_error(database: Database, database_url: str) -> None:
    code, said = _forget(database_url, "nobody")

    assert code == 1
    assert said == "error: no user 'nobody' in the database: nothing to forget"
