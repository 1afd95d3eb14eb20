"""Readers of the delivery settings' values. Each appends what is wrong with its value to
``problems``, named by the setting it is in (``where``), and returns None in its place, so
that one check lists every problem of a file."""

from __future__ import annotations

import ipaddress
import math
import re
import ssl
from collections.abc import Mapping
from datetime import time
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yarl

from herald.rules.rule_file.declarations import yaml_text_hint

ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")
# A send must end well within the dispatcher's 60 s claim on its message: a longer one is
# cut off there anyway, as if the receiver never answered.
LONGEST_SEND_S = 30.0


def quoted(value: Any) -> str:
    """``value`` as a problem quotes it, unless it holds a URL: a webhook's often carries its
    own token (chat hooks do), and problems are printed by the check and logged at start-up."""
    shown = repr(value)
    return "a URL (not repeated here: it may carry a token)" if "://" in shown else shown


def mapping(value: Any, where: str, problems: list[str]) -> Mapping[Any, Any] | None:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a mapping, got {quoted(value)}")
        return None
    return value


def unknown_keys(spec: Mapping[Any, Any], known: set[str], where: str, problems: list[str]) -> None:
    for key in sorted(map(str, set(spec) - known)):
        problems.append(f"{where}: unknown key `{key}` (known: {', '.join(sorted(known))})")


def text(
    spec: Mapping[str, Any], key: str, where: str, problems: list[str], *, required: bool = False
) -> str | None:
    value = spec.get(key)
    if value is None and not required:
        return None
    if value is None:  # left out: "got None" would be Python's word for it
        problems.append(f"{where}: needs `{key}`")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: `{key}` must be a non-empty string, got {quoted(value)}")
        return None
    return value


def address(
    spec: Mapping[str, Any], key: str, where: str, problems: list[str], *, required: bool = False
) -> str | None:
    """An email address, alone or with a display name: ``Herald <hello@example.com>``."""
    value = text(spec, key, where, problems, required=required)
    if value is None:
        return None
    if not ADDRESS.fullmatch(parseaddr(value)[1]) or "\n" in value or "\r" in value:
        problems.append(
            f"{where}: `{key}` must be an email address like hello@example.com, got {value!r}"
        )
        return None
    if len(getaddresses([value])) != 1:
        # Only the first would be checked, and a From of two addresses with no Sender
        # breaks RFC 5322: relays may refuse every email.
        problems.append(f"{where}: `{key}` must be one address, got {value!r}")
        return None
    return value


def flag(spec: Mapping[str, Any], key: str, where: str, problems: list[str]) -> bool:
    # bool("false") is True: a quoted "false" must not switch a setting on.
    value = spec.get(key, False)
    if not isinstance(value, bool):
        problems.append(f"{where}: `{key}` must be true or false, got {value!r}")
        return False
    return value


def secret(
    spec: Mapping[str, Any], key: str, env: Mapping[str, str], where: str, problems: list[str]
) -> str | None:
    name = spec.get(f"{key}_env")
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        problems.append(f"{where}.{key}_env: name an environment variable")
        return None
    if name not in env:
        problems.append(f"{where}: environment variable {name} (for {key}) is not set")
        return None
    if not env[name]:
        # Set but empty (``NAME=`` in an env file, an unset variable interpolated): taken
        # as given, a webhook would go unsigned and an SMTP login would send no password.
        problems.append(f"{where}: environment variable {name} (for {key}) is empty")
        return None
    return env[name]


def number(
    value: Any,
    where: str,
    problems: list[str],
    *,
    minimum: float,
    maximum: float | None = None,
    whole: bool = False,
) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # YAML's true
        problems.append(f"{where}: {shown} is not a number{yaml_text_hint(value)}")
        return None
    kind = "a whole number" if whole else "a number"
    if whole and value != int(value):
        problems.append(f"{where}: must be {kind}, got {value!r}")
        return None
    if maximum is not None and not minimum <= value <= maximum:
        problems.append(
            f"{where}: must be {kind} from {minimum:.15g} to {maximum:.15g}, got {value!r}"
        )
        return None
    if value < minimum:
        problems.append(f"{where}: must be {kind} of at least {minimum:.15g}, got {value!r}")
        return None
    return float(value)


def send_timeout(spec: Mapping[str, Any], where: str, problems: list[str]) -> float | None:
    """A provider's ``timeout`` in seconds (10 by default), at most ``LONGEST_SEND_S``."""
    return number(
        spec.get("timeout", 10.0),
        f"{where}.timeout",
        problems,
        minimum=0.001,
        maximum=LONGEST_SEND_S,
    )


