"""Fetch one URL over HTTP(S) politely and within limits; return bytes plus headers.

This adapter owns every HTTP detail of polling a feed and nothing else: it does not parse,
store or schedule. It imports only `monitor.errors`, `monitor.models` and the package
version. A failure is raised as one `FetchError` whose ``kind`` is a short label the
pipeline stores on the feed row:

    scheme        the URL (or a redirect target) is not http(s)
    url           the URL cannot be requested at all (no host)
    network       connection refused/reset, TLS, protocol errors
    timeout       the whole exchange took longer than ``timeout`` seconds
    too_large     the *decoded* body is longer than ``max_bytes``
    decoding      the body's Content-Encoding could not be decoded
    redirects     more than ``max_redirects`` hops, or a loop
    gone          HTTP 410: the feed should be disabled
    rate_limited  HTTP 429 or 503, with ``retry_after`` seconds when the server said so
    http          any other status that is neither 2xx nor 304, or a 304 to a request
                  that sent no validator

What one `Fetcher.fetch` does:

- conditional GET: the stored ETag and Last-Modified go back verbatim as If-None-Match and
  If-Modified-Since; 304 is a normal result (`Fetched.status == 304`, empty body);
- one deadline covers the whole exchange, every redirect hop, connect, headers and the
  complete body, so a server that drips a byte a second is cut at ``timeout``;
- gzip/deflate are decoded here, in bounded steps, while counting: a small compressed body
  that inflates past ``max_bytes`` is abandoned with at most one step (64 KiB) in memory;
- redirects are followed by hand so a chain made only of 301/308 can report the feed's new
  permanent address, while any 302/303/307 leaves it alone;
- a global semaphore (``global_limit``) and one semaphore per host:port (``per_host``).

Connection pooling. One ``httpx.AsyncClient`` gets slower as the number of concurrent
requests grows, because httpcore's pool does bookkeeping over every connection on every
request (encode/httpcore#1035). So a `Fetcher` keeps a pool of long-lived clients, each
allowed `CONNECTIONS_PER_CLIENT` connections, and picks one by a stable hash of the host:
a host's keep-alive connections stay in one client. A request waits for a connection slot
of its client before its deadline starts, never inside httpx's pool. (The table below was
measured with ceil(global/10) clients; there are now `CLIENTS_PER_10` times as many, so
that connections are kept for the next feed on the same host.)

Measured on the dev box (2 CPUs, CPython 3.11, httpx 0.28.1, httpcore 1.0.9) against a
keep-alive asyncio server in another process serving 2 KB bodies on 50 ports of 127.0.0.1
(50 hosts), per_host=2, global_limit = concurrency, 2000 requests after a warm-up, median
of 3 runs:

    concurrency   one client, 100 connections   pool of ceil(global/10) clients x 10
    1               329 feeds/s                   544 feeds/s  (1 client)
    10              417 feeds/s                   755 feeds/s  (1 client)
    100             368 feeds/s                   649 feeds/s  (10 clients)

Fewer connections per pool means less bookkeeping per request; the server shares the two
CPUs, so absolute figures are low. Real polling is dominated by network latency, so this
matters for large feed lists only, but it costs nothing.
"""

from __future__ import annotations

import asyncio
import math
import os
import ssl
import sys
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from hashlib import blake2b
from types import TracebackType
from typing import Self

import httpx

from . import PROJECT_URL, __version__
from .errors import FetchError
from .models import Fetched

__all__ = ["DEFAULT_USER_AGENT", "FetchLimits", "Fetcher", "parse_retry_after"]

DEFAULT_USER_AGENT = f"monitor/{__version__} (+{PROJECT_URL})"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, "
    "application/json;q=0.8, text/html;q=0.5, */*;q=0.1"
)
CONNECTIONS_PER_CLIENT = 10  # connections per client, in use or kept open (idle 5 s at most)
# Clients per 10 of the global limit. A host's connections live in one client, and a
# connection is reused only if its client still has it when the next feed on that host
# comes: with one client per 10 of the global limit, each had ~12 of the benchmark's 50
# hosts for 10 connections and opened one for nearly every request (948 of 1,000). Four
# times as many small clients keep them (54 of 1,000) without the longer bookkeeping of a
# bigger pool (40 connections a client: the same reuse, 15% more CPU per request).
CLIENTS_PER_10 = 4
# ... but never more than this many clients (320 open sockets), so that a large global limit
# cannot approach the usual limit of 1,024 open files with idle connections.
MAX_CLIENTS = 32
MAX_REQUESTS = 1000  # clients are made for at most this many requests (= polling.concurrency max)
STEP = 64 * 1024  # most decoded bytes produced from the wire at a time
# Cookies a client keeps (for a consent page's redirect); past this the jar is emptied: a
# server setting new ones at every poll made it hold 12,000 and send them all back.
MAX_COOKIES = 300
DRAIN_BYTES = 64 * 1024  # a body we do not need is read to its end up to this size ...
DRAIN_SECONDS = 1.0  # ... and this long, to keep its connection,
DRAIN_MARGIN = 0.25  # ... ending this long before the exchange's deadline at the latest
TRUST_RETRY = 60.0  # seconds before a certificate store that could not be read is tried again

