"""Certificates for servers on 127.0.0.1, made by the ``openssl`` command: self-signed, or
issued by a private CA of their own.

Usage::

    certificate = self_signed_certificate(tmp_path)   # or private_ca_certificate(tmp_path)
    server_context = certificate.server_context()     # for the server
    client trusts certificate.ca_file                 # e.g. a CA file setting
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
    cert_file: Path  # PEM; also the CA file that trusts it, when self-signed
    key_file: Path
    ca_file: Path  # PEM of what a client trusts to accept it

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


_NEW_P256_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def self_signed_certificate(folder: Path) -> Certificate:
    """A one-day certificate for ``IP:127.0.0.1`` (P-256 key) written into ``folder``.

    Skips the test when there is no ``openssl`` command, and fails it under ``CI=true``."""
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    _openssl(
        "req", "-x509", *_NEW_P256_KEY, "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key_file), "-out", str(cert_file),
    )  # fmt: skip
    return Certificate(cert_file, key_file, ca_file=cert_file)


def private_ca_certificate(folder: Path) -> Certificate:
    """A one-day certificate for ``IP:127.0.0.1`` issued by a one-day CA of its own, all
    written into ``folder``: trusted by a client given ``ca_file``, by no system store.

    Skips the test when there is no ``openssl`` command, and fails it under ``CI=true``."""
    ca_file, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    cert_file, key_file, request = folder / "cert.pem", folder / "key.pem", folder / "cert.csr"
    extensions = folder / "cert.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "req", "-x509", *_NEW_P256_KEY, "-days", "1", "-subj", "/CN=Herald test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(ca_key), "-out", str(ca_file),
    )  # fmt: skip
    _openssl(
        "req", "-new", *_NEW_P256_KEY, "-subj", "/CN=127.0.0.1",
        "-keyout", str(key_file), "-out", str(request),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca_file), "-CAkey", str(ca_key),
        "-set_serial", "2", "-days", "1", "-extfile", str(extensions), "-out", str(cert_file),
    )  # fmt: skip
    return Certificate(cert_file, key_file, ca_file=ca_file)


def _openssl(*arguments: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        # As for PostgreSQL: CI=true, as CI services set it; CI=false or CI=0 is a local run.
        if os.environ.get("CI") == "true":
            pytest.fail("no openssl command to make a test certificate (CI must test TLS)")
        pytest.skip("no openssl command to make a test certificate")
    subprocess.run([openssl, *arguments], check=True, capture_output=True, timeout=30)
