"""monitor.fetch against a real HTTP server on 127.0.0.1 (tests/feedserver.py)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import time
import tracemalloc
import zlib
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from monitor import PROJECT_URL, __version__
from monitor import fetch as fetch_module
from monitor.errors import FeedError, FetchError
from monitor.fetch import Fetcher, FetchLimits, parse_retry_after
from monitor.models import Fetched
from monitor.schedule import next_due
from tests.feedserver import FeedServer, Reply, Request
from tests.peers import TlsFiles

T = TypeVar("T")

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def fetch(url: str, limits: FetchLimits = FetchLimits(), **kwargs: object) -> Fetched:  # noqa: B008
    async def go() -> Fetched:
        async with Fetcher(limits) as fetcher:
            return await fetcher.fetch(url, **kwargs)  # type: ignore[arg-type]

    return run(go())


def fetch_error(url: str, limits: FetchLimits = FetchLimits(), **kwargs: object) -> FetchError:  # noqa: B008
    with pytest.raises(FetchError) as info:
        fetch(url, limits, **kwargs)
    return info.value


# -- conditional GET ----------------------------------------------------------------------

ETAG = 'W/"5e1-Ab+/c"'  # weak, with characters a careless client might normalise
LAST_MODIFIED = "Tue, 03 Jun 2025 10:00:00 GMT"


def conditional(request: Request) -> Reply:
    """304 only when both validators come back exactly as they were given."""
    if (
        request.header("if-none-match") == ETAG
        and request.header("if-modified-since") == LAST_MODIFIED
    ):
        return Reply(304)
    return Reply(200, FEED, headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED})


def test_conditional_get_round_trip(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", conditional)

    first = fetch(url)
    assert first.status == 200 and not first.not_modified
    assert first.body == FEED
    assert (first.etag, first.last_modified) == (ETAG, LAST_MODIFIED)

    second = fetch(url, etag=first.etag, last_modified=first.last_modified)
    assert second.not_modified and second.status == 304
    assert second.body == b""
    # the 304 carried no validators: the ones we sent are still the feed's
    assert (second.etag, second.last_modified) == (ETAG, LAST_MODIFIED)

    sent = feed_server.requests_for("/feed")
    assert sent[0].header("if-none-match") is None
    assert sent[0].header("if-modified-since") is None
    assert sent[1].header("if-none-match") == ETAG
    assert sent[1].header("if-modified-since") == LAST_MODIFIED


def test_changed_validators_get_a_full_response(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", conditional)
    fetched = fetch(url, etag='"5e1-Ab+/c"', last_modified=LAST_MODIFIED)  # not weak: differs
    assert fetched.status == 200 and fetched.body == FEED


def test_304_with_new_validators_reports_them(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(304, headers={"ETag": '"v2"'}))
    fetched = fetch(url, etag='"v1"', last_modified=LAST_MODIFIED)
    assert fetched.not_modified
    assert fetched.etag == '"v2"'
    assert fetched.last_modified == LAST_MODIFIED


def test_304_to_a_request_without_validators_is_an_error(feed_server: FeedServer) -> None:
    """A server answering 304 to a GET that compared nothing was taken at its word: the
    feed, never read, counted as unchanged at every poll."""
    url = feed_server.route("/feed", Reply(304))
    error = fetch_error(url)
    assert (error.kind, error.status) == ("http", 304)
    assert "sent no ETag or Last-Modified" in str(error)
    assert fetch(url, etag='"v1"').not_modified  # a conditional request: a normal answer


def test_headers_are_lower_case_and_cache_lifetime_is_read(feed_server: FeedServer) -> None:
    url = feed_server.route(
        "/feed",
        Reply(
            200,
            FEED,
            headers={
                "Content-Type": "application/rss+xml",
                "Cache-Control": "public, max-age=3600",
            },
        ),
    )
    fetched = fetch(url)
    assert fetched.headers["content-type"] == "application/rss+xml"
    assert all(name == name.lower() for name in fetched.headers)
    assert fetched.max_age == 3600.0
    assert fetched.url == url and fetched.permanent_url is None


def test_expires_minus_date_is_the_cache_lifetime(feed_server: FeedServer) -> None:
    # The server adds its own Date header; Expires is set relative to the real clock.
    expires = format_datetime(datetime.now(UTC) + timedelta(seconds=600), usegmt=True)
    url = feed_server.route("/feed", Reply(200, FEED, headers={"Expires": expires}))
    fetched = fetch(url)
    assert fetched.max_age is not None and 590 <= fetched.max_age <= 601


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirect_chain_sets_permanent_url(feed_server: FeedServer, status: int) -> None:
    feed_server.route("/new", Reply(200, FEED))
    feed_server.redirect("/middle", "/new", status)
    start = feed_server.redirect("/old", "/middle", 301)
    fetched = fetch(start)
    assert fetched.status == 200 and fetched.body == FEED
    assert fetched.url == feed_server.url("/new")
    assert fetched.permanent_url == feed_server.url("/new")


@pytest.mark.parametrize("status", [302, 303, 307])
def test_temporary_redirect_leaves_the_url_alone(feed_server: FeedServer, status: int) -> None:
    feed_server.route("/new", Reply(200, FEED))
    start = feed_server.redirect("/old", "/new", status)
    fetched = fetch(start)
    assert fetched.body == FEED and fetched.url == feed_server.url("/new")
    assert fetched.permanent_url is None


def test_one_temporary_hop_makes_the_whole_chain_temporary(feed_server: FeedServer) -> None:
    feed_server.route("/c", Reply(200, FEED))
    feed_server.redirect("/b", "/c", 302)
    start = feed_server.redirect("/a", "/b", 301)
    assert fetch(start).permanent_url is None


def test_relative_location_and_validators_follow_the_redirect(feed_server: FeedServer) -> None:
    feed_server.route("/feed", conditional)
    start = feed_server.route("/old", Reply(301, headers={"Location": "feed"}))
    fetched = fetch(start, etag=ETAG, last_modified=LAST_MODIFIED)
    assert fetched.not_modified
    assert fetched.permanent_url == feed_server.url("/feed")


def test_a_cookie_set_by_a_redirect_goes_with_the_next_requests(feed_server: FeedServer) -> None:
    """A consent page that sets a cookie and sends the reader back works as in a browser."""
    feed = feed_server.route(
        "/feed",
        lambda r: Reply(200, FEED) if r.header("cookie") == "consent=yes" else Reply(403),
    )
    gate = feed_server.route(
        "/gate", Reply(302, headers={"Location": feed, "Set-Cookie": "consent=yes; Path=/"})
    )

    async def go() -> tuple[Fetched, Fetched]:
        async with Fetcher() as fetcher:
            return await fetcher.fetch(gate), await fetcher.fetch(feed)

    through_gate, later = run(go())
    assert through_gate.body == later.body == FEED
    assert [r.header("cookie") for r in feed_server.requests] == [
        None,
        "consent=yes",
        "consent=yes",
    ]


@pytest.mark.parametrize("through_the_client", [False, True])
def test_the_cookie_jar_stays_bounded(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, through_the_client: bool
) -> None:
    """A server that sets a new cookie at every poll must not make a daemon's jar (and the
    Cookie header it sends back) grow for ever; nor when requests take httpx's own path (a
    proxy in the environment, or a transport given)."""
    from monitor import fetch as fetch_module

    monkeypatch.setattr(fetch_module, "MAX_COOKIES", 20)
    served = iter(range(10**6))
    url = feed_server.route(
        "/feed", lambda r: Reply(200, FEED, headers={"Set-Cookie": f"c{next(served)}=1; Path=/"})
    )

    async def go() -> None:
        transport = httpx.AsyncHTTPTransport() if through_the_client else None
        async with Fetcher(transport=transport) as fetcher:
            for _ in range(50):
                await fetcher.fetch(url)

    run(go())
    sent = [len((r.header("cookie") or "").split(";")) - (r.header("cookie") is None)
             for r in feed_server.requests]  # fmt: skip
    assert (max(sent), sent[20], sent[21], sent[22]) == (20, 20, 0, 1)  # kept, then dropped


def test_redirect_loop_is_refused(feed_server: FeedServer) -> None:
    feed_server.redirect("/b", "/a", 302)
    start = feed_server.redirect("/a", "/b", 302)
    error = fetch_error(start)
    assert error.kind == "redirects" and "loop" in str(error)
    assert len(feed_server.requests) == 2


def test_too_many_redirects(feed_server: FeedServer) -> None:
    for i in range(10):
        feed_server.redirect(f"/{i}", f"/{i + 1}", 301)
    feed_server.route("/10", Reply(200, FEED))
    error = fetch_error(feed_server.url("/0"), FetchLimits(max_redirects=3))
    assert error.kind == "redirects" and "more than 3 redirects" in str(error)
    assert len(feed_server.requests) == 4  # the original request plus three hops

    assert fetch(feed_server.url("/0"), FetchLimits(max_redirects=10)).body == FEED


def test_redirect_to_another_scheme_is_refused(feed_server: FeedServer) -> None:
    start = feed_server.redirect("/feed", "ftp://127.0.0.1/feed.xml", 301)
    error = fetch_error(start)
    assert error.kind == "scheme" and "ftp" in str(error)


def test_redirect_to_an_invalid_url_is_a_redirect_error(feed_server: FeedServer) -> None:
    start = feed_server.redirect("/feed", "http://[::1", 301)
    error = fetch_error(start)
    assert error.kind == "redirects" and "invalid URL 'http://[::1'" in str(error)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/feed.xml", "file:///etc/passwd", "feed.xml"])
def test_non_http_urls_are_refused(url: str) -> None:
    error = fetch_error(url)
    assert error.kind == "scheme"
    assert url in str(error)


# -- error statuses ------------------------------------------------------------------------


def test_410_means_gone(feed_server: FeedServer) -> None:
    error = fetch_error(feed_server.route("/feed", Reply(410)))
    assert (error.kind, error.status) == ("gone", 410)
    assert isinstance(error, FeedError)


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limited_with_retry_after_seconds(feed_server: FeedServer, status: int) -> None:
    url = feed_server.route("/feed", Reply(status, headers={"Retry-After": "120"}))
    error = fetch_error(url)
    assert (error.kind, error.status, error.retry_after) == ("rate_limited", status, 120.0)
    assert "retry after 120s" in str(error)

    now = datetime(2025, 6, 3, 12, 0, tzinfo=UTC)
    due = next_due(now, interval=60, failures=1, retry_after=error.retry_after, key=url)
    assert due >= now + timedelta(seconds=120)


def test_rate_limited_with_retry_after_date(feed_server: FeedServer) -> None:
    # Measured against the response's Date header, so the test does not depend on our clock
    # beyond the second the server stamps.
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    url = feed_server.route("/feed", Reply(429, headers={"Retry-After": when}))
    error = fetch_error(url)
    assert error.kind == "rate_limited"
    assert error.retry_after is not None and 88 <= error.retry_after <= 91


def test_rate_limited_without_retry_after(feed_server: FeedServer) -> None:
    error = fetch_error(feed_server.route("/feed", Reply(503)))
    assert (error.kind, error.retry_after) == ("rate_limited", None)


def test_server_error_then_recovery(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(500), Reply(502), Reply(200, FEED))
    first = fetch_error(url)
    assert (first.kind, first.status) == ("http", 500)
    assert "HTTP 500 Internal Server Error" in str(first) and url in str(first)
    assert fetch_error(url).status == 502
    assert fetch(url).body == FEED


def test_404_is_an_http_error(feed_server: FeedServer) -> None:
    error = fetch_error(feed_server.url("/missing"))
    assert (error.kind, error.status) == ("http", 404)


# -- connection reuse ----------------------------------------------------------------------


def test_bodies_we_do_not_need_are_read_so_the_connection_is_kept(feed_server: FeedServer) -> None:
    feed = feed_server.route("/feed", conditional)
    moved = feed_server.redirect("/old", "/feed", status=302)
    page = feed_server.route("/missing", Reply(404, "<html>" + "not here " * 500 + "</html>"))

    async def go() -> Fetched:
        async with Fetcher() as fetcher:
            assert (await fetcher.fetch(feed, etag=ETAG, last_modified=LAST_MODIFIED)).not_modified
            assert (await fetcher.fetch(moved, etag=ETAG, last_modified=LAST_MODIFIED)).not_modified
            with pytest.raises(FetchError):
                await fetcher.fetch(page)
            return await fetcher.fetch(feed)

    assert run(go()).body == FEED
    requests = feed_server.requests
    assert [r.path for r in requests] == ["/feed", "/old", "/feed", "/missing", "/feed"]
    assert len({r.peer for r in requests}) == 1  # five requests, one connection


def test_connections_stay_open_for_the_next_feed_on_each_host() -> None:
    servers = [FeedServer().start() for _ in range(12)]  # 12 hosts, 10 connections at once
    try:
        urls = [server.route("/feed", conditional) for server in servers]

        async def go() -> None:
            async with Fetcher(FetchLimits(global_limit=10)) as fetcher:
                for _ in range(2):
                    for url in urls:
                        await fetcher.fetch(url, etag=ETAG, last_modified=LAST_MODIFIED)

        run(go())
        for server in servers:  # the second round found every host's connection still open
            assert len(server.requests) == 2 and len({r.peer for r in server.requests}) == 1
    finally:
        for server in servers:
            server.stop()


def test_kept_connections_stay_bounded() -> None:
    """Enough clients for the global limit, up to four times that for reuse, but never so
    many idle sockets that a large limit nears the usual 1,024 open files."""
    from monitor.config import MAX_CONCURRENCY
    from monitor.fetch import CONNECTIONS_PER_CLIENT, MAX_REQUESTS, _pool_size

    assert MAX_REQUESTS == MAX_CONCURRENCY  # (the config's bound, kept in step)
    for limit in range(1, MAX_REQUESTS + 1, 7):
        sockets = _pool_size(limit) * CONNECTIONS_PER_CLIENT
        assert limit <= sockets <= max(limit + CONNECTIONS_PER_CLIENT - 1, 320), limit
    # past the bound (an API caller; the config refuses it), no more clients are made
    assert _pool_size(10**9) == _pool_size(MAX_REQUESTS)


def test_a_long_or_slow_body_we_do_not_need_is_cut(feed_server: FeedServer) -> None:
    big = feed_server.route("/big", Reply(404, b"x" * 300_000))
    slow = feed_server.route("/slow", Reply(500, b"x" * 100, drip=0.2))  # 20 s for the body
    started = time.monotonic()
    assert fetch_error(big).status == 404
    error = fetch_error(slow, timeout=10.0)
    assert (error.kind, error.status) == ("http", 500)  # not a timeout: the page was not needed
    assert time.monotonic() - started < 5.0


def test_a_slow_unneeded_body_near_the_deadline_never_hides_the_answer(
    feed_server: FeedServer,
) -> None:
    """The status and headers arrived in time: a body still dripping when the deadline
    nears is abandoned, and the answer stands (a 500 is an HTTP error, not a timeout; a
    redirect is followed)."""
    error_page = feed_server.route("/error", Reply(500, b"x" * 100, drip=0.2))
    error = fetch_error(error_page, timeout=0.5)
    assert (error.kind, error.status) == ("http", 500), str(error)
    feed = feed_server.route("/feed", Reply(200, FEED))
    moved = feed_server.route(
        "/moved", Reply(302, b"x" * 100, headers={"Location": feed}, drip=0.2)
    )
    assert fetch(moved, timeout=2.0).body == FEED  # the drain stops at 1 s: time to follow
    gone = feed_server.route("/gone", Reply(410, b"x" * 100, drip=0.2))
    assert fetch_error(gone, timeout=0.5).kind == "gone"


def test_a_proxy_named_in_the_environment_is_used(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests go to the clients' transports directly, except when the environment names
    a proxy: httpx applies it only through the client."""
    target = "http://feeds.example.invalid/rss"
    feed_server.route(target, Reply(200, FEED))  # a proxy sees the absolute URL
    monkeypatch.setenv("HTTP_PROXY", feed_server.base_url)
    assert fetch(target).body == FEED
    assert [request.path for request in feed_server.requests] == [target]


