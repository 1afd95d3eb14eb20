"""Settings, from arguments or ``HERALD_*`` environment variables (validated at start)."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Fields `herald serve` sets for the processes it starts, not settings an operator gives:
# --help and the README name every other field as its HERALD_* variable.
HANDED_DOWN = frozenset({"server_pid", "loopback_requests_only"})
# Settings given in seconds, whose bounds a refusal says in days, hours or minutes as well:
# "at most 366 days (31,622,400 s)", not the bare number of seconds.
IN_SECONDS = frozenset({"postgres_statement_timeout", "clock_skew"})


# Each command validates the settings it reads, and those alone: a maintenance command
# or a worker run from a shell or a cron job that shares the server's environment must
# not refuse to start for a bad HERALD_PORT, which only `herald serve` reads.
class DatabaseSettings(BaseSettings):
    """The one setting of the commands that only open the database (``db upgrade``,
    ``db current``, ``db backup``, ``messages``, ``users audit``)."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    database_url: str = "sqlite:///./herald.db"

    @field_validator("database_url")
    @classmethod
    def _names_a_database(cls, value: str) -> str:
        # Set from a variable the deployment never filled (HERALD_DATABASE_URL=$DB_URL),
        # it was read as a URL, and refused as one naming neither setting nor default.
        if not value.strip():
            raise ValueError(
                "must name a database (leave it unset for the default, "
                f"{cls.model_fields['database_url'].default})"
            )
        return value


class StubFileSettings(DatabaseSettings):
    """The settings of the commands that find the stub provider's file as the server
    does (``users forget``, which removes the user's sends from it)."""

    outbox_file: str | None = None  # the stub provider's file; beside the database by default

    @field_validator("outbox_file")
    @classmethod
    def _names_an_outbox_file(cls, value: str | None) -> str | None:
        # Set from a variable the deployment never filled (HERALD_OUTBOX_FILE=$OUTBOX), it
        # was taken as unset, and the stub wrote personal data to a file no one named.
        if value is not None and not value.strip():
            raise ValueError(
                "must name a file (unset the variable for the default: outbox.jsonl beside "
                "an SQLite database, else in the working folder)"
            )
        return value


