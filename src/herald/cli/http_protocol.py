"""The HTTP protocol ``herald serve`` speaks: uvicorn's, with a deadline for each request to
arrive whole, a limit on the size of its head (``MOST_HEADER_BYTES``, answered ``431``),
and one on how long an answer may wait to be taken.

uvicorn times a connection out only while it idles between requests. A client that
connects and sends nothing, or a request line and then a header a minute, or headers
and then a body a byte at a time, held its connection, and a file descriptor, for ever:
anyone who reaches the port could open such connections until the process ran out of
descriptors and refused every client. A body needs no token either: a GET route answers
without reading one, and uvicorn goes on reading what follows its headers, a byte at a
time if so sent, with no timeout at all once the answer is sent.

So a request's headers must arrive whole within ``HEADERS_SECONDS`` of the connection,
or of the request's first byte on a connection kept alive, and its body by
``BODY_SECONDS`` after that. ``BODY_SECONDS`` lets the largest body Herald reads, an 8 MiB
batch, arrive at 1.1 Mbit/s even after headers that took their whole time. A connection
that misses either is closed; one whose body is late and whose answer has not begun is
first answered ``408`` (late headers make no request to answer).

An answer, too, must be taken: a client that stopped reading one larger than the
network's buffers hold (an audit page can be 16 MiB) kept its connection, and the unsent
rest of the answer in this process's memory, for as long as it stayed connected. Once
the answer fills the buffers, the client must take some of it in every
``ANSWER_STALL_SECONDS``, or the connection is dropped with what it held.

And a process keeps at most so many connections open: one more is refused at once
(see ``connection_cap``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from herald.cli.connection_cap import REFUSAL_LINGER_SECONDS, REFUSALS_AT_ONCE, refuse

HEADERS_SECONDS = 30.0
# The most bytes a request's line and headers may take (a bearer token, a request id and
# the usual few take well under 1 KiB). The parser keeps a header whole until it ends, and
# joins its pieces as they come, so without a limit a client sending one header for its
# 30 s had the server hold hundreds of megabytes, and parse them while every other request
# waited. Counted from the read of the socket the head begins in when that read begins
# with it, else from the next read: one that also holds the end of the request before it
# cannot say where the head begins.
MOST_HEADER_BYTES = 64 * 1024
BODY_SECONDS = 60.0
# A client reading tens of kilobytes a second makes room in the socket's buffer, which is
# what is watched, well within this.
ANSWER_STALL_SECONDS = 60.0


class RequestDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request's headers do not
    arrive whole within ``headers_seconds``, or its body by ``body_seconds`` after that.

    One timer a connection, not one a request: a request only notes when it is due, and
    the timer, when it fires, closes the connection if that time is past, or looks again
    when it will be. A timer set and cancelled for every request cost a few microseconds
    of each one under load; noting costs a float's addition and an assignment.

    A body the server is not reading when its time is up (a request pipelined behind
    another one's answer, one whose unread body has filled uvicorn's buffer, or one
    waiting for ``100 Continue``) is not the client's delay: it gets ``body_seconds``
    more from then."""

    headers_seconds = HEADERS_SECONDS
    body_seconds = BODY_SECONDS
    answer_stall_seconds = ANSWER_STALL_SECONDS
    most_header_bytes = MOST_HEADER_BYTES
    refusals_at_once = REFUSALS_AT_ONCE
    refusal_linger_seconds = REFUSAL_LINGER_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The most connections the process keeps open (see ``connection_cap``), given as
        # uvicorn's ``limit_concurrency``, which its config carries to every API process.
        # uvicorn would check it for each request, and answer 503 once the process has
        # that many connections, its own among them: one fewer than the cap served, and
        # a flood of connections that send nothing still accepted. Checked here once a
        # connection, uvicorn's own check is off.
        self.most_connections = self.limit_concurrency
        self.limit_concurrency = None
        # Running while the answer being sent fills the buffers; rare (a large answer
        # to a slow or stopped client), so a timer of its own each time.
        self._stall: asyncio.TimerHandle | None = None
        # When the request now arriving must have arrived, its headers and then its body
        # (loop time); None while none is arriving (a request being answered, or idle
        # between requests, which uvicorn's keep-alive timeout bounds).
        self._due: float | None = None
        self._watch: asyncio.TimerHandle | None = None
        # Whether the request now arriving is still in its line and headers, which
        # request that is (counted from the connection's first), and its bytes so far.
        self._in_head = False
        self._heads_begun = 0
        self._head_bytes = 0
        # Whether a request has begun and not yet arrived whole (its head or its body).
        self._in_message = False
        # The bytes of the request's line and headers the parser has given whole: a head
        # that arrived in the reads that ended the request before it escapes the count
        # by reads, not this one.
        self._head_size = 0
        # Once a head is refused, nothing more the connection brings is served.
        self._head_refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.most_connections is not None and len(self.connections) >= self.most_connections:
            refuse(
                transport,
                self.server_state,
                self.app_state,
                cap=self.most_connections,
                at_once=self.refusals_at_once,
                linger_seconds=self.refusal_linger_seconds,
            )
            return
        super().connection_made(transport)
        self._due = self.loop.time() + self.headers_seconds
        self._watch = self.loop.call_later(self.headers_seconds, self._look)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._end_stall()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._watch_answer(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self._end_stall()
        super().resume_writing()

    def _end_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _watch_answer(self, unsent: int) -> None:
        self._stall = self.loop.call_later(self.answer_stall_seconds, self._look_at_answer, unsent)

    def _look_at_answer(self, unsent_before: int) -> None:
        """Drop the connection of a client that took none of its answer since the last
        look, and the answer's unsent rest with it: closing it would wait for the client
        to take that rest first, as long as the client liked. The buffers staying full is
        not enough: the app writes an answer whole, and they stay so until its last 16 KiB
        however fast the client reads. (The app writes nothing more meanwhile: it waits
        for the buffers to empty.)"""
        unsent = self.transport.get_write_buffer_size()
        if unsent < unsent_before:
            self._watch_answer(unsent)
            return
        self._stall = None
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._head_refused or self.transport.is_closing():  # the rest is not read
            return
        head = self._heads_begun if self._in_head else None
        begun, between_requests = self._heads_begun, not self._in_message
        super().data_received(data)
        if not self._in_head:
            return
        if head is not None and self._heads_begun == head:
            # All of ``data`` was the head of one request, begun in an earlier read.
            self._head_bytes += len(data)
        elif between_requests and self._heads_begun == begun + 1:
            # ``data`` began the head, and is all of it so far: a head sent whole in one
            # write was otherwise let through at up to twice the limit.
            self._head_bytes = len(data)
        if self._head_bytes > self.most_header_bytes:
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._in_message = True
        self._heads_begun += 1
        self._head_bytes = self._head_size = 0
        if self._due is None:  # the first request's time began with the connection
            self._due = self.loop.time() + self.headers_seconds

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and the line's end
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_refused or self._head_size > self.most_header_bytes:
            # Not handed to the app: the 431 is its answer, and the connection closes.
            self._refuse_head()
            return
        self._in_head = False
        if self._due is not None:
            self._due += self.body_seconds
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        # The parser asks for the upgrade once the head has ended, refused or not: the
        # refused one has no request (uvicorn's upgrade read its method, and failed with a
        # traceback), and its 431 is its answer.
        if not self._head_refused:
            super().handle_websocket_upgrade()

    def on_body(self, body: bytes) -> None:
        if not self._head_refused:  # else there is no request of the app's to take it
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._due = None
        self._in_message = False
        if not self._head_refused:
            super().on_message_complete()

    def _look(self) -> None:
        if self.transport.get_protocol() is not self:
            # Upgraded to a WebSocket, whose protocol now has the connection (and times
            # it itself): this one's connection_lost will never come to stop the timer.
            self._watch = None
            return
        now = self.loop.time()
        due = self._due
        if due is not None and now >= due:
            if not (self._reading_body() and self._body_held_by_server()):
                self._watch = None
                self._time_out()
                return
            due = self._due = now + self.body_seconds
        wait = self.headers_seconds if due is None else due - now
        self._watch = self.loop.call_later(wait, self._look)

    def _reading_body(self) -> bool:
        """Whether the request arriving has sent its headers: its cycle, made from them,
        has the request's scope (begun anew by each request's first byte)."""
        return self.cycle is not None and self.cycle.scope is self.scope

    def _body_held_by_server(self) -> bool:
        return bool(self.pipeline) or self.flow.read_paused or self.cycle.waiting_for_100_continue

    def _time_out(self) -> None:
        """Close the connection, answering ``408`` first when the request's body is late
        and its answer has not begun (a GET route answers without reading its body)."""
        if self.transport.is_closing():
            return
        if self._reading_body() and not self.cycle.response_started:
            self.cycle.disconnected = True  # the app's answer, if it made one, goes nowhere
            self.transport.write(self._late_body_answer())
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_refused and self.cycle.response_complete:
            self._answer_refused_head()

    def _refuse_head(self) -> None:
        """Answer ``431`` and close the connection: what more the client sends is not read.
        While the requests before it (pipelined) are still being answered, once they are:
        the 431 would land in the middle of their answers, and closing at once lost them."""
        self._head_refused = True
        if self.cycle is None or self.cycle.response_complete:
            self._answer_refused_head()

    def _answer_refused_head(self) -> None:
        if self.transport.is_closing():
            return
        text = (
            f"the request's line and headers take more than {self.most_header_bytes:,} bytes: "
            f"Herald reads at most {self.most_header_bytes:,} bytes of them"
        )
        self.transport.write(self._plain_answer(431, text))
        self.transport.close()

    def _late_body_answer(self) -> bytes:
        text = (
            f"the request's body did not arrive in time: Herald waits {self.headers_seconds:g} s "
            f"for a request's headers and {self.body_seconds:g} s more for its body"
        )
        return self._plain_answer(408, text)

    def _plain_answer(self, status: int, said: str) -> bytes:
        """A whole answer of ``status`` with ``said`` as plain text, closing the connection."""
        text = said.encode()
        lines = [STATUS_LINE[status]]
        # The headers uvicorn puts on every answer (date, server).
        lines += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        lines += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(text),
            b"connection: close\r\n\r\n",
            text,
        ]
        return b"".join(lines)
