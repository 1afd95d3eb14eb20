"""Logs and metrics: personal data is masked in every log line, JSON logs are one object
per line with the request id, and the outbox gauges are read at each scrape."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from herald.observability.logging import configure_logging, request_id
from herald.observability.masking import mask_recipient, mask_text
from herald.observability.metrics import Metrics

AT = datetime(2025, 11, 3, 12, 0, 0, tzinfo=UTC)

# --- masking ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "masked"),
    [
        ("maria@example.com", "m***@example.com"),
        ("+351912345678", "***78"),
        ("internal", "internal"),
        ("12", "***"),
    ],
)
def test_a_recipient_is_masked_down_to_a_hint(recipient: str, masked: str) -> None:
    assert mask_recipient(recipient) == masked


@pytest.mark.parametrize(
    ("text", "secret", "hint"),
    [
        ("sent to maria@example.com", "maria@example.com", "m***@example.com"),
        ("to maria.silva+promo@mail.example.co.uk.", "maria.silva", "m***@mail.example.co.uk"),
        ("550 <josé.garcía@example.com> refused", "garcía", "j***@example.com"),
        ("to maria@münchen.de", "maria@", "m***@münchen.de"),
        ("sms to +351912345678 failed", "+351912345678", "***78"),
        ("sms to +351 912 345 678 failed", "912 345 678", "***78"),
        ('HTTP 400: {"error": "no such number (555) 123-4567"}', "123-4567", "number ***67"),
        ("+351912345678: unreachable", "912345678", "***78: unreachable"),
        ("sms to +14155552671", "4155552671", "***71"),
        ("phone 912345678 on file", "912345678", "***78"),
        ("call 00351912345678", "00351912345678", "***78"),
        ('{"phone": "+447700900123"}', "7700900123", "***23"),
        ("HTTP 400: no such number 555.123.4567", "123.4567", "number ***67"),
        ("sms to +33.6.12.34.56.78 failed", "12.34.56", "to ***78 failed"),
        ("sms to 06.12.34.56.78.", "34.56.78", "to ***78."),
        ("no postgresql://herald:hunter2@db:5432/herald", "hunter2", "herald:***@db:5432"),
        ("POST https://bot:tok@en@hooks.example.com/x", "tok@en", "bot:***@hooks.example.com"),
    ],
)
def test_emails_phone_numbers_and_url_passwords_in_free_text_are_masked(
    text: str, secret: str, hint: str
) -> None:
    masked = mask_text(text)

    assert secret not in masked
    assert hint in masked


def test_every_address_in_a_line_is_masked() -> None:
    masked = mask_text("from ana@example.com to bruno@example.org and +351912345678")

    assert "ana@" not in masked and "bruno@" not in masked and "912345678" not in masked


@pytest.mark.parametrize(
    "line",
    [
        "a" * 1_000_000 + "@",  # a long run with no address after it
        "x@" + "a." * 500_000,  # an "@" before a long run of labels
        "a." * 500_000 + " see https://x/@",  # a long run before a URL with no password
        "a.b@" * 250_000,
        "1234." * 200_000,  # a long dotted run of digits, a phone number's groups
    ],
    ids=["run-then-at", "at-then-labels", "run-then-url", "many-ats", "dotted-digits"],
)
def test_a_megabyte_line_is_masked_in_one_pass(line: str) -> None:
    # Guards against patterns that re-read the rest of a run from each of its characters:
    # one pass takes well under a second here, the old patterns about half an hour (a
    # property value that long in an alert line stopped delivery while it was masked).
    started = time.perf_counter()
    mask_text(line)
    assert time.perf_counter() - started < 5


def test_a_long_run_of_address_characters_still_has_its_address_masked() -> None:
    masked = mask_text("trace " + "x" * 100_000 + " from ana.lima@example.com")

    assert "ana.lima@" not in masked and "a***@example.com" in masked


@pytest.mark.parametrize(
    "text",
    [
        "on 2025-11-03",
        "at 12:00:00",
        "event_timestamp 2025-11-03T12:00:00Z",
        "received 2025-11-03T12:00:00.123456+00:00",
        "held until 2025-11-03 21:00:00+00:00",
        "batch 2025-11-03 of 12 events",
        "duplicate of evt_123",
        "event evt_1234567890123 was already stored",
        "message msg_3f2a9c1e0b4d5a6978",
        "amount 1425.00 EUR",
        "amount 1234567.89",
        "cannot connect to 192.168.100.200:8080",
        "from 10.120.130.140, and 192.168.100.200.",
        "total 12.345.678.901,50 EUR",
        "dated 2025.11.03",
        "attempt 2 of 5, next in 86400 s",
    ],
)
def test_dates_times_ids_and_amounts_are_left_alone(text: str) -> None:
    assert mask_text(text) == text


# --- log formatters, as configure_logging sets them up ---------------------------------


@pytest.fixture
def formatter_for() -> Iterator[Any]:
    """configure_logging(fmt)'s formatter; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def build(fmt: str) -> logging.Formatter:
        configure_logging("INFO", fmt)
        formatter = root.handlers[0].formatter
        assert formatter is not None
        return formatter

    try:
        yield build
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is not UTC (log times must still be UTC)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def record(
    message: str,
    *args: object,
    level: int = logging.INFO,
    exc_info: ExcInfo | None = None,
    **extra: object,
) -> logging.LogRecord:
    entry = logging.LogRecord("herald.delivery", level, __file__, 1, message, args, exc_info)
    entry.created, entry.msecs = AT.timestamp(), 0.0
    entry.__dict__.update(extra)
    return entry


