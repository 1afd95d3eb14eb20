"""`herald prune` when PostgreSQL goes away mid-prune (a restart, a failover): one line that
says what stays done and how to finish, as for an interruption; it printed a page of
traceback and not what it had done."""

from __future__ import annotations

import pytest

from herald.rules.definition import RuleSet
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.support.processes import (
    connections_refused,
    scratch_postgres_database,
)
from tests.support.retention import OLD, payment_initiated, pruning_in_small_batches, store


@pytest.mark.postgres
def test_a_prune_the_database_leaves_mid_way_says_what_stays_done_and_how_to_finish(
    postgres_url: str, ruleset: RuleSet
) -> None:
    with scratch_postgres_database(postgres_url) as url:
        database = Database(url)
        upgrade(database)
        events = [payment_initiated(f"u_{n % 100}", OLD, n) for n in range(1000)]
        store(database, ruleset, events, now=OLD)
        database.dispose()
        with pruning_in_small_batches(url) as pruning:
            assert pruning.stdout is not None
            first = pruning.stdout.readline()  # the first batch is done
            with connections_refused(postgres_url, url):
                rest = pruning.stdout.read()
                pruning.wait(30)

    assert "events: 5 deleted so far" in first, first + rest
    assert pruning.returncode == 1, rest
    assert "Traceback" not in rest
    [said] = [line for line in rest.splitlines() if line.startswith("error:")]
    assert said.startswith("error: the database could not take the command's write: ")
    assert "the batches counted above are pruned and stay so; run the same command again" in rest
