"""A dispatch round whose outcomes cannot be recorded before its claims run out, the
database cut off from the dispatcher (a network partition, a failover) by a TCP proxy
between them: its messages will be claimed and sent again, and the log must say so, and
which of them went out already."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.bootstrap import build_runtime, utc_now
from herald.cli.worker import _deliver_until_stopped
from herald.config import WorkerSettings
from herald.delivery.dispatcher import Dispatcher
from herald.delivery.provider import DeliveryResult, SendRequest
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.conftest import FixedClock
from tests.support.delivery import funds_failure, store
from tests.support.processes import scratch_postgres_database
from tests.support.tcp_proxy import TcpProxy, proxied

pytestmark = pytest.mark.postgres


class CutsTheDatabaseOff:
    """A provider whose sends go out, and whose last one cuts the dispatcher off from its
    database: the round's outcomes then have nowhere to be recorded."""

    name = "cutting"
    local = False
    target = "nowhere"

    def __init__(self, proxy: TcpProxy, sends: int) -> None:
        self._proxy = proxy
        self._left = sends
        self.sent: list[str] = []

    async def send(self, request: SendRequest) -> DeliveryResult:
        self.sent.append(request.message_id)
        self._left -= 1
        if self._left == 0:
            await asyncio.to_thread(self._proxy.cut)
        return DeliveryResult.sent()

    async def aclose(self) -> None:
        pass


def migrated(url: str) -> str:
    database = Database(url)
    upgrade(database)
    database.dispose()
    return url


@pytest.fixture
def database_and_proxy(postgres_url: str) -> Iterator[tuple[Database, TcpProxy]]:
    """A migrated database of its own, and a Database that reaches it through a proxy."""
    with scratch_postgres_database(postgres_url) as url, proxied(url) as (proxy, through):
        migrated(url)
        database = Database(through)
        try:
            yield database, proxy
        finally:
            database.dispose()


def test_a_round_unrecorded_when_its_claims_run_out_says_which_sent_messages_go_again(
    database_and_proxy: tuple[Database, TcpProxy],
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The dispatcher said only that its round failed, as of any outage: nothing told the
    operator that messages it had sent would be sent again, nor which, when recipients
    asked why they had the same message twice."""
    database, proxy = database_and_proxy
    store(database, clock, [funds_failure(f"cut{i}") for i in range(2)])
    provider = CutsTheDatabaseOff(proxy, sends=2)
    worker = Dispatcher(
        database, {"email": provider}, worker_id="w1", clock=clock, lease_seconds=3.0
    )
    caplog.set_level(logging.INFO, "herald.delivery")

    with pytest.raises(Exception) as failed:
        asyncio.run(worker.run_once())

    assert "connection" in str(failed.value).lower()
    assert sorted(provider.sent) == sorted(set(provider.sent)) and len(provider.sent) == 2
    said = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1, caplog.text
    line = said[0].getMessage()
    assert "could not record the outcomes of 2 message(s) (2 sent)" in line
    assert "sent again" in line
    assert all(message_id in line for message_id in provider.sent)


class CutsOffAndStops(CutsTheDatabaseOff):
    """Its send goes out, then the database is cut off and the worker told to stop
    (SIGTERM, as a deployment stops it)."""

    async def send(self, request: SendRequest) -> DeliveryResult:
        result = await super().send(request)
        os.kill(os.getpid(), signal.SIGTERM)
        return result


def test_a_worker_stopped_with_its_round_unrecorded_does_not_say_it_was_recorded(
    postgres_url: str, tmp_path: Path, clock: FixedClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its last line said "stopped: the sends under way were recorded" whatever became
    of them: an operator stopping workers through a database failover read that the
    messages it had sent were recorded, and then saw them sent again."""
    with scratch_postgres_database(postgres_url) as url, proxied(url) as (proxy, through):
        settings = WorkerSettings(database_url=migrated(url), outbox_file=str(tmp_path / "o"))
        runtime = build_runtime(settings.model_copy(update={"database_url": through}))
        store(runtime.database, clock, [funds_failure("stopping")])
        provider = CutsOffAndStops(proxy, sends=1)
        runtime.dispatcher = Dispatcher(
            runtime.database, {"email": provider}, worker_id="w1", clock=utc_now, lease_seconds=3.0
        )

        asyncio.run(_deliver_until_stopped(settings, runtime, None))

    said = capsys.readouterr().err
    assert provider.sent
    assert "the sends under way were recorded" not in said
    assert "stopped: 1 message(s) under way could not be recorded" in said