_PERMANENT = frozenset({301, 308})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Limits for every request a `Fetcher` makes (seconds, bytes, counts)."""

    timeout: float = 30.0  # the whole exchange: connect, headers, body, every redirect
    max_bytes: int = 10_000_000  # decoded body
    max_redirects: int = 5
    per_host: int = 2
    global_limit: int = 32


def _client_tls_context() -> ssl.SSLContext:
    """A client TLS context with the checks of httpx's default one (`ssl.create_default_context`:
    certificate and host name verified), but no certificate store yet: `Fetcher` reads it
    before its first HTTPS request (~17 ms, which a poll of plain-HTTP feeds never pays).
    A plain `SSLContext`, not a subclass: anyio wraps sockets on its worker threads for
    subclasses, where httpcore's `set_alpn_protocols` on the loop thread races with them."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if sys.version_info >= (3, 13):  # as create_default_context sets them since 3.13
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | ssl.VERIFY_X509_STRICT
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    return context


def _load_trust_store(context: ssl.SSLContext) -> None:
    """What httpx reads by default: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR``, else certifi."""
    if os.environ.get("SSL_CERT_FILE"):
        context.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
    elif os.environ.get("SSL_CERT_DIR"):
        context.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
    else:
        import certifi

        context.load_verify_locations(cafile=certifi.where())