def a_failure(text: str) -> ExcInfo:
    try:
        raise RuntimeError(text)
    except RuntimeError:
        info = sys.exc_info()
    assert info[0] is not None and info[1] is not None
    return info


def test_a_json_log_line_is_one_object_with_level_logger_masked_message_and_utc_time(
    formatter_for: Any, far_from_utc: None
) -> None:
    line = formatter_for("json").format(
        record("stub send email to %s", "maria@example.com", level=logging.WARNING)
    )

    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "herald.delivery"
    assert entry["message"] == "stub send email to m***@example.com"
    assert entry["ts"] == "2025-11-03T12:00:00.000Z"


def test_a_multi_line_message_stays_on_one_json_line(formatter_for: Any) -> None:
    line = formatter_for("json").format(record("first line\nsecond line"))

    assert "\n" not in line
    assert json.loads(line)["message"] == "first line\nsecond line"


def test_a_json_log_line_carries_the_request_id_only_inside_a_request(
    formatter_for: Any,
) -> None:
    formatter = formatter_for("json")
    token = request_id.set("req-42")
    try:
        inside = json.loads(formatter.format(record("in a request")))
    finally:
        request_id.reset(token)
    outside = json.loads(formatter.format(record("in the dispatcher")))

    assert inside["request_id"] == "req-42"
    assert "request_id" not in outside


def test_extra_fields_become_json_fields_with_strings_masked(formatter_for: Any) -> None:
    entry = json.loads(
        formatter_for("json").format(
            record(
                "sent",
                message_id="msg_3f2a9c1e0b4d",
                attempt=3,
                recipient="maria@example.com",
            )
        )
    )

    assert entry["message_id"] == "msg_3f2a9c1e0b4d"
    assert entry["attempt"] == 3
    assert entry["recipient"] == "m***@example.com"


def test_an_exception_in_a_json_log_line_is_masked_too(formatter_for: Any) -> None:
    failure = a_failure("cannot store maria@example.com, +351912345678")

    entry = json.loads(formatter_for("json").format(record("ingestion failed", exc_info=failure)))

    assert "RuntimeError" in entry["exc"]
    assert "maria@example.com" not in entry["exc"] and "912345678" not in entry["exc"]
    assert "m***@example.com" in entry["exc"]


def test_the_text_formatter_masks_the_message_but_not_the_utc_timestamp(
    formatter_for: Any, far_from_utc: None
) -> None:
    line = formatter_for("text").format(
        record("stub send sms to %s at %s", "+351912345678", "2025-11-03T12:00:00Z")
    )

    # The zone said: read as the machine's local time, a UTC time would be hours off.
    assert line == (
        "2025-11-03T12:00:00.000Z INFO herald.delivery: "
        "stub send sms to ***78 at 2025-11-03T12:00:00Z"
    )


def test_a_value_with_a_line_break_cannot_forge_a_text_log_line(formatter_for: Any) -> None:
    forged = "u_1\n2025-11-03 12:00:00,000 WARNING herald.delivery: all clear\x1b[0m"

    text = formatter_for("text").format(record("internal alert for user %s", forged))

    assert "\n" not in text and "\x1b" not in text
    assert text.endswith(
        "internal alert for user u_1\\n2025-11-03 12:00:00,000 WARNING herald.delivery: "
        "all clear\\x1b[0m"
    )


