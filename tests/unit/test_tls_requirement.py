"""What the TLS tests do without an `openssl` command to make their certificates: skip,
as PostgreSQL's tests do out of reach, except under `CI=true`, where that is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tls import self_signed_certificate


@pytest.mark.parametrize("ci", ["", "false", "0"])
def test_out_of_ci_a_missing_openssl_skips_the_tls_tests(
    ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without openssl in it
    monkeypatch.setenv("CI", ci)

    with pytest.raises(pytest.skip.Exception, match="no openssl command"):
        self_signed_certificate(tmp_path)


def test_under_ci_true_a_missing_openssl_is_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI must test TLS"):
        self_signed_certificate(tmp_path)
