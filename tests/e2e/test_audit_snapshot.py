"""The audit on PostgreSQL is one snapshot: a delivery recorded while an audit is being
read shows in all of it or in none of it, never as a message still `pending` beside a
`sent` attempt (the reads ran at READ COMMITTED, each statement seeing new commits)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from herald.store.database_url import normalise_url
from tests.support.ports import free_port
from tests.support.processes import (
    HeraldProcess,
    herald_environment,
    run_herald,
    scratch_postgres_database,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SIGNUP = {
    "event_id": "s-ada",
    "user_id": "ada",
    "event_type": "signup_completed",
    "event_timestamp": "2025-11-03T10:00:00Z",
    "user_traits": {"email": "ada@example.com", "marketing_opt_in": True},
}


def test_an_audit_read_during_a_delivery_shows_the_message_and_its_attempts_as_one(
    postgres_url: str, tmp_path: Path
) -> None:
    with scratch_postgres_database(postgres_url) as url:
        env = herald_environment(HERALD_LOG_LEVEL="WARNING")
        assert (
            run_herald(["db", "upgrade", "--database", url], env=env, cwd=tmp_path).returncode == 0
        )
        port = free_port()
        with HeraldProcess("api", log_dir=tmp_path) as api:
            api.start(
                ["serve", "--port", str(port), "--database", url, "--no-dispatcher"],
                env,
                cwd=tmp_path,
            )
            base = f"http://127.0.0.1:{port}"
            api.wait_healthy(f"{base}/readyz")
            accepted = httpx.post(f"{base}/events", json=SIGNUP, timeout=10)
            assert accepted.status_code == 202, accepted.text
            (message_id,) = [
                d["message_id"] for d in accepted.json()["decisions"] if "message_id" in d
            ]

            engine = create_engine(normalise_url(url))
            try:
                with engine.connect() as dispatcher:
                    # A dispatcher's round, recorded in one transaction, whose attempt row is
                    # written while an audit is between reading the messages and their attempts
                    # (the lock holds the audit there, deterministically).
                    dispatcher.begin()
                    dispatcher.execute(
                        text("LOCK TABLE delivery_attempts IN ACCESS EXCLUSIVE MODE")
                    )
                    audit: dict[str, Any] = {}
                    reader = threading.Thread(
                        target=lambda: audit.update(
                            httpx.get(f"{base}/audit/ada", timeout=30).json()
                        )
                    )
                    reader.start()
                    _wait_for_audit_to_block(engine)
                    dispatcher.execute(
                        text(
                            "UPDATE messages SET status = 'sent', attempts = 1, sent_us = 1 "
                            "WHERE message_id = :m"
                        ),
                        {"m": message_id},
                    )
                    dispatcher.execute(
                        text(
                            "INSERT INTO delivery_attempts "
                            "(message_id, attempt, at_us, outcome, detail, worker) "
                            "VALUES (:m, 1, 1, 'sent', 'ok', 'w')"
                        ),
                        {"m": message_id},
                    )
                    dispatcher.commit()
                    reader.join(30)
            finally:
                engine.dispose()

    (message,) = audit["messages"]
    outcomes = [attempt["outcome"] for attempt in message["delivery_attempts"]]
    # Before the delivery (pending, no attempt) or after it (sent, one attempt): not a mix.
    assert (message["status"], message["attempts"], outcomes) in [
        ("pending", 0, []),
        ("sent", 1, ["sent"]),
    ]


def _wait_for_audit_to_block(engine: Any) -> None:
    deadline = time.monotonic() + 20
    with engine.connect() as probe:
        while time.monotonic() < deadline:
            waiting = probe.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("the audit never reached the attempts")
