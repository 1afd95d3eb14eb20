"""/readyz and the metrics of a running server say when its schema falls behind or its
SQLite file is gone from under it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from herald.api.app import create_app
from herald.api.schemas.responses import ReadinessOut
from herald.config import Settings
from herald.store.database import Database
from herald.store.migrate import head_revision, upgrade


def test_readyz_answers_200_with_the_revision_when_the_schema_is_current(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=database_url, dispatcher=False, outbox_file=str(tmp_path / "o.jsonl")
    )

    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert response.json()["schema"] == head_revision()


def test_readyz_answers_503_once_the_schema_falls_behind(
    empty_database_url: str, tmp_path: Path
) -> None:
    database = Database(empty_database_url)
    upgrade(database)
    settings = Settings(
        database_url=empty_database_url, dispatcher=False, outbox_file=str(tmp_path / "o.jsonl")
    )

    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        with database.writer.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'older'"))
        response = client.get("/readyz")
        documented = client.get("/openapi.json").json()["paths"]["/readyz"]["get"]["responses"]
    database.dispose()

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "schema": f"at older, need {head_revision()}",
    }
    # The document gives the 503 the body it has, as it does the 200.
    for code in ("200", "503"):
        schema = documented[code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ReadinessOut"}, code
    ReadinessOut.model_validate(response.json())


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_readyz_answers_503_once_the_sqlite_file_is_deleted_or_replaced_under_the_server(
    change: str, tmp_path: Path
) -> None:
    """The server's open connections go on writing to the file they opened: events are
    still acknowledged, and a restart would not find them at the database's path."""
    path = tmp_path / "herald.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    settings = Settings(
        database_url=f"sqlite:///{path}", dispatcher=False, outbox_file=str(tmp_path / "o.jsonl")
    )

    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        for leftover in tmp_path.glob("herald.db*"):
            leftover.unlink()
        if change == "replaced":
            path.touch()  # a new, empty file where it was
        response = client.get("/readyz")

    assert response.status_code == 503
    said = "is gone" if change == "deleted" else "is another file"
    assert response.json() == {
        "status": "unavailable",
        "database": f"{path} {said}: not the SQLite file this process opened",
    }
    ReadinessOut.model_validate(response.json())


def test_the_metrics_say_the_database_is_down_once_its_sqlite_file_is_gone(
    tmp_path: Path,
) -> None:
    # herald_database_up stayed 1: a dispatcher, which has no /readyz, showed nothing
    # wrong while it delivered from a file that a restart would not find.
    path = tmp_path / "herald.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    settings = Settings(
        database_url=f"sqlite:///{path}", dispatcher=False, outbox_file=str(tmp_path / "o.jsonl")
    )

    with TestClient(create_app(settings)) as client:
        assert "herald_database_up 1.0" in client.get("/metrics").text
        for leftover in tmp_path.glob("herald.db*"):
            leftover.unlink()
        scraped = client.get("/metrics").text

    assert "herald_database_up 0.0" in scraped
    assert "herald_outbox_backlog" not in scraped
