"""What `herald_events_total` counts of the requests refused before an event is read, over
real HTTP as `herald serve` serves the app: a body refused whole (malformed JSON, not an
object, too large, not JSON) is one rejected event of no type read, as its client sent
one and it failed; a request that is no client's of this server's (no token, another
Host) or that the server refuses before the app reads it (headers too large, no HTTP)
counts nowhere."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from herald.api.app import create_app
from herald.cli.http_protocol import MOST_HEADER_BYTES, RequestDeadlineProtocol
from herald.config import Settings
from herald.store.database import Database
from herald.store.migrate import upgrade
from tests.support.api_requests import signup
from tests.support.serving import served_on_a_thread, sqlite_url

TOKEN = "ingest-secret-0123456789"
INGEST = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
REJECTED = 'herald_events_total{event_type="unknown",status="rejected"}'


class Served:
    """Herald guarded by the ingest token alone, so answering loopback alone, on a port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def counted(self) -> dict[str, float]:
        """Each `herald_events_total` series served, by its labels."""
        return {
            series: float(value)
            for series, _, value in (
                line.rpartition(" ")
                for line in self.http.get("/metrics").text.splitlines()
                if line.startswith("herald_events_total{")
            )
        }

    def raw(self, request: bytes) -> bytes:
        """The server's answer to ``request``, sent as it is, up to its closing."""
        with socket.create_connection(("127.0.0.1", self.port)) as connection:
            connection.settimeout(10)
            # Refused as its head arrives, the rest is not read: the send may then fail.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.sendall(request)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
            return answer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("edge_refusals")
    url = sqlite_url(folder)
    database = Database(url)
    upgrade(database)
    database.dispose()
    settings = Settings(
        database_url=url,
        outbox_file=str(folder / "outbox.jsonl"),
        ingest_token=TOKEN,
        loopback_requests_only=True,  # as `herald serve` hands it down without both tokens
        dispatcher=False,
    )
    app = create_app(settings)
    with served_on_a_thread(app, RequestDeadlineProtocol, log_config=None) as port:
        client = Served(port)
        yield client
        client.http.close()


def _added(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        series: value - before.get(series, 0.0)
        for series, value in after.items()
        if value != before.get(series, 0.0)
    }


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/events", b"{not json", 422),
        ("/events", b"[]", 422),
        ("/events", b'"an event"', 422),
        ("/events", b"", 422),
        ("/events/batch", b"{not json", 422),
        ("/events/batch", b"[]", 422),
        ("/events", b'{"x": "' + b"x" * 1_100_000 + b'"}', 413),
    ],
)
def test_a_body_refused_whole_counts_one_rejected_event_of_no_type(
    served: Served, path: str, body: bytes, status: int
) -> None:
    before = served.counted()

    answer = served.http.post(path, content=body, headers={**JSON, **INGEST})

    assert answer.status_code == status, answer.text
    assert _added(before, served.counted()) == {REJECTED: 1.0}


def test_a_request_without_the_token_counts_nowhere(served: Served) -> None:
    before = served.counted()

    answers = [
        served.http.post("/events", json=signup()),
        served.http.post("/events", content=b"{not json", headers=JSON),
        served.http.post("/events/batch", content=b"[]", headers=JSON),
        served.http.post("/events", content=b"{}", headers={"Content-Type": "text/plain"}),
    ]

    assert [answer.status_code for answer in answers] == [401] * 4
    assert _added(before, served.counted()) == {}


def test_a_request_addressed_to_another_host_counts_nowhere(served: Served) -> None:
    before = served.counted()

    answers = [
        served.http.post("/events", json=signup(), headers={**INGEST, "Host": "rebound.example"}),
        served.http.post(
            "/events", content=b"{not json", headers={**JSON, **INGEST, "Host": "rebound.example"}
        ),
    ]

    assert [answer.status_code for answer in answers] == [421, 421]
    assert _added(before, served.counted()) == {}


def test_a_request_the_server_refuses_before_the_app_reads_it_counts_nowhere(
    served: Served,
) -> None:
    before = served.counted()
    head = f"POST /events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n"

    too_large = served.raw(
        (head + "X-Padding: " + "a" * MOST_HEADER_BYTES + "\r\n\r\n").encode("ascii")
    )
    not_http = served.raw((head + "Content-Length: 2\r\nNo colon here\r\n\r\n{}").encode("ascii"))

    assert too_large.startswith(b"HTTP/1.1 431 "), too_large[:200]
    assert not_http.startswith(b"HTTP/1.1 400 "), not_http[:200]
    assert _added(before, served.counted()) == {}


def test_an_accepted_event_still_counts_under_its_type(served: Served) -> None:
    before = served.counted()

    answer = served.http.post("/events", json=signup(user="u_counted"), headers=INGEST)

    assert answer.status_code == 202, answer.text
    series = 'herald_events_total{event_type="signup_completed",status="accepted"}'
    assert _added(before, served.counted()) == {series: 1.0}
