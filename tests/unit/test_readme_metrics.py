"""The README's table of metrics has a row for each metric a scrape shows, and names no
other; each labelled one with its labels as the code gives them: an operator writes
PromQL from it (`sum by (status) (herald_deliveries_total)`)."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from herald.observability.metrics import Metrics

README = Path(__file__).resolve().parents[2] / "README.md"


def labels_in_code() -> dict[str, tuple[str, ...]]:
    """Each labelled metric's labels, as a scrape shows them, by the name PromQL uses."""
    metrics = Metrics()
    metrics.count_event("signup_completed", "accepted")
    metrics.count_many(metrics.decisions, [("WELCOME_EMAIL", "triggered")])
    metrics.count_delivery("email", "sent")
    metrics.observe_delivery("email", 0.1)
    metrics.observe_ingest("event", 0.001)
    metrics.watch_outbox(lambda: ({"pending": 1}, 1, 0.5))
    labelled: dict[str, tuple[str, ...]] = {}
    for family in metrics.registry.collect():
        labels = tuple(key for key in family.samples[0].labels if key != "le")
        if labels:
            labelled[family.name + ("_total" if family.type == "counter" else "")] = labels
    return labelled


def test_the_readme_names_the_endpoint_values_of_the_ingestion_timing() -> None:
    # It said "by `endpoint`: a POST /events or /events/batch", and a query for
    # endpoint="/events" found nothing: the values are the routes' own words.
    routes = (Path(__file__).resolve().parents[2] / "src/herald/api/routes/events.py").read_text()
    values = re.findall(r'observe_ingest\("(\w+)"', routes)
    [row] = [line for line in README.read_text().splitlines() if "`herald_ingest_seconds`" in line]

    assert sorted(values) == ["batch", "event"]
    assert sorted(re.findall(r"`(\w+)` for", row)) == sorted(values)


def test_every_metric_the_readme_names_is_one_a_scrape_shows() -> None:
    # A renamed metric would leave the README's name in operators' dashboards, matching
    # nothing.
    metrics = Metrics()
    metrics.count_delivery("email", "sent")
    metrics.watch_outbox(lambda: ({"pending": 1}, 1, 0.5))
    scraped = generate_latest(metrics.registry).decode()
    names = set(re.findall(r"^# TYPE (\w+) ", scraped, re.M))  # as PromQL names them
    named = set(re.findall(r"`(herald_\w+)`", README.read_text(encoding="utf-8")))

    assert "herald_database_up" in named
    assert named - names == set()


def test_a_scrape_shows_no_created_series_beside_the_metrics() -> None:
    # Each counter and histogram was also served as `*_created`: twice the series to store.
    metrics = Metrics()
    metrics.count_event("signup_completed", "accepted")
    metrics.count_delivery("email", "sent")
    metrics.observe_ingest("event", 0.001)

    scraped = generate_latest(metrics.registry).decode()

    assert "herald_events_total" in scraped
    assert "_created" not in scraped


def metrics_table() -> dict[str, str]:
    """The README's table of metrics: each row's labels cell, by the metric it is about."""
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(herald_\w+)`[^|]*\|([^|]*)\|", text, re.M)
    return {name: labels.strip() for name, labels in rows}


def test_every_metric_a_scrape_shows_has_a_row_in_the_readme_s_table() -> None:
    # The README named four of the nine, and described the others in words an operator
    # could not write a query from ("shows the outbox": herald_messages,
    # herald_outbox_backlog and herald_outbox_oldest_due_seconds).
    metrics = Metrics()
    metrics.count_delivery("email", "sent")
    metrics.watch_outbox(lambda: ({"pending": 1}, 1, 0.5))
    scraped = set(re.findall(r"^# TYPE (\w+) ", generate_latest(metrics.registry).decode(), re.M))

    assert scraped - set(metrics_table()) == set()


def test_each_labelled_metric_s_row_gives_its_labels_in_order() -> None:
    table = metrics_table()
    labelled = labels_in_code()
    assert "herald_messages" in labelled

    for name, labels in labelled.items():
        assert tuple(re.findall(r"`(\w+)`", table[name])) == labels, name
    for name in table.keys() - labelled.keys():
        assert table[name] == "", name