class RulesSettings(BaseSettings):
    """The one setting of ``rules try``, which decides in a database of its own."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    rules: str | None = Field(None, description="rule file; the packaged default when unset")

    @field_validator("rules")
    @classmethod
    def _names_a_file(cls, value: str | None) -> str | None:
        # An empty HERALD_RULES= would be read as the current folder, and refused as one.
        if value is not None and not value.strip():
            raise ValueError(
                "must name a rule file (unset the variable for the packaged default rules)"
            )
        return value


class RetentionSettings(DatabaseSettings, RulesSettings):
    """The settings of ``prune``: the database, and the rule file whose once-per-user
    rules decide which messages are redacted. Not the stub provider's file, which a
    prune never opens (the sends it recorded stay until a user is forgotten)."""


class RuleFileSettings(StubFileSettings, RulesSettings):
    """The settings of the commands that read the rule file and find the stub provider's
    file as the server does (``rules check``, which names it as the server would write it)."""


class WorkerSettings(RuleFileSettings):
    """The settings of a process that delivers: all of ``herald worker``'s, which
    ``herald serve`` reads too."""

    # `herald serve` delivers messages; a worker always does, whatever the variable says.
    dispatcher: bool = True
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # A port of its own for the Prometheus metrics of the process that delivers (`herald
    # worker`, `herald serve`'s dispatcher process, or the API with --dispatcher-inline).
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    # SQLite: flush the write-ahead log to disk at each commit, so that a power cut loses no
    # acknowledged event either (not only a killed process). Off by default: it cost 5-30%
    # of ingestion's rate in the benchmark (see the README).
    sqlite_flush_each_commit: bool = False
    # PostgreSQL: seconds a statement of the API or the dispatcher may run before the
    # server cancels it (0: no limit). A lock another client holds would otherwise hold a
    # request, a dispatcher round and a pooled connection for ever; cancelled, the request
    # answers 503 and the round is tried again. A limit the database URL (options=-c
    # statement_timeout=...), the role, the database or the server's configuration sets
    # is kept. Maintenance commands (db upgrade, prune, messages retry), which may run for
    # minutes, and the checks made before a process serves run without one.
    postgres_statement_timeout: float = Field(30.0, ge=0, le=86_400, allow_inf_nan=False)
    # Unsubscribe links in marketing email (List-Unsubscribe, RFC 2369 and 8058): the base
    # URL recipients reach this Herald at, and the key that signs each link. Read by the
    # process that sends (the links it writes) and by the API (the links it answers).
    # At most 200 characters: with the longest token, a link's header stays within the
    # 998 characters a line of an email may hold.
    public_url: str | None = Field(None, max_length=200)
    unsubscribe_key: str | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_log_level(cls, value: object) -> str:
        # Checked here, so that a typo is refused in one line before anything starts,
        # instead of as a traceback from logging or uvicorn.
        level = str(value).strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(
                f"must be {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]} (in any case)"
            )
        return level

    @field_validator("metrics_host")
    @classmethod
    def _metrics_address(cls, value: str) -> str:
        return names_an_address(value)

    @field_validator("public_url")
    @classmethod
    def _public_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be the absolute http(s) URL recipients reach Herald at, such as "
                "https://herald.example.com"
            )
        if parts.query or parts.fragment or "?" in value or "#" in value:
            raise ValueError("must be a base URL without a query or fragment")
        # Links are the base and /unsubscribe/...: a trailing slash would double it.
        return value.strip().rstrip("/")

    @field_validator("unsubscribe_key")
    @classmethod
    def _long_enough_key(cls, value: str | None) -> str | None:
        # Anyone who finds the key can unsubscribe anyone: it must be too long to guess.
        if value is not None and len(value) < MIN_UNSUBSCRIBE_KEY_CHARS:
            raise ValueError(
                f"must hold at least {MIN_UNSUBSCRIBE_KEY_CHARS} characters, random ones "
                "(as Python's secrets.token_urlsafe(32) makes)"
            )
        return value

    def unsubscribe_problem(self) -> str | None:
        """Why the unsubscribe link settings cannot be used, if one is set without the
        other: a deployment that set one meant marketing email to carry links, and would
        otherwise send it without them, unnoticed."""
        if (self.public_url is None) == (self.unsubscribe_key is None):
            return None
        given, missing = (
            ("HERALD_PUBLIC_URL", "HERALD_UNSUBSCRIBE_KEY")
            if self.unsubscribe_key is None
            else ("HERALD_UNSUBSCRIBE_KEY", "HERALD_PUBLIC_URL")
        )
        return (
            f"refusing to start: {given} is set without {missing}; unsubscribe links need "
            "both (or unset both to send marketing email without them)"
        )

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_in_any_case(cls, value: object) -> object:
        # As the level is read: HERALD_LOG_FORMAT=JSON beside HERALD_LOG_LEVEL=DEBUG was
        # refused, though the level is taken in any case.
        return value.strip().lower() if isinstance(value, str) else value


class Settings(WorkerSettings):
    """Every setting: ``herald serve``'s, those of the API processes it starts among them."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_token: str | None = None  # guards /audit, /rules, /users
    ingest_token: str | None = None  # guards /events
    # `herald serve` delivers from a child process of its own (on another core), or on
    # the API's event loop
    dispatcher_process: bool = True
    workers: int = Field(1, ge=1, le=64)
    # The most connections each API process keeps open; one past it is answered 503 and
    # closed (see cli/connection_cap.py). Each holds a file descriptor: the default stays
    # within a usual `ulimit -n` of 1024 with the process's own files beside it, and far
    # above what a server behind a proxy or a pool of clients keeps open.
    max_connections: int = Field(512, ge=1, le=1_000_000)
    # Seconds an event's time may be ahead of this server's clock: a sender's clock running
    # fast. A later event is refused (422), as its traits would win over those of every
    # event dated before it, and so over what the user says until that time comes.
    clock_skew: float = Field(300.0, ge=0, le=366 * 86_400, allow_inf_nan=False)
    # FastAPI's own OpenTelemetry spans, metrics and logs for each request, through the
    # providers the process configured. Off: Herald's metrics are Prometheus, and with it
    # on every request looks the providers up again, a few percent of ingestion's CPU.
    opentelemetry: bool = False
    # Set by `herald serve` for its API processes when it runs several: the process they
    # stop without (not a setting of its own).
    server_pid: int | None = None
    # Set by `herald serve` when a token is missing, and so it binds to loopback alone: its
    # API then answers only requests addressed to a loopback name (not a setting of its
    # own). A web page could otherwise reach it through DNS rebinding: its own name,
    # answered with 127.0.0.1, makes the page's requests same-origin, with no token to stop
    # them reading the audit or posting events.
    loopback_requests_only: bool = False

    @field_validator("host")
    @classmethod
    def _address(cls, value: str) -> str:
        return names_an_address(value)

    @field_validator("admin_token", "ingest_token")
    @classmethod
    def _usable_token(cls, value: str | None) -> str | None:
        # An empty token would let `Authorization: Bearer` alone in, and one beyond visible
        # ASCII could never match: HTTP headers arrive as Latin-1, not UTF-8.
        if value is None:
            return None
        if not value or not all("!" <= char <= "~" for char in value):
            raise ValueError(
                "a token must be visible ASCII characters without spaces, and not empty "
                "(unset the variable for no token)"
            )
        return value

    def exposure_problem(self) -> str | None:
        """Why it is unsafe to serve on ``host`` with these settings, if it is."""
        if self.admin_token is not None and self.admin_token == self.ingest_token:
            return (
                "refusing to start: HERALD_ADMIN_TOKEN is the same as HERALD_INGEST_TOKEN, "
                "so every client that sends events could read the audit's personal data "
                "and change users' preferences; give the admin a token of its own"
            )
        if is_loopback_host(self.host):
            return None
        if not (self.admin_token and self.ingest_token):
            return (
                f"refusing to listen on {self.host}: the audit exposes personal data. Set "
                "both HERALD_ADMIN_TOKEN and HERALD_INGEST_TOKEN, or bind to 127.0.0.1"
            )
        for name, token in (
            ("HERALD_ADMIN_TOKEN", self.admin_token),
            ("HERALD_INGEST_TOKEN", self.ingest_token),
        ):
            if len(token) < MIN_PUBLIC_TOKEN_CHARS:
                return (
                    f"refusing to listen on {self.host}: {name} has {len(token)} characters, "
                    f"too few for a token anyone on the network may try to guess: give it "
                    f"at least {MIN_PUBLIC_TOKEN_CHARS} random ones (`python -c 'import "
                    "secrets; print(secrets.token_urlsafe(32))'`), or bind to 127.0.0.1"
                )
        return None


def names_an_address(host: str) -> str:
    """``host``, unless it is blank: set from a variable a deployment never filled, it was
    taken as an address to bind, and refused in words that named neither setting."""
    if not host.strip():
        raise ValueError(
            "must name an address, such as 127.0.0.1 or 0.0.0.0 (leave it unset for 127.0.0.1)"
        )
    return host


# 32 characters from `token_urlsafe` are 192 bits: no one finds the key by trying links.
MIN_UNSUBSCRIBE_KEY_CHARS = 32


# Nothing slows down a client trying tokens: beyond loopback, a token must be too long to
# find by trying (16 characters from `token_urlsafe` are 96 bits), not a word.
MIN_PUBLIC_TOKEN_CHARS = 16


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address, judged from the name alone (no DNS lookup)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False