def trusting(
    ca_file: str, where: str, problems: list[str], folder: Path | None
) -> ssl.SSLContext | None:
    """A TLS context trusting the PEM certificates of ``ca_file`` (a private CA, or a
    server's self-signed certificate) instead of the system's trust store. A relative
    ``ca_file`` is in ``folder``, as ``templates_dir`` is: the file must not depend on where
    Herald runs."""
    try:
        # Loaded now, so that `herald rules check` finds a missing or broken file.
        return ssl.create_default_context(cafile=(folder or Path()) / ca_file)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        problems.append(f"{where}: `ca_file` {ca_file!r} cannot be used: {exc}")
        return None


def is_http_url(url: str) -> bool:
    """Whether ``url`` is one the HTTP client will send to: http(s), a host, a port that
    is a number in range, no whitespace or control character (a YAML block scalar ends
    in a line break). Caught here, such a URL fails the rule file's check; caught at send
    time, it dead-letters every message of its channel."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range or not a number
        yarl.URL(url)  # the HTTP client's own reading
    except ValueError:  # e.g. an unclosed IPv6 bracket, a port "443x"
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# Labels of letters (any script), digits, hyphens and underscores (a container's service
# name may hold one), with an optional final dot.
_HOST_NAME = re.compile(r"[\w-]+(?:\.[\w-]+)*\.?")


def is_host(host: str) -> bool:
    """Whether ``host`` is a host name or an IP address alone, as a socket is connected to:
    not a URL, not ``host:port``, not a bracketed IPv6 address, no whitespace. Caught here,
    such a host fails the rule file's check; caught at send time, it retries every
    message of its channel until each is a dead letter."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return _HOST_NAME.fullmatch(host) is not None
    return True


def dns_name_problem(host: str) -> str | None:
    """Why ``host``, which ``is_host`` passed (or a URL's host), is no name DNS can look
    up, or None. The socket writes a name in its ASCII form (IDNA, ``xn--...`` for a
    label beyond ASCII) before looking it up, and a label it cannot write, or one over
    DNS's 63 characters, raised UnicodeError at every send rather than failing the rule
    file's check; a name over DNS's 253 characters failed every send at connect time."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    length = -1  # no dot before the first label
    for label in host.removesuffix(".").split("."):
        # The punycode length is the ASCII form's, give or take IDNA's mapping of the label
        # (to lower case, mostly), which keeps its length.
        ascii_form = label if label.isascii() else "xn--" + label.encode("punycode").decode()
        if len(ascii_form) > _LONGEST_LABEL:
            in_ascii = "" if label.isascii() else " (in its ASCII form, xn--...)"
            return f"a label is over {_LONGEST_LABEL} characters{in_ascii}"
        try:
            label.encode("idna")
        except UnicodeError:
            return f"the label {label!r} has no ASCII form (IDNA)"
        length += 1 + len(ascii_form)
    if length > _LONGEST_NAME:
        in_ascii = "" if host.isascii() else " (in its ASCII form, xn--...)"
        return f"the name is over {_LONGEST_NAME} characters{in_ascii}"
    return None


# RFC 1035, 2.3.4 (a name's 255 octets on the wire hold 253 characters, a final dot aside).
_LONGEST_LABEL = 63
_LONGEST_NAME = 253


def _as_base_60(number: int) -> str:
    """How a time of day could have become ``number``: YAML 1.1 reads an unquoted 21:00
    (or 21:00:00) as a number in base 60, 1260, which no one would guess from the number."""
    hours, minutes = divmod(number, 60)
    if 60 <= number < 24 * 60:
        written = f"{hours}:{minutes:02d}"
    elif 3600 <= number < 24 * 3600:
        written = f"{number // 3600}:{hours % 60:02d}:{minutes:02d}"
    else:
        return ': write the time as text, e.g. "21:00"'
    return (
        f': YAML reads {written} unquoted as the number {number} (base 60): quote it, "{written}"'
    )


_ONE_DIGIT_HOUR = re.compile(r"\d:\d\d(:\d\d)?")


def clock_time(value: Any, where: str, problems: list[str]) -> time | None:
    if value is None:
        problems.append(f"{where}: missing (a time like '21:00')")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        problems.append(f"{where}: {value!r} is a number{_as_base_60(value)}")
        return None
    text = str(value)
    if _ONE_DIGIT_HOUR.fullmatch(text):  # 8:00, as people write it
        text = "0" + text
    try:
        parsed = time.fromisoformat(text)
    except ValueError:
        problems.append(f"{where}: {value!r} is not a time like 21:00")
        return None
    if parsed.tzinfo is not None:
        problems.append(f"{where}: {value!r} has a UTC offset; quiet hours are in the user's zone")
        return None
    return parsed