class Fetcher:
    """A long-lived HTTP client for feeds; use as ``async with Fetcher(limits) as f:``.

    ``transport`` replaces the network (an ``httpx.AsyncBaseTransport``, e.g.
    ``httpx.MockTransport``); with it, a single client is used.
    """

    def __init__(
        self,
        limits: FetchLimits = FetchLimits(),  # frozen, so sharing one is safe
        *,
        user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.limits = limits
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        count = 1 if transport is not None else _pool_size(limits.global_limit)
        headers = {
            "User-Agent": self.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": "gzip, deflate",
        }
        tls = self._tls = _client_tls_context()  # one store for the pool, read when needed
        self._trusted = False
        self._trust_failure: tuple[str, float] | None = None  # (why, when: time.monotonic)
        pool = httpx.Limits(
            max_connections=CONNECTIONS_PER_CLIENT,
            max_keepalive_connections=CONNECTIONS_PER_CLIENT,
        )
        # Requests go straight to each client's transport (`_one`) unless a proxy is set in
        # the environment: httpx applies those only through the client, and only to a client
        # that made its own transport.
        self._transports: list[httpx.AsyncHTTPTransport] | None = None
        if transport is None and _proxy_in_environment():
            self._load_trust()  # (a proxy itself may need the store, for any URL)
        elif transport is None:
            self._transports = [
                httpx.AsyncHTTPTransport(verify=tls, limits=pool) for _ in range(count)
            ]
        self._clients = [
            httpx.AsyncClient(
                headers=headers,
                verify=tls,
                follow_redirects=False,
                timeout=httpx.Timeout(limits.timeout),
                limits=pool,
                transport=transport if self._transports is None else self._transports[i],
            )
            for i in range(count)
        ]
        self._global = asyncio.Semaphore(max(1, limits.global_limit))
        self._hosts: dict[str, asyncio.Semaphore] = {}
        # A request waits here, not inside its client's pool, so it never spends its own
        # deadline queueing for a connection.
        self._connections = [asyncio.Semaphore(CONNECTIONS_PER_CLIENT) for _ in self._clients]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection; the fetcher cannot be used afterwards."""
        for client in self._clients:
            await client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
    ) -> Fetched:
        """GET ``url`` conditionally; return the body (2xx) or a 304, else raise `FetchError`.

        ``etag`` and ``last_modified`` are sent back exactly as given. ``timeout`` and
        ``max_bytes`` override the fetcher's limits for this request.
        """
        seconds = self.limits.timeout if timeout is None else timeout
        cap = self.limits.max_bytes if max_bytes is None else max_bytes
        conditional: dict[str, str] = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        return await self._follow(_Exchange(url, seconds, cap, conditional))

    # -- internals ------------------------------------------------------------------------

    async def _follow(self, ex: _Exchange) -> Fetched:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        target = _checked_url(ex.url, ex.url)
        chain: list[httpx.URL] = [target]
        permanent = True
        for _hop in range(self.limits.max_redirects + 1):
            key = _host_key(target)
            index = _bucket(key, len(self._clients))
            async with self._slot(key, index, deadline, ex):
                if deadline is None:  # waiting for our turn is not the server's time
                    deadline = ex.deadline = loop.time() + ex.timeout
                try:
                    async with asyncio.timeout_at(deadline):
                        outcome = await self._one(ex, index, target)
                except TimeoutError as exc:
                    raise ex.timed_out(ex.phase) from exc
            if isinstance(outcome, Fetched):
                if permanent and len(chain) > 1 and str(target) != ex.url:
                    return replace(outcome, permanent_url=str(target))
                return outcome
            status, location = outcome
            permanent = permanent and status in _PERMANENT
            target = _checked_url(location, ex.url)
            if target in chain:
                path = " -> ".join(str(u) for u in [*chain, target])
                raise FetchError(f"{ex.url}: redirect loop ({path})", kind="redirects")
            chain.append(target)
        raise FetchError(
            f"{ex.url}: more than {self.limits.max_redirects} redirects (last to {target})",
            kind="redirects",
        )

    async def _one(
        self, ex: _Exchange, index: int, url: httpx.URL
    ) -> Fetched | tuple[int, httpx.URL]:
        """One request on client ``index``: a final `Fetched`, or (status, next URL) for
        a redirect."""
        if url.scheme == "https" and not self._trusted:
            self._trust(ex)
        client = self._clients[index]
        request = client.build_request("GET", url, headers=ex.conditional, timeout=ex.timeout)
        ex.phase = "connecting or waiting for headers"
        try:
            if self._transports is None:  # (a proxy, or a test's transport: httpx's own path)
                response = await client.send(request, stream=True)
                _cap_cookies(client)
            else:
                response = await _send_direct(client, self._transports[index], request)
        except httpx.HTTPError as exc:
            raise _translate(exc, ex) from exc
        try:
            status = response.status_code
            if status in _REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise FetchError(
                        f"{ex.url}: HTTP {status} redirect from {url} without a Location",
                        kind="http",
                        status=status,
                    )
                await _drain(response, ex)
                try:
                    return status, url.join(location.strip())
                except (httpx.InvalidURL, ValueError) as exc:
                    raise FetchError(
                        f"{ex.url}: HTTP {status} redirect from {url} to an invalid URL "
                        f"{location.strip()[:200]!r}: {exc}",
                        kind="redirects",
                        status=status,
                    ) from exc
            if status == 304:
                await _drain(response, ex)
                if not ex.conditional:  # "not modified" since what? the feed was not read
                    raise FetchError(
                        f"{ex.url}: HTTP 304 Not Modified from {url} to a request that sent "
                        "no ETag or Last-Modified to compare with",
                        kind="http",
                        status=status,
                    )
                return _fetched(response, b"", ex)
            if 200 <= status < 300:
                ex.phase = "reading body"
                body = await _read_capped(response, ex)
                return _fetched(response, body, ex)
            await _drain(response, ex)
            raise _status_error(response, ex)
        except httpx.HTTPError as exc:
            raise _translate(exc, ex) from exc
        finally:
            await response.aclose()

    def _trust(self, ex: _Exchange) -> None:
        """Read the certificate store before the first HTTPS request. A store that cannot
        be read fails the HTTPS requests with the reason (and no other), and is tried again
        `TRUST_RETRY` seconds later (a file mounted late, a package being upgraded)."""
        failure = self._trust_failure
        if failure is None or time.monotonic() - failure[1] >= TRUST_RETRY:
            self._load_trust()
        if not self._trusted:
            assert self._trust_failure is not None
            raise FetchError(f"{ex.url}: {self._trust_failure[0]}", kind="network")

    def _load_trust(self) -> None:
        try:
            _load_trust_store(self._tls)
        except (OSError, ssl.SSLError) as exc:
            where = os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR")
            named = f" ({where})" if where else ""
            why = f"the TLS certificate store{named} cannot be read: {exc}"
            self._trust_failure = (why, time.monotonic())
            return
        self._trusted = True
        self._trust_failure = None

    @asynccontextmanager
    async def _slot(
        self, key: str, index: int, deadline: float | None, ex: _Exchange
    ) -> AsyncIterator[None]:
        """Hold one of the host's ``per_host`` slots, then one of the ``global_limit`` slots
        and one connection of its client: a request waiting for a busy host holds no global
        slot, so requests to other hosts go ahead of it."""
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = asyncio.Semaphore(max(1, self.limits.per_host))
        connection = self._connections[index]
        held: list[asyncio.Semaphore] = []
        try:
            async with asyncio.timeout_at(deadline):
                for semaphore in (host, self._global, connection):
                    await semaphore.acquire()
                    held.append(semaphore)
        except BaseException as exc:
            for semaphore in reversed(held):
                semaphore.release()
            if isinstance(exc, TimeoutError):
                raise ex.timed_out("waiting for a connection slot") from exc
            raise
        try:
            yield
        finally:
            for semaphore in reversed(held):
                semaphore.release()


@dataclass(slots=True)
class _Exchange:
    """The state of one `Fetcher.fetch` call, for messages."""

    url: str
    timeout: float
    max_bytes: int
    conditional: dict[str, str]
    phase: str = "starting"
    deadline: float = math.inf  # the event loop's clock; set when the exchange starts

    def timed_out(self, phase: str) -> FetchError:
        return FetchError(f"{self.url}: timed out after {self.timeout:g}s {phase}", kind="timeout")


async def _send_direct(
    client: httpx.AsyncClient, transport: httpx.AsyncHTTPTransport, request: httpx.Request
) -> httpx.Response:
    """`client.send(request, stream=True)` for what a feed fetcher uses of it: the
    transport's response, its request, and any cookie it sets for the client's jar.

    The client's own path adds an authentication flow, redirect bookkeeping (we follow
    redirects ourselves), event hooks and a timing wrapper (~22 µs a request, 5% of a 304's
    CPU on the benchmark's farm), and hands every response to the standard library's
    cookie jar through adapters that first copy all its headers into an
    `email.message.Message` (~40 µs more, for feeds that almost never set cookies): here
    the jar sees only responses that set one. The request was built by the client (its
    headers and cookies merged in, its timeout set), so nothing else differs.
    """
    if client.is_closed:  # what `send` would say; the transport would quietly reconnect
        raise RuntimeError("the fetcher's clients are closed")
    response = await transport.handle_async_request(request)
    response.request = request
    try:
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            client.cookies.extract_cookies(response)  # (a consent page's, before its redirect)
            _cap_cookies(client)
    except BaseException:
        await response.aclose()
        raise
    return response


def _cap_cookies(client: httpx.AsyncClient) -> None:
    """Empty a client's cookie jar past `MAX_COOKIES`: a daemon's must not grow for ever."""
    if len(client.cookies.jar) > MAX_COOKIES:
        client.cookies.clear()


def _proxy_in_environment() -> bool:
    """Whether the environment names a proxy (the variables httpx reads, in either case)."""
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(key.lower() in names and value for key, value in os.environ.items())


def _pool_size(global_limit: int) -> int:
    """Clients for ``global_limit`` requests at once (counted up to `MAX_REQUESTS`, the
    config's bound: past it, requests wait for a connection)."""
    limit = min(max(1, global_limit), MAX_REQUESTS)
    needed = math.ceil(limit / CONNECTIONS_PER_CLIENT)
    return max(needed, min(CLIENTS_PER_10 * needed, MAX_CLIENTS))


def _host_key(url: httpx.URL) -> str:
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


def host_of(url: str) -> str:
    """The host and port a request for ``url`` goes to (the per-host limit's key); the URL
    itself when it cannot be read as one."""
    try:
        return _host_key(httpx.URL(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return url


def _bucket(key: str, count: int) -> int:
    if count == 1:
        return 0
    digest = blake2b(key.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % count


def _checked_url(raw: str | httpx.URL, original: str) -> httpx.URL:
    try:
        url = raw if isinstance(raw, httpx.URL) else httpx.URL(raw.strip())
    except httpx.InvalidURL as exc:
        raise FetchError(f"{original}: invalid URL {raw!s}: {exc}", kind="url") from exc
    if url.scheme not in ("http", "https"):
        what = "URL" if str(raw) == original else f"redirect to {raw!s}"
        raise FetchError(
            f"{original}: refusing {what}: scheme {url.scheme or '(none)'!r} is not http(s)",
            kind="scheme",
        )
    if not url.host:
        raise FetchError(f"{original}: invalid URL {raw!s}: no host", kind="url")
    return url


def _translate(exc: httpx.HTTPError, ex: _Exchange) -> FetchError:
    if isinstance(exc, httpx.TimeoutException):
        return ex.timed_out(ex.phase)
    if isinstance(exc, httpx.DecodingError):
        return FetchError(f"{ex.url}: body could not be decoded: {exc}", kind="decoding")
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return FetchError(f"{ex.url}: invalid URL: {exc}", kind="url")
    detail = str(exc) or type(exc).__name__
    return FetchError(f"{ex.url}: network error {ex.phase}: {detail}", kind="network")


async def _drain(response: httpx.Response, ex: _Exchange) -> None:
    """Read the body we have no use for (a 304's, a redirect's, an error page) when it is
    short and quick, so that the connection goes back to the pool for the next feed on that
    host: closed before its end, it is dropped, and the next request opens another (a new
    TLS handshake on HTTPS). A longer or slower body is left to be cut by the close, and so
    is one that would still be arriving near the exchange's deadline: the answer already
    received (a 410, a Retry-After, a redirect) must never become a timeout."""
    budget = min(DRAIN_SECONDS, ex.deadline - asyncio.get_running_loop().time() - DRAIN_MARGIN)
    if budget <= 0:
        return
    read = 0
    try:
        async with asyncio.timeout(budget):
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > DRAIN_BYTES:
                    return
    except (TimeoutError, httpx.HTTPError):
        return  # the connection is closed with the response: nothing else is lost


async def _read_capped(response: httpx.Response, ex: _Exchange) -> bytes:
    """Read the decoded body, refusing to hold more than ``ex.max_bytes`` of it."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    length = response.headers.get("content-length", "")
    if encoding in ("", "identity") and length.isdigit() and int(length) > ex.max_bytes:
        raise _too_large(ex, f"Content-Length {length}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in _decoded(response, encoding):
        size += len(chunk)
        if size > ex.max_bytes:
            raise _too_large(ex, "after decoding" if encoding else "while reading")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(ex: _Exchange, how: str) -> FetchError:
    return FetchError(f"{ex.url}: body exceeds {ex.max_bytes} bytes ({how})", kind="too_large")


_CODINGS = ("gzip", "x-gzip", "deflate")
# Compressions we never ask for and cannot undo: their bytes are no feed. Any other name
# ("UTF-8", "none", "binary": old server misconfigurations) is ignored, as httpx and
# browsers do.
_UNDECODABLE = ("br", "zstd", "compress", "x-compress")
_MAX_CODINGS = 4  # a body compressed more times than this is no honest feed
_GZIP_MAGIC = b"\x1f\x8b"


async def _decoded(response: httpx.Response, encoding: str) -> AsyncIterator[bytes]:
    """The body as decoded bytes, at most `STEP` bytes per chunk for gzip/deflate.

    httpx's own decoders inflate a whole network read at once (a 64 KiB read of a gzip
    bomb becomes ~64 MB), so gzip and deflate are inflated here with a bounded output, each
    layer of a list ("gzip, gzip", applied in that order, undone from the last) as a
    stage that holds at most `STEP` bytes.
    """
    names = [part.strip() for part in encoding.split(",")]
    unknown = [name for name in names if name in _UNDECODABLE]
    if unknown:
        raise httpx.DecodingError(f"unsupported Content-Encoding {encoding!r}")
    codings = [name for name in names if name in _CODINGS]
    if len(codings) > _MAX_CODINGS:
        raise httpx.DecodingError(f"{len(codings)} content codings (at most {_MAX_CODINGS})")
    stream: AsyncIterator[bytes] = response.aiter_raw()
    for coding in reversed(codings):
        stream = _inflated(stream, coding)
    async for chunk in stream:
        yield chunk


async def _inflated(chunks: AsyncIterator[bytes], coding: str) -> AsyncIterator[bytes]:
    inflater = _Inflater(coding)
    async for raw in chunks:
        data = raw
        while True:
            out, data = inflater.step(data)
            if out:
                yield out
            if not data and len(out) < STEP:
                break  # input used up and nothing held back
        if inflater.ended:
            break  # what follows the stream is not read (nor kept)
    tail = inflater.flush()
    if tail:
        yield tail


class _Inflater:
    """zlib with at most `STEP` output bytes per step; deflate may lack its zlib header, and
    gzip may hold several members one after another (RFC 1952), read as one body."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._raw_deflate_possible = encoding == "deflate"
        self._gzip = encoding != "deflate"
        self._z = self._new()
        self._fed = False  # an empty body with a Content-Encoding is just empty
        self.ended = False  # the stream ended, and what followed was not another member

    def _new(self) -> zlib._Decompress:
        return zlib.decompressobj(zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS)

    def step(self, data: bytes) -> tuple[bytes, bytes]:
        """Inflate some of ``data``; return the output and the input still to feed."""
        self._fed = self._fed or bool(data)
        try:
            out = self._z.decompress(data, STEP)
        except zlib.error as exc:
            if self._raw_deflate_possible:
                self._raw_deflate_possible = False
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.step(data)
            raise httpx.DecodingError(f"{self.encoding}: {exc}") from exc
        self._raw_deflate_possible = False
        rest = self._z.unconsumed_tail
        if self._z.eof and self._z.unused_data:
            after = self._z.unused_data
            if not (self._gzip and _GZIP_MAGIC.startswith(after[:2])):
                self.ended = True
                return out, b""  # bytes after the stream (some servers pad): ignored
            self._z = self._new()  # the next member
            rest = after + rest
        return out, rest

    def flush(self) -> bytes:
        try:
            tail = self._z.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(f"{self.encoding}: {exc}") from exc
        if self._fed and not self._z.eof:
            raise httpx.DecodingError(f"{self.encoding}: the compressed stream is truncated")
        return tail


def _fetched(response: httpx.Response, body: bytes, ex: _Exchange) -> Fetched:
    headers = dict(response.headers.items())
    etag = headers.get("etag")
    last_modified = headers.get("last-modified")
    if response.status_code == 304:
        # A 304 need not repeat the validators; the ones we sent are still valid.
        etag = etag or ex.conditional.get("If-None-Match")
        last_modified = last_modified or ex.conditional.get("If-Modified-Since")
    return Fetched(
        url=str(response.url),
        status=response.status_code,
        body=body,
        headers=headers,
        etag=etag,
        last_modified=last_modified,
        max_age=_max_age(headers),
    )


def _status_error(response: httpx.Response, ex: _Exchange) -> FetchError:
    status = response.status_code
    phrase = response.reason_phrase or ""
    where = "" if str(response.url) == ex.url else f" (from {response.url})"
    said = f"HTTP {status} {phrase}".rstrip()
    if status == 410:
        return FetchError(f"{ex.url}: {said}{where}: the feed is gone", kind="gone", status=410)
    if status in (429, 503):
        retry_after = parse_retry_after(
            response.headers.get("retry-after"), _date(response.headers.get("date"))
        )
        wait = "" if retry_after is None else f", retry after {retry_after:g}s"
        return FetchError(
            f"{ex.url}: {said}{where}{wait}",
            kind="rate_limited",
            status=status,
            retry_after=retry_after,
        )
    return FetchError(f"{ex.url}: {said}{where}", kind="http", status=status)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP-date), or None.

    An HTTP-date is measured from ``now`` (the response's Date header when the caller has
    it, which cancels clock skew; else the local clock). A date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    when = _date(value)
    if when is None:
        return None
    reference = now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def _max_age(headers: Mapping[str, str]) -> float | None:
    """Freshness lifetime from Cache-Control max-age, else Expires minus Date."""
    for directive in headers.get("cache-control", "").split(","):
        name, _, value = directive.strip().partition("=")
        if name.strip().lower() == "max-age":
            value = value.strip().strip('"')
            if value.isdigit():
                return float(int(value))
    expires = headers.get("expires")
    if expires is None:
        return None
    when = _date(expires)
    if when is None:
        return 0.0  # an invalid Expires means "already stale" (RFC 9111 §5.3)
    reference = _date(headers.get("date")) or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())
