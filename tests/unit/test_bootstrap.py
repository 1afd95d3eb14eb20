"""Wiring details a deployment would otherwise find out about in production."""

from __future__ import annotations

import pytest

from herald import bootstrap


def test_a_worker_id_fits_its_column_whatever_the_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bootstrap.socket, "gethostname", lambda: "h" * 253)

    assert len(bootstrap.worker_id()) <= 64  # claimed_by and worker are 64 characters
