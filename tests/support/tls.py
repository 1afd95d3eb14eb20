"""A self-signed certificate for servers on 127.0.0.1, made by the ``openssl`` command.

Usage::

    certificate = self_signed_certificate(tmp_path)
    server_context = certificate.server_context()   # for the server
    client trusts certificate.cert_file              # e.g. a CA file setting
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificate:
    cert_file: Path  # PEM; also the CA file that trusts it, being self-signed
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def self_signed_certificate(folder: Path) -> Certificate:
    """A one-day certificate for ``IP:127.0.0.1`` (P-256 key) written into ``folder``.

    Skips the test when there is no ``openssl`` command, and fails it under CI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("no openssl command to make a test certificate (CI must test TLS)")
        pytest.skip("no openssl command to make a test certificate")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key_file),
            "-out",
            str(cert_file),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Certificate(cert_file, key_file)
