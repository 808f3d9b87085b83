"""A real, programmable HTTP server on 127.0.0.1 for tests, and the `feed_server` fixture.

`FeedServer` runs `http.server.ThreadingHTTPServer` on 127.0.0.1, port 0 (the OS picks a
free port), in a background thread. Each path answers with programmed `Reply` values:

    with FeedServer() as server:
        server.route("/feed.xml", Reply(200, FEED, headers={"ETag": '"v1"'}))
        server.route("/flaky", Reply(500), Reply(500), Reply(200, FEED))  # then 200 forever
        server.route("/cond", lambda req: Reply(304) if req.header("if-none-match") else ...)
        url = server.url("/feed.xml")
        ...
        server.requests_for("/feed.xml")[0].header("user-agent")

A reply can be gzip-encoded (``gzip=True``), delayed before its headers (``delay``),
dripped one byte per ``drip`` seconds (bounded by the body length and cut when the client
leaves or the server stops), or cut off without any answer (``abort=True``). Every request
is logged with its headers; ``max_in_flight`` records the most requests handled at once.
Unknown paths answer 404.

Use it as a context manager, or through the ``feed_server`` fixture: this module is a
pytest plugin (``pytest_plugins = ["tests.feedserver"]``) and can also be imported from a
test module (``from tests.feedserver import feed_server``).
"""

from __future__ import annotations

import gzip as gzip_module
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

import pytest

__all__ = ["FeedServer", "Reply", "Request", "feed_server"]

MAX_DRIP_SECONDS = 30.0  # a dripping reply never lasts longer than this, whatever the test says


@dataclass
class Reply:
    """One programmed answer. ``headers`` are sent as given (Content-Length is added)."""

    status: int = 200
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    gzip: bool = False  # compress the body and send Content-Encoding: gzip
    delay: float = 0.0  # seconds to wait before sending the status line
    drip: float | None = None  # seconds between single body bytes
    abort: bool = False  # close the connection without answering

    def wire_body(self) -> bytes:
        body = self.body.encode() if isinstance(self.body, str) else self.body
        return gzip_module.compress(body, compresslevel=9, mtime=0) if self.gzip else body


@dataclass(frozen=True)
class Request:
    """A request as the server received it; header names are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    received: float  # time.monotonic()
    peer: tuple[str, int] = ("", 0)  # the client's address and port: one per connection

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


Responder = Callable[[Request], Reply]


class FeedServer:
    """A threaded HTTP server on 127.0.0.1 with per-path programmed replies."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls  # a server context: the server speaks HTTPS
        self._lock = threading.Lock()
        self._routes: dict[str, list[Reply | Responder]] = {}
        self._requests: list[Request] = []
        self._in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        if self.tls is not None:  # (the handshake happens in each request's thread)
            server.socket = self.tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # ends drips and delays at once
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- programming -------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not running"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, *replies: Reply | Responder) -> str:
        """Answer ``path`` with these replies in turn, repeating the last; return its URL."""
        if not replies:
            raise ValueError("route() needs at least one reply")
        with self._lock:
            self._routes[path] = list(replies)
        return self.url(path)

    def redirect(self, path: str, to: str, status: int = 301) -> str:
        """Shorthand: ``path`` redirects to ``to`` (a path on this server, or a URL)."""
        target = self.url(to) if to.startswith("/") else to
        return self.route(path, Reply(status, headers={"Location": target}))

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def reset(self) -> None:
        with self._lock:
            self._routes.clear()
            self._requests.clear()
            self.max_in_flight = 0

    # -- used by the handler -----------------------------------------------------------

    def _next_reply(self, request: Request) -> Reply:
        with self._lock:
            self._requests.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            queue = self._routes.get(request.path.split("?", 1)[0])
            if queue is None:
                return Reply(404, b"not found")
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return reply(request) if callable(reply) else reply

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _handler_for(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        disable_nagle_algorithm = True  # no 40 ms stalls between headers and body

        def do_GET(self) -> None:
            request = Request(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                received=time.monotonic(),
                peer=(str(self.client_address[0]), int(self.client_address[1])),
            )
            try:
                self._answer(server._next_reply(request))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                server._done()

        do_HEAD = do_GET

        def _answer(self, reply: Reply) -> None:
            if reply.delay and server.stopping.wait(min(reply.delay, MAX_DRIP_SECONDS)):
                self.close_connection = True
                return
            if reply.abort:
                self.close_connection = True
                return
            body = reply.wire_body()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.gzip:
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD" or reply.status in (204, 304):
                return
            if reply.drip is None:
                self.wfile.write(body)
                return
            deadline = time.monotonic() + MAX_DRIP_SECONDS
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                if server.stopping.wait(reply.drip) or time.monotonic() > deadline:
                    self.close_connection = True
                    return

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean; the request log is on the server

    return Handler


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A running `FeedServer`, stopped after the test."""
    with FeedServer() as server:
        yield server
