"""Serving the receiver with uvicorn, with the request head bounded before anything reads it.

uvicorn's httptools parser (what ``http="auto"`` picks when httptools is installed) accepts a
head of any size: a 128 MiB header was buffered for 37 s before the app saw the request, and
stalled every other connection meanwhile. :class:`BoundedHttpToolsProtocol` counts the head as
it arrives and, past ``MAX_HEADER_BYTES`` or ``MAX_HEADER_COUNT``, answers 431 and closes the
connection without reading further. Without httptools, uvicorn's h11 parser gets the same byte
bound through ``h11_max_incomplete_event_size`` (h11 answers that with 400, not 431).
"""

from __future__ import annotations

import asyncio
from typing import Any

MAX_HEADER_BYTES = 16 * 1024  # request line and headers together
MAX_HEADER_COUNT = 100
#: Longest a request head may take to arrive, from the connection's start (or, on a kept-alive
#: connection, from the next request's first byte): a sender trickling a head, or sending
#: nothing, held its connection for as long as it liked (the body has its own deadline, in the app).
HEAD_DEADLINE_S = 10.0
#: Connections and requests served at once; past it uvicorn answers 503 at once instead of
#: letting many slow senders pile up sockets and memory. With the head deadline a connection
#: that sends nothing is closed after HEAD_DEADLINE_S, so filling this takes a sender opening
#: over MAX_CONCURRENCY / HEAD_DEADLINE_S connections a second without pause.
MAX_CONCURRENCY = 1024


def _bounded_protocol() -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol with the head bounded, or None without httptools.

    Long because it holds the whole class (small methods, one per parser callback): the class
    is made here, not at import, so uvicorn and httptools load only when something serves.
    """
    try:
        import httptools  # noqa: F401 - uvicorn's httptools protocol needs it
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # pragma: no cover - uvicorn without httptools: h11 and its own bound
        return None

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol that refuses a request head over the bounds with 431."""

        max_header_bytes = MAX_HEADER_BYTES
        max_header_count = MAX_HEADER_COUNT
        head_deadline_s = HEAD_DEADLINE_S

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_open = True  # bytes arriving now belong to a head not yet complete
            self._head_bytes = 0  # bytes received while the head was open (an upper bound of its size)
            self._head_size = 0  # request line and headers seen by the parser
            self._head_count = 0
            self._too_large = False  # the parser saw a complete head over the bounds
            self._refused = False  # 431 sent, connection closing
            self._head_timer: asyncio.TimerHandle | None = None  # the head's deadline, once its first byte is in

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._start_head_timer()  # a connection that never sends a byte has a deadline too

        def _start_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_deadline_s, self._head_too_slow)

        def _over(self) -> bool:
            """What the parser has seen of the head is over a bound (bytes of a body never count)."""
            return (
                self._too_large or self._head_size > self.max_header_bytes or self._head_count > self.max_header_count
            )

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._head_open:
                self._head_bytes += len(data)
                self._start_head_timer()
            super().data_received(data)
            # Still in the head after this chunk: everything received since it began is head.
            unfinished = self._head_open and self._head_bytes > self.max_header_bytes
            if not self._refused and (self._over() or unfinished):
                self._refuse()

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self._head_open and not self._refused and not self.transport.is_closing():
                self._refuse(408, b"Request head not received in time.")

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

        def _refuse(self, status: int = 431, msg: bytes = b"Request header fields too large.") -> None:
            self._refused = True
            self._stop_head_timer()
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: " + str(len(msg)).encode() + b"\r\n",
                        b"connection: close\r\n\r\n",
                        msg,
                    ]
                )
            )
            self.transport.close()

        def on_message_begin(self) -> None:
            self._head_open = True
            self._head_size = self._head_count = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._head_size += len(url)
            if not self._over():
                super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._head_size += len(name) + len(value) + 4
            self._head_count += 1
            if not self._over():
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head_open = False
            self._head_bytes = 0
            self._stop_head_timer()
            if self._over():
                self._too_large = True  # the app never sees it; data_received answers 431
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._too_large:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._too_large:
                super().on_message_complete()

    return BoundedHttpToolsProtocol


def server_config(app: Any, host: str, port: int, head_deadline_s: float = HEAD_DEADLINE_S, **kwargs: Any) -> Any:
    """A ``uvicorn.Config`` for the receiver with the head bounds and deadline in place (see the
    module docstring) and at most :data:`MAX_CONCURRENCY` connections at once (``kwargs`` win)."""
    import uvicorn

    protocol = _bounded_protocol()
    if protocol is not None and head_deadline_s != protocol.head_deadline_s:  # type: ignore[attr-defined]
        protocol = type(protocol.__name__, (protocol,), {"head_deadline_s": head_deadline_s})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol if protocol is not None else "h11",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        **{"limit_concurrency": MAX_CONCURRENCY} | kwargs,
    )
