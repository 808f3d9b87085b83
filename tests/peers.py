"""Real local peers for delivery tests, as a pytest plugin (``pytest_plugins = ["tests.peers"]``).

Everything listens on 127.0.0.1 and is torn down after the test.

Fixtures:
    tls_files        (session) a self-signed certificate for 127.0.0.1/localhost, made with
                     the ``openssl`` CLI (``cryptography`` is not a dependency); skips without it
    tls_client_context   an ``ssl.SSLContext`` that trusts that certificate
    smtp_server      aiosmtpd, plain SMTP, no auth
    smtp_tls_server  aiosmtpd requiring STARTTLS, with AUTH LOGIN/PLAIN (user ``alice``,
                     password ``SMTP_PASSWORD``), auth only after TLS
    smtp_blackhole   a port that completes the TCP handshake and never says a word
    closed_port      a port on which nothing listens
    webhook_receiver an HTTP server answering a programmed sequence of statuses and
                     recording every request (headers and body); an answer can hang, or
                     come a byte at a time

SMTP peers refuse recipients by local part: ``refuse-...@`` gets 550 and ``defer-...@``
gets 450; everyone else is accepted.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

SMTP_USER = "alice"
SMTP_PASSWORD = "correct horse battery staple"
HANG_LIMIT = 10.0  # seconds a "hang" webhook response waits at most (released at teardown)


def free_port() -> int:
    """A port that was free a moment ago: for a test that needs a port nothing listens on
    (another process may take it meanwhile; peers bind port 0 instead)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- TLS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
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
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return TlsFiles(cert=cert, key=key)


@pytest.fixture
def tls_client_context(tls_files: TlsFiles) -> ssl.SSLContext:
    return tls_files.client_context()


# --- SMTP ----------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    authenticated_as: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class RecordingHandler:
    """aiosmtpd handler: keeps every message; refuses ``refuse-*`` and defers ``defer-*``.

    ``greylist`` maps an address to how many more times it is deferred (450) before it is
    accepted; ``rcpts`` lists every address a RCPT named, accepted or not.
    """

    def __init__(self) -> None:
        self.received: list[ReceivedMail] = []
        self.logins: list[tuple[str, str, bool]] = []  # (mechanism, user, success)
        self.greylist: dict[str, int] = {}
        self.rcpts: list[str] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpts.append(address)
        if address.startswith("refuse-"):
            return "550 5.1.1 No such user here"
        if address.startswith("defer-"):
            return "450 4.2.1 Mailbox busy, try later"
        if self.greylist.get(address, 0) > 0:
            self.greylist[address] -= 1
            return "450 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.received.append(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                data=data,
                tls=session.ssl is not None,
                authenticated_as=login,
            )
        )
        return f"250 2.0.0 OK queued as m{len(self.received)}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        ok = (user, password) == (SMTP_USER, SMTP_PASSWORD)
        self.logins.append((mechanism, user, ok))
        return AuthResult(success=ok, handled=False, auth_data=data)


@dataclass
class SmtpPeer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received


class AnyPortController(Controller):
    """aiosmtpd's Controller on a port the system picks when it binds (``port`` is then
    the one bound), so two test runs on one machine can never pick the same port."""

    def _create_server(self) -> Coroutine[Any, Any, asyncio.AbstractServer]:
        async def bind() -> asyncio.AbstractServer:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()


def _run_smtp(handler: RecordingHandler, **smtp_kwargs: Any) -> Iterator[SmtpPeer]:
    controller = AnyPortController(
        handler, hostname="127.0.0.1", port=0, ready_timeout=10.0, **smtp_kwargs
    )
    controller.start()
    try:
        yield SmtpPeer(host="127.0.0.1", port=controller.port, handler=handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpPeer]:
    yield from _run_smtp(RecordingHandler())


@pytest.fixture
def smtp_tls_server(tls_files: TlsFiles) -> Iterator[SmtpPeer]:
    handler = RecordingHandler()
    yield from _run_smtp(
        handler,
        tls_context=tls_files.server_context(),
        require_starttls=True,
        auth_require_tls=True,
        authenticator=handler.authenticate,
    )


@pytest.fixture
def smtp_blackhole() -> Iterator[int]:
    """A listening socket that is never accepted: connects succeed, no greeting ever comes."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    return free_port()


# --- webhook receiver ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False  # wait (until teardown, at most HANG_LIMIT) instead of answering
    drip: float | None = None  # seconds between single bytes of the answer, status line on
    drip_body: float | None = None  # ... between single bytes of the body only


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class WebhookReceiver:
    """Answers POSTs with the programmed replies, in order; then ``default``.

    ``on_request``, when set, is called with each request before it is answered (on the
    server's thread, while the sender waits), e.g. to move a test's clock.
    """

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.default = Reply(204)
        self.on_request: Callable[[ReceivedRequest], None] | None = None
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                reply = receiver._record(
                    ReceivedRequest(
                        method="POST",
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )
                if reply.hang:
                    receiver.release.wait(HANG_LIMIT)
                    return
                head = [f"HTTP/1.1 {reply.status} {self.responses[reply.status][0]}"]
                head += [f"{name}: {value}" for name, value in reply.headers.items()]
                head += [f"content-length: {len(reply.body)}", "connection: close", "", ""]
                raw = "\r\n".join(head).encode("latin-1")
                if reply.drip is not None:
                    self._drip(raw + reply.body, reply.drip)
                elif reply.drip_body is not None:
                    self.wfile.write(raw)
                    self._drip(reply.body, reply.drip_body)
                else:
                    self.wfile.write(raw + reply.body)
                self.close_connection = True

            def _drip(self, data: bytes, interval: float) -> None:
                """One byte at a time, until the client leaves or the receiver stops."""
                for index in range(len(data)):
                    try:
                        self.wfile.write(data[index : index + 1])
                        self.wfile.flush()
                    except OSError:
                        return
                    if receiver.release.wait(interval):
                        return

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def program(self, *replies: Reply | int) -> None:
        """Queue replies (a bare int is a status with an empty body)."""
        with self._lock:
            self._replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def _record(self, request: ReceivedRequest) -> Reply:
        if self.on_request is not None:
            self.on_request(request)
        with self._lock:
            self.requests.append(request)
            return self._replies.pop(0) if self._replies else self.default

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def running_receiver() -> Iterator[WebhookReceiver]:
    """A started `WebhookReceiver`, stopped when the generator closes (for fixtures)."""
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    yield from running_receiver()
