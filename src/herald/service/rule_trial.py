"""Trying a rule file on sample events before it goes live: each event, checked as the
API checks it, is decided by the server's own ingestion, in the order given, in a database of
its own that is thrown away afterwards. Limits, windows, quiet hours and arrival order
work as they would in the server; nothing is stored or sent."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from herald.delivery.quiet_hours import HoldPolicy
from herald.domain.model import Event
from herald.rules.definition import RuleSet
from herald.service.ingest import IngestStatus, ingest
from herald.service.intake import Rejection
from herald.store.database import Database
from herald.store.migrate import ensure_current
from herald.store.unit_of_work import UnitOfWork

# The columns of a message a trial shows: what it would send, to whom, and when.
_SHOWN = (
    "message_id", "rule", "channel", "category", "recipient", "subject", "body", "html",
    "hold_reason",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TrialResult:
    """What became of one sample event: its status as the API would answer it
    (``accepted``, ``duplicate``, ``conflict``, ``profile_full`` or ``rejected``), its
    decisions, the messages they created and, for a rejected event, why."""

    index: int
    event_id: str | None
    status: str
    decisions: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def try_rules(
    ruleset: RuleSet,
    events: Iterable[tuple[str | None, Event | Rejection]],
    *,
    now: datetime,
    hold: HoldPolicy,
) -> Iterator[TrialResult]:
    """Decide each of ``events`` in turn with ``ruleset``, at ``now``, holding messages for
    the quiet hours of ``hold``. Each comes with the id its payload gave, if any, and is
    an event or, refused by the intake, the reason why."""
    with tempfile.TemporaryDirectory(prefix="herald-trial-") as folder:
        database = Database(f"sqlite:///{Path(folder) / 'trial.db'}")
        try:
            ensure_current(database, auto_upgrade=True)
            for index, (given_id, event) in enumerate(events):
                if isinstance(event, Rejection):
                    yield TrialResult(index, given_id, "rejected", errors=event.errors)
                else:
                    yield _decided(database, ruleset, index, event, now, hold)
        finally:
            database.dispose()


def _decided(
    database: Database,
    ruleset: RuleSet,
    index: int,
    event: Event,
    now: datetime,
    hold: HoldPolicy,
) -> TrialResult:
    with UnitOfWork(database) as uow:
        [result] = ingest(uow, [event], ruleset, now=now, hold=hold)
        decisions = [decision.as_json() for decision in result.decisions]
        created = [d["message_id"] for d in decisions if d["outcome"] == "triggered"]
        rows = [uow.outbox.get(message_id) for message_id in created]  # as staged
        uow.commit()
    if result.status is not IngestStatus.ACCEPTED:
        return TrialResult(index, event.event_id, str(result.status), result.earlier)
    messages = [{name: getattr(row, name) for name in _SHOWN} for row in rows if row is not None]
    return TrialResult(index, event.event_id, str(result.status), decisions, messages)
