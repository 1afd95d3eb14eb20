"""A process's runtime releases what it holds when it stops, whatever failed before."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from herald.bootstrap import build_runtime
from herald.config import Settings
from herald.delivery.providers.stub import StubProvider


class ClosingRecorded(StubProvider):
    """The stub provider, noting that it was closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


class BrokenDispatcher:
    """A dispatcher whose run ends with a bug."""

    async def run(self, stopping: asyncio.Event) -> None:
        await stopping.wait()
        raise RuntimeError("a bug in the dispatcher")

    def wake(self) -> None:
        pass


def test_a_runtime_whose_dispatcher_failed_still_closes_its_providers_and_database(
    tmp_path: Path,
) -> None:
    # The failure surfaced from stop() and the rest was skipped: an SMTP relay was never
    # told goodbye, the checkpointer thread never stopped, the connections never closed.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'herald.db'}")
    runtime = build_runtime(settings)
    provider = ClosingRecorded(tmp_path / "outbox.jsonl")
    runtime.delivery.providers["email"] = provider
    runtime.dispatcher = BrokenDispatcher()  # type: ignore[assignment]

    async def scenario() -> None:
        await runtime.start()
        await runtime.stop()

    with pytest.raises(RuntimeError, match="a bug in the dispatcher"):
        asyncio.run(scenario())
    assert provider.closed
    assert "herald-checkpoint" not in {thread.name for thread in threading.enumerate()}
