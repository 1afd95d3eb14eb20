"""How long a channel's receiver takes to answer is a metric of the process that
delivers: `herald_delivery_seconds` by `channel`, one observation an attempt, so that a
receiver growing slow shows before its messages pile up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from herald.rules.loader import default_rules_path
from herald.store.database import Database
from tests.conftest import FixedClock
from tests.support.delivery import close_after_test, link_after_signup, store
from tests.support.http_receiver import CannedResponse, HttpReceiver

ANSWER_S = 0.3


def test_each_attempt_is_timed_by_its_channel_whatever_its_outcome(
    database: Database, database_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    from herald.bootstrap import build_runtime
    from herald.config import Settings

    store(database, clock, link_after_signup("a") + link_after_signup("b"))
    with HttpReceiver(
        [CannedResponse(delay=ANSWER_S), CannedResponse(503, delay=ANSWER_S)]
    ) as receiver:
        rules = tmp_path / "rules.yaml"
        rules.write_text(
            default_rules_path().read_text(encoding="utf-8")
            + f"templates_dir: {default_rules_path().parent / 'templates'}\n"
            + f"providers:\n  sms: {{type: webhook, url: '{receiver.url}'}}\n",
            encoding="utf-8",
        )
        runtime = build_runtime(
            Settings(database_url=database_url, rules=str(rules), outbox_file="/dev/null"),
            clock=clock,
            ingests=False,
        )
        assert runtime.dispatcher is not None
        close_after_test(runtime.delivery.providers.values())
        report = asyncio.run(runtime.dispatcher.run_once())
        runtime.database.dispose()

    assert (report.sent, report.retried) == (1, 1)
    scraped = generate_latest(runtime.metrics.registry).decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    sms = (("channel", "sms"),)
    assert samples[("herald_delivery_seconds_count", sms)] == 2
    assert samples[("herald_delivery_seconds_sum", sms)] >= 2 * ANSWER_S
    assert samples[("herald_delivery_seconds_bucket", (*sms, ("le", "0.1")))] == 0