@pytest.mark.parametrize(
    ("separator", "escaped"),
    [("\x85", "\\x85"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"), ("\x9b", "\\x9b")],
)
def test_a_unicode_line_separator_cannot_forge_a_text_log_line(
    separator: str, escaped: str, formatter_for: Any
) -> None:
    forged = f"u_1{separator}2025-11-03 12:00:00,000 WARNING herald.delivery: all clear"

    text = formatter_for("text").format(record("internal alert for user %s", forged))

    assert len(text.splitlines()) == 1
    assert text.endswith(
        f"for user u_1{escaped}2025-11-03 12:00:00,000 WARNING herald.delivery: all clear"
    )


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029"])
def test_a_unicode_line_separator_stays_inside_its_json_log_line(
    separator: str, formatter_for: Any
) -> None:
    forged = f'u_1{separator}{{"level": "INFO", "message": "all clear"}}'

    line = formatter_for("json").format(record("internal alert for user %s", forged))

    assert len(line.splitlines()) == 1
    assert json.loads(line)["message"] == f"internal alert for user {forged}"


@pytest.mark.parametrize("override", ["\u202e", "\u202b", "\u2067"])
def test_a_bidirectional_override_cannot_reorder_a_text_log_line(
    override: str, formatter_for: Any
) -> None:
    """Shown raw, "u_\u202e21" in an alert's text displays as "u_12": another user."""
    text = formatter_for("text").format(record("internal alert for user %s", f"u_{override}21"))

    assert override not in text
    assert text.endswith(f"internal alert for user u_\\u{ord(override):04x}21")


def test_a_bidirectional_override_is_escaped_in_a_json_log_line_and_reads_back(
    formatter_for: Any,
) -> None:
    note = "\u202e2_u \u2066x\u2069"

    line = formatter_for("json").format(record("note %s", note, detail=note))

    assert not set(line) & {"\u202e", "\u2066", "\u2069"}
    entry = json.loads(line)
    assert (entry["message"], entry["detail"]) == (f"note {note}", note)


def test_right_to_left_marks_are_left_in_log_lines(formatter_for: Any) -> None:
    name = "\u05e9\u05e8\u05d4\u200f-7"

    text = formatter_for("text").format(record("for %s", name))
    line = formatter_for("json").format(record("for %s", name))

    assert text.endswith(f"for {name}")
    assert f'"message":"for {name}"' in line


@pytest.mark.parametrize("user", ["1234567890", "+351912345678", "maria@example.com"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_alert_names_its_user_and_event_even_when_an_id_looks_like_contact_data(
    user: str, fmt: str, formatter_for: Any
) -> None:
    ids = {"user_id": user, "event_id": "9876543210123"}
    alert = record("internal alert HIGH_RISK_ALERT for user %s (event %s)", *ids.values(), **ids)

    line = formatter_for(fmt).format(alert)

    message = json.loads(line)["message"] if fmt == "json" else line
    assert f"for user {user} (event 9876543210123)" in message
    if fmt == "json":
        assert json.loads(line)["user_id"] == user


@pytest.mark.parametrize("address", ["u_77@example.com", "u_77+news@example.com"])
def test_an_address_holding_the_user_id_is_still_masked(address: str, formatter_for: Any) -> None:
    line = formatter_for("text").format(record("mail to %s bounced", address, user_id="u_77"))

    assert address not in line and "u***@example.com" in line


def test_an_id_is_kept_wherever_it_stands_alone_and_masked_where_it_is_part_of_more(
    formatter_for: Any,
) -> None:
    ids = {"user_id": "9876543210", "event_id": "98765432101"}
    alert = record(
        "%s failed; retried as %s for 9876543210@example.com, then %s again",
        "9876543210",
        "98765432101",
        "9876543210",
        **ids,
    )

    message = formatter_for("text").format(alert).split(": ", 1)[1]

    assert message == (
        "9876543210 failed; retried as 98765432101 for 9***@example.com, then 9876543210 again"
    )


def test_an_exception_in_a_text_log_line_is_masked_too(formatter_for: Any) -> None:
    failure = a_failure("cannot store maria@example.com")

    text = formatter_for("text").format(record("ingestion failed", exc_info=failure))

    assert "RuntimeError" in text
    assert "maria@example.com" not in text and "m***@example.com" in text


# --- metrics -------------------------------------------------------------------------


class OutboxReading:
    """What the outbox holds, as the runtime would read it; counts its reads."""

    def __init__(self, by_status: dict[str, int], backlog: int, oldest_due_s: float) -> None:
        self.by_status, self.backlog, self.oldest_due_s = by_status, backlog, oldest_due_s
        self.reads = 0

    def __call__(self) -> tuple[dict[str, int], int, float]:
        self.reads += 1
        return dict(self.by_status), self.backlog, self.oldest_due_s


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample name and labels -> value, parsed back from the exposition text."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_outbox_gauges_show_what_the_read_function_reports() -> None:
    metrics = Metrics()
    metrics.watch_outbox(OutboxReading({"pending": 3, "sent": 10, "failed": 1}, 4, 12.5))

    samples = scrape(metrics)

    assert samples[("herald_messages", (("status", "pending"),))] == 3
    assert samples[("herald_messages", (("status", "sent"),))] == 10
    assert samples[("herald_messages", (("status", "failed"),))] == 1
    assert samples[("herald_outbox_backlog", ())] == 4
    assert samples[("herald_outbox_oldest_due_seconds", ())] == 12.5


def test_a_scrape_while_the_database_is_down_still_serves_every_counter() -> None:
    def unreachable() -> tuple[dict[str, int], int, float]:
        raise ConnectionError("connection refused")

    metrics = Metrics()
    metrics.watch_outbox(unreachable)
    metrics.count_event("payment_failed", "accepted")

    samples = scrape(metrics)

    assert samples[("herald_database_up", ())] == 0
    assert (
        samples[("herald_events_total", (("event_type", "payment_failed"), ("status", "accepted")))]
        == 1
    )
    assert not [name for name, _labels in samples if name.startswith("herald_outbox")]


def test_the_outbox_is_read_at_each_scrape_and_not_when_registering() -> None:
    metrics = Metrics()
    reading = OutboxReading({"pending": 1}, 1, 0.5)

    metrics.watch_outbox(reading)
    assert reading.reads == 0
    scrape(metrics)
    reading.by_status, reading.backlog = {"pending": 0, "sent": 1}, 0
    samples = scrape(metrics)

    assert reading.reads == 2
    assert samples[("herald_messages", (("status", "sent"),))] == 1
    assert samples[("herald_outbox_backlog", ())] == 0


def test_counters_are_exposed_with_their_labels() -> None:
    metrics = Metrics()
    metrics.count_event("signup_completed", "accepted")
    metrics.count_event("signup_completed", "accepted")
    metrics.count_delivery("email", "sent")

    samples = scrape(metrics)

    assert (
        samples[
            ("herald_events_total", (("event_type", "signup_completed"), ("status", "accepted")))
        ]
        == 2
    )
    assert samples[("herald_deliveries_total", (("channel", "email"), ("status", "sent")))] == 1


def test_two_apps_in_one_process_keep_separate_metrics() -> None:
    first, second = Metrics(), Metrics()
    first.events.labels("signup_completed", "accepted").inc()

    key = ("herald_events_total", (("event_type", "signup_completed"), ("status", "accepted")))
    assert scrape(first)[key] == 1
    assert key not in scrape(second)


def test_a_process_serves_no_metrics_of_what_it_does_not_do() -> None:
    # A `herald worker` ingests nothing, and an API whose dispatcher runs elsewhere sends
    # nothing: a scrape showing their counters at zero would be a false account.
    worker, api = Metrics(ingests=False), Metrics(delivers=False)
    for metrics in (worker, api):
        metrics.count_event("signup_completed", "accepted")
        metrics.observe_commit(1)
        metrics.count_delivery("email", "sent")

    ingestion = ("herald_events", "herald_decisions", "herald_ingest", "herald_commit")
    served_by_worker = {name for name, _ in scrape(worker)}
    assert "herald_deliveries_total" in served_by_worker
    assert not [name for name in served_by_worker if name.startswith(ingestion)]
    served_by_api = {name for name, _ in scrape(api)}
    assert "herald_commit_events_count" in served_by_api
    assert not [name for name in served_by_api if name.startswith("herald_deliveries")]
