"""Wiring details a deployment would otherwise find out about in production."""

from __future__ import annotations

import pytest

from herald import bootstrap
from herald.config import Settings


def test_a_worker_id_fits_its_column_whatever_the_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bootstrap.socket, "gethostname", lambda: "h" * 253)

    assert len(bootstrap.worker_id()) <= 64  # claimed_by and worker are 64 characters


@pytest.mark.parametrize("given", ["debug", "Warning", " ERROR "])
def test_a_log_level_is_read_in_any_case(given: str) -> None:
    assert Settings(log_level=given).log_level == given.strip().upper()


@pytest.mark.parametrize("given", ["JSON", "Text", " json "])
def test_a_log_format_is_read_in_any_case(given: str) -> None:
    assert Settings(log_format=given).log_format == given.strip().lower()


@pytest.mark.parametrize("token", ["", "pässwörd", "two words"])
@pytest.mark.parametrize("name", ["admin_token", "ingest_token"])
def test_a_token_no_client_could_send_exactly_is_refused_at_start(name: str, token: str) -> None:
    with pytest.raises(ValueError, match="visible ASCII characters without spaces"):
        Settings(**{name: token})


def test_a_token_of_visible_ascii_is_taken() -> None:
    assert Settings(admin_token="s3cr3t-~+/=").admin_token == "s3cr3t-~+/="


@pytest.mark.parametrize("given", ["nan", "inf"])
def test_a_statement_timeout_that_is_no_number_of_seconds_is_refused_as_such(given: str) -> None:
    with pytest.raises(ValueError, match="finite number"):
        Settings(postgres_statement_timeout=given)