def test_a_closed_fetcher_refuses_to_fetch(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(200, FEED))

    async def go() -> None:
        fetcher = Fetcher()
        assert (await fetcher.fetch(url)).body == FEED
        await fetcher.aclose()
        with pytest.raises(RuntimeError):
            await fetcher.fetch(url)

    run(go())
    assert len(feed_server.requests) == 1


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 6, 3, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after("Tue, 03 Jun 2025 12:05:00 GMT", now) == 300.0
    assert parse_retry_after("Tue, 03 Jun 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after(None, now) is None


# -- TLS -----------------------------------------------------------------------------------


def test_https_is_verified_and_the_trust_store_is_read_at_the_first_tls_connection(
    tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The certificate store is read when the first HTTPS connection is made (a cycle of
    plain-HTTP feeds never reads it), from certifi, or SSL_CERT_FILE as httpx would."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    async def go(urls: list[str]) -> tuple[list[Fetched | FetchError], list[int]]:
        async with Fetcher() as fetcher:
            context = fetcher._clients[0]._transport._pool._ssl_context  # type: ignore[attr-defined]
            stores = []
            results: list[Fetched | FetchError] = []
            for url in urls:
                stores.append(context.cert_store_stats()["x509_ca"])
                try:
                    results.append(await fetcher.fetch(url))
                except FetchError as error:
                    results.append(error)
            stores.append(context.cert_store_stats()["x509_ca"])
            return results, stores

    with FeedServer() as plain, FeedServer(tls=tls_files.server_context()) as secure:
        http_url = plain.route("/feed.xml", Reply(200, FEED))
        https_url = secure.route("/feed.xml", Reply(200, FEED))
        assert https_url.startswith("https://127.0.0.1:")
        # certifi's store does not hold the test's self-signed certificate
        (first, refused), stores = run(go([http_url, https_url]))
        assert isinstance(first, Fetched) and first.body == FEED
        assert stores[0] == stores[1] == 0  # nothing read for plain HTTP
        assert stores[2] > 100  # certifi's authorities, read for the HTTPS request
        assert isinstance(refused, FetchError) and refused.kind == "network"
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused)
        assert secure.requests == []  # refused before a request was sent

        monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
        (trusted,), stores = run(go([https_url]))
        assert isinstance(trusted, Fetched) and trusted.status == 200 and trusted.body == FEED
        assert stores == [0, 1]  # the one certificate SSL_CERT_FILE names
        assert len(secure.requests) == 1

        # a store that cannot be read fails the HTTPS requests, saying why, and no other
        missing = tls_files.cert.with_name("missing.pem")
        monkeypatch.setenv("SSL_CERT_FILE", str(missing))
        (broken, again, plain), _ = run(go([https_url, https_url, http_url]))
        for failed in (broken, again):
            assert isinstance(failed, FetchError) and failed.kind == "network"
            assert f"TLS certificate store ({missing}) cannot be read" in str(failed)
        assert isinstance(plain, Fetched) and plain.body == FEED
        assert len(secure.requests) == 1

        # ... and is read again a while later (`TRUST_RETRY`): a file mounted late
        async def late() -> tuple[Fetched | FetchError, Fetched | FetchError]:
            async with Fetcher() as fetcher:
                outcomes: list[Fetched | FetchError] = []
                for _ in range(2):
                    try:
                        outcomes.append(await fetcher.fetch(https_url))
                    except FetchError as error:
                        outcomes.append(error)
                    missing.write_bytes(tls_files.cert.read_bytes())
                return outcomes[0], outcomes[1]

        monkeypatch.setattr(fetch_module, "TRUST_RETRY", 0.0)
        before, after = run(late())
        assert isinstance(before, FetchError) and "cannot be read" in str(before)
        assert isinstance(after, Fetched) and after.body == FEED
        missing.unlink()


def test_with_a_proxy_an_unreadable_trust_store_fails_https_requests_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With a proxy set the store is read when the fetcher is made (the proxy may need it
    for any URL); one that cannot be read does not stop the fetcher from being made."""
    missing = tmp_path / "missing.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))

    async def go() -> FetchError:
        async with Fetcher() as fetcher:
            try:
                await fetcher.fetch("https://127.0.0.1:9/feed.xml")
            except FetchError as error:
                return error
        raise AssertionError("fetched through a store that cannot be read")

    error = run(go())
    assert error.kind == "network" and f"TLS certificate store ({missing})" in str(error)


def test_the_tls_context_is_a_plain_ssl_context() -> None:
    """anyio wraps a socket with a subclass of SSLContext on a worker thread, where it races
    with httpcore setting the context's ALPN protocols on the loop thread: the fetcher's
    context must be exactly `ssl.SSLContext` (and verify certificates and host names)."""

    async def go() -> ssl.SSLContext:
        async with Fetcher() as fetcher:
            return fetcher._clients[0]._transport._pool._ssl_context  # type: ignore[attr-defined, no-any-return]

    context = run(go())
    assert type(context) is ssl.SSLContext
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


# -- network failures and limits -----------------------------------------------------------


def test_connection_cut_without_answer(feed_server: FeedServer) -> None:
    error = fetch_error(feed_server.route("/feed", Reply(abort=True)))
    assert error.kind == "network"


def test_connection_refused() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = fetch_error(f"http://127.0.0.1:{port}/feed")
    assert error.kind == "network"
    assert error.__cause__ is not None


def test_dripping_body_is_cut_at_the_deadline(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(200, FEED, drip=0.2))  # ~17 s for the whole body
    started = time.monotonic()
    error = fetch_error(url, timeout=1.0)
    elapsed = time.monotonic() - started
    assert error.kind == "timeout"
    assert "timed out after 1s reading body" in str(error)
    assert elapsed < 3.0


def test_slow_headers_hit_the_deadline(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(200, FEED, delay=10))
    started = time.monotonic()
    error = fetch_error(url, FetchLimits(timeout=0.5))
    assert error.kind == "timeout"
    assert time.monotonic() - started < 3.0


def test_body_over_the_cap_is_refused(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(200, b"x" * 5000))
    error = fetch_error(url, max_bytes=4999)
    assert error.kind == "too_large" and "exceeds 4999 bytes" in str(error)
    assert fetch(url, max_bytes=5000).body == b"x" * 5000


def test_gzip_body_is_decoded(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(200, FEED * 100, gzip=True))
    fetched = fetch(url)
    assert fetched.body == FEED * 100
    assert feed_server.requests[0].header("accept-encoding") == "gzip, deflate"


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_deflate_with_or_without_zlib_header(feed_server: FeedServer, wbits: int) -> None:
    packer = zlib.compressobj(wbits=wbits)
    body = packer.compress(FEED * 50) + packer.flush()
    url = feed_server.route("/feed", Reply(200, body, headers={"Content-Encoding": "deflate"}))
    assert fetch(url).body == FEED * 50


def test_corrupt_gzip_is_a_decoding_error(feed_server: FeedServer) -> None:
    body = gzip.compress(FEED * 50)[:-30] + b"garbage" * 5
    url = feed_server.route("/feed", Reply(200, body, headers={"Content-Encoding": "gzip"}))
    error = fetch_error(url)
    assert error.kind == "decoding" and isinstance(error.__cause__, Exception)


def fetch_error_and_peak(url: str, max_bytes: int) -> tuple[FetchError, int]:
    """The fetch's error and the most memory Python held meanwhile (tracemalloc)."""
    tracemalloc.start()
    try:
        error = fetch_error(url, max_bytes=max_bytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return error, peak


def test_gzip_bomb_is_cut_while_decoding(feed_server: FeedServer) -> None:
    bomb = gzip.compress(b"\0" * 30_000_000, compresslevel=9, mtime=0)
    assert len(bomb) < 40_000  # a small body on the wire...
    url = feed_server.route(
        "/feed", Reply(200, bomb, headers={"Content-Encoding": "gzip"})
    )  # ...that inflates to 30 MB
    error, peak = fetch_error_and_peak(url, max_bytes=1_000_000)
    assert error.kind == "too_large"
    assert "exceeds 1000000 bytes (after decoding)" in str(error)
    assert peak < 5_000_000, f"peak {peak} bytes: the body was inflated far past the cap"


def test_layered_encodings_are_undone_in_turn_each_bounded(feed_server: FeedServer) -> None:
    """ "gzip, gzip" is gzip applied twice: undone from the last, each layer holding at most
    a step, so a bomb inside a bomb (1.8 KB becoming gigabytes) is cut like a plain one."""
    twice = gzip.compress(gzip.compress(FEED * 50))
    url = feed_server.route("/twice", Reply(200, twice, headers={"Content-Encoding": "gzip, gzip"}))
    assert fetch(url).body == FEED * 50
    bomb = gzip.compress(gzip.compress(b"\0" * 200_000_000, compresslevel=9), compresslevel=9)
    assert len(bomb) < 20_000
    url = feed_server.route(
        "/bomb", Reply(200, bomb, headers={"Content-Encoding": "gzip, identity, gzip"})
    )
    error, peak = fetch_error_and_peak(url, max_bytes=1_000_000)
    assert error.kind == "too_large" and "after decoding" in str(error)
    assert peak < 5_000_000, f"peak {peak} bytes: the body was inflated far past the cap"


def test_gzip_members_one_after_another_are_one_body(feed_server: FeedServer) -> None:
    body = gzip.compress(FEED) + gzip.compress(b"<!-- second member -->")
    url = feed_server.route("/two", Reply(200, body, headers={"Content-Encoding": "gzip"}))
    assert fetch(url).body == FEED + b"<!-- second member -->"
    padded = gzip.compress(FEED) + b"\0" * 16  # bytes after the stream are not a member
    url = feed_server.route("/padded", Reply(200, padded, headers={"Content-Encoding": "gzip"}))
    assert fetch(url).body == FEED


def test_an_encoding_we_did_not_ask_for_is_a_decoding_error(feed_server: FeedServer) -> None:
    url = feed_server.route("/br", Reply(200, b"\x0b\x02\x80", headers={"Content-Encoding": "br"}))
    error = fetch_error(url)
    assert error.kind == "decoding" and "unsupported Content-Encoding 'br'" in str(error)


@pytest.mark.parametrize("coding", ["UTF-8", "none", "binary", "identity, utf-8"])
def test_a_content_coding_that_is_no_compression_is_ignored(
    feed_server: FeedServer, coding: str
) -> None:
    """Old misconfigured servers name a charset or "none" as the coding: the body is plain."""
    url = feed_server.route("/odd", Reply(200, FEED, headers={"Content-Encoding": coding}))
    assert fetch(url).body == FEED


def test_a_body_compressed_many_times_over_is_refused(feed_server: FeedServer) -> None:
    url = feed_server.route("/many", Reply(200, FEED, headers={"Content-Encoding": "gzip," * 2000}))
    error = fetch_error(url)
    assert error.kind == "decoding" and "2000 content codings" in str(error)


def test_what_follows_a_gzip_stream_is_not_read(feed_server: FeedServer) -> None:
    """Megabytes of junk after the stream were kept and copied at every read (quadratic)."""
    body = gzip.compress(FEED) + b"junk" * 2_000_000
    url = feed_server.route("/junk", Reply(200, body, headers={"Content-Encoding": "gzip"}))
    tracemalloc.start()
    try:
        assert fetch(url, max_bytes=1_000_000).body == FEED
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, f"peak {peak} bytes: the junk was kept"


def test_user_agent_and_accept(feed_server: FeedServer) -> None:
    fetch(feed_server.route("/feed", Reply(200, FEED)))
    sent = feed_server.requests[0]
    assert sent.header("user-agent") == f"monitor/{__version__} (+{PROJECT_URL})"
    accept = sent.header("accept") or ""
    assert accept.startswith("application/rss+xml")


def test_per_host_concurrency(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(200, FEED, delay=0.1))

    async def go() -> list[Fetched]:
        async with Fetcher(FetchLimits(per_host=2, global_limit=32)) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(url) for _ in range(8)))

    results = run(go())
    assert all(r.body == FEED for r in results)
    assert len(feed_server.requests) == 8
    assert feed_server.max_in_flight == 2


def test_global_limit_spans_hosts(feed_server: FeedServer) -> None:
    # "127.0.0.1" and "localhost" are two hosts to the fetcher, one server to count them.
    feed_server.route("/f", Reply(200, FEED, delay=0.1))
    urls = [feed_server.url("/f"), feed_server.url("/f").replace("127.0.0.1", "localhost")]

    async def go() -> None:
        async with Fetcher(FetchLimits(per_host=4, global_limit=3)) as fetcher:
            await asyncio.gather(*(fetcher.fetch(u) for u in urls * 4))

    run(go())
    assert len(feed_server.requests) == 8
    assert {r.header("host") for r in feed_server.requests} == {
        f"127.0.0.1:{feed_server.port}",
        f"localhost:{feed_server.port}",
    }
    assert feed_server.max_in_flight == 3


def test_deadline_does_not_include_waiting_for_a_slot(feed_server: FeedServer) -> None:
    url = feed_server.route("/feed", Reply(200, FEED, delay=0.3))

    async def go() -> list[Fetched]:
        async with Fetcher(FetchLimits(per_host=1, timeout=1.0)) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(url) for _ in range(5)))

    assert len(run(go())) == 5  # 1.5 s in all, but no single exchange took over 1 s
