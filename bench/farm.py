"""A local feed farm for benchmarks: N feeds of realistic RSS 2.0 and Atom on 127.0.0.1.

Everything is deterministic from one seed: the words, the entries, the ETags and the dates.
Each feed has 50 entries of article-like text (HTML paragraphs with links and emphasis,
guid/id, pubDate/updated, categories, authors), about 140 KB; even-numbered feeds are RSS
2.0, odd-numbered ones Atom 1.0. About one entry in ten is a syndicated wire story that
also appears, with its own link and guid, in other feeds (so deduplication has work to do),
and about one in fifty carries sentences of the topic's seed article (so scoring does).

The farm has *versions*: version 0 is the initial state; version 1 "publishes" five new
entries at the top of a fixed 10% of the feeds (the five oldest fall off), with a new ETag
and Last-Modified. Every other feed keeps its ETag, so a conditional request gets 304.
The parent switches versions between phases, so two clients can be measured on exactly
the same bytes.

The server is a small asyncio HTTP/1.1 server with keep-alive, run in its own process so it
does not share the client's GIL (it does share the machine's cores). It listens on
``hosts`` ports of 127.0.0.1 - a client that limits concurrency per host:port sees that
many hosts - and answers:

    GET /feeds/<i>.xml         the feed (RSS or Atom), with ETag and Last-Modified;
                               304 when If-None-Match matches (or, without it,
                               If-Modified-Since is not older than Last-Modified)
    anything else              404

It stops by itself: when the parent says so, when the parent process is gone, or after
``lifetime`` seconds, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import random
import re
import resource
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html import escape
from multiprocessing.connection import Connection
from pathlib import Path

ENTRIES_PER_FEED = 50


def _words(text: str) -> list[str]:
    return text.split()


PUBLISH_FRACTION = 0.10
PUBLISH_ENTRIES = 5
EPOCH = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# Common English words and the vocabulary of world news; the seed article adds its own.
_WORDS = _words("""
the of and to in a is that for it as was with be by on not he i this are or his from at
which but have an they you were her she there been one all we their has would when who
will more no if out so said what up its about into than them can only other new some could
time these two may then do first any my now such like our over man me even most made after
also did many before must through back years where much your way well down should because
each just those people how too little state good very make world still own see men work
long get here between both life being under never day same another know while last might
us great old year off come since against go came right used take three government minister
president officials ministry security country police court report council election party
talks agreement economy market prices energy oil gas bank trade sanctions border military
forces army attack region city capital province district village residents students women
children health hospital water food aid refugees migrants winter summer spring weekend
monday tuesday wednesday thursday friday saturday sunday january february march april may
june july august september october november december statement spokesman spokeswoman
according sources told reporters interview press conference parliament senate committee
law bill vote budget tax company companies business industry workers union strike protest
rally opposition leader leaders foreign affairs diplomatic relations visit delegation
meeting summit cooperation investment project projects railway road airport flights
exports imports growth inflation currency dollar ruble yuan rupee euro percent million
billion thousand hundred dozens several number rise fell increase decrease record highest
lowest since early late during ahead following amid despite however although meanwhile
earlier later today yesterday tomorrow week month decision plan plans proposal announced
confirmed denied rejected approved signed launched opened closed arrested detained killed
injured wounded died fire flood earthquake storm weather drought harvest wheat cotton
football match team player coach season championship tournament film festival music
culture museum school university research scientists study data technology internet
mobile network digital services platform users social media journalists newspaper agency
""")

_FIRST = _words("""Anna Boris Carlos Dina Elena Farid Gulnara Hamid Irina Jamal Karim Lena Marat
Nadia Omar Pavel Rustam Sara Timur Ulla Viktor Wahid Yulia Zarina""")
_LAST = _words("""Ahmadi Baker Chen Davletov Egorova Fazli Garcia Hakimi Ivanova Jones Kuznetsov
Lopez Mirzaev Nazari Orlova Petrov Rahimi Smirnova Tursunov Usmanova Volkov Wardak""")
_CATEGORIES = _words("""World Politics Economy Business Asia Europe Russia Afghanistan Central-Asia
Security Diplomacy Energy Society Sport Culture Science Technology Health Opinion""")


@dataclass(frozen=True, slots=True)
class FeedVersion:
    etag: str
    last_modified: str  # an HTTP-date
    body: bytes


@dataclass(frozen=True, slots=True)
class FarmSpec:
    feeds: int
    seed: int = 20250301
    hosts: int = 50
    entries: int = ENTRIES_PER_FEED
    publish_fraction: float = PUBLISH_FRACTION
    publish_entries: int = PUBLISH_ENTRIES
    seeds_dir: Path | None = None

    def published_feeds(self) -> list[int]:
        """The feeds that get new entries in version 1 (a fixed, seeded 10%)."""
        count = max(1, round(self.feeds * self.publish_fraction))
        return sorted(random.Random(self.seed + 1).sample(range(self.feeds), count))


def _vocabulary() -> tuple[list[str], list[float]]:
    """English words with their frequencies: wordfreq's top 20,000 (monitor depends on it)
    when importable, else the small list above with Zipf weights. A realistic vocabulary
    matters: with a few hundred words every story would share most terms with every other."""
    try:
        from wordfreq import top_n_list, word_frequency
    except ImportError:
        words = list(dict.fromkeys(_WORDS))  # listed roughly by frequency
        return words, [1.0 / (rank + 1) for rank in range(len(words))]
    words = [w for w in top_n_list("en", 20_000) if w.isalpha()]
    return words, [word_frequency(w, "en") for w in words]


class _Text:
    """Deterministic article-like text: Zipf-distributed words, sentences, paragraphs."""

    def __init__(self, rng: random.Random, seed_sentences: list[str]) -> None:
        self.rng = rng
        words, weights = _vocabulary()
        pool_words = rng.choices(words, weights, k=400_000)
        self.sentences: list[str] = []
        at = 0
        while at < len(pool_words) - 40:
            length = rng.randint(8, 28)
            chunk = pool_words[at:at + length]
            at += length
            chunk[0] = chunk[0].capitalize()
            if rng.random() < 0.3:  # a proper name somewhere in the sentence
                chunk.insert(rng.randrange(len(chunk)), rng.choice(_LAST))
            self.sentences.append(" ".join(chunk) + rng.choice(".....?!"))
        self.seed_sentences = seed_sentences or ["Russia and the Taliban held talks."]

    def title(self) -> str:
        words = self.rng.choice(self.sentences).rstrip(".?!").split()[:self.rng.randint(6, 12)]
        return " ".join(words)

    def paragraphs(self, count: int, related: bool) -> list[str]:
        rng = self.rng
        out = []
        for _ in range(count):
            picked = rng.sample(self.sentences, rng.randint(3, 6))
            if related:
                picked[rng.randrange(len(picked))] = rng.choice(self.seed_sentences)
            out.append(" ".join(picked))
        return out


def _html(paragraphs: list[str], rng: random.Random, link: str) -> str:
    parts = []
    for index, text in enumerate(paragraphs):
        words = text.split(" ")
        if len(words) > 6:
            at = rng.randrange(1, len(words) - 3)
            words[at] = f'<a href="{link}?ref=p{index}">{escape(words[at])}</a>'
            at2 = rng.randrange(1, len(words) - 1)
            if at2 != at:
                words[at2] = f"<strong>{escape(words[at2])}</strong>"
        parts.append("<p>" + " ".join(words) + "</p>")
    if rng.random() < 0.3:
        parts.insert(1, f'<figure><img src="{link}.jpg" alt="photo"/>'
                        f"<figcaption>{escape(paragraphs[0][:60])}</figcaption></figure>")
    return "\n".join(parts)


@dataclass(slots=True)
class _Entry:
    uid: str
    link: str
    title: str
    html: str
    summary: str
    published: datetime
    author: str
    categories: list[str]


class _Generator:
    def __init__(self, spec: FarmSpec) -> None:
        self.spec = spec
        rng = random.Random(spec.seed)
        seed_sentences: list[str] = []
        if spec.seeds_dir and spec.seeds_dir.is_dir():
            for path in sorted(spec.seeds_dir.glob("*.txt")):
                text = path.read_text(encoding="utf-8", errors="replace")
                seed_sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)
                                   if 40 < len(s.strip()) < 400]
        self.text = _Text(rng, seed_sentences)
        self.rng = rng
        # Wire stories that several feeds carry, each with its own link and guid.
        self.wire = [(self.text.title(), self.text.paragraphs(rng.randint(3, 5), False))
                     for _ in range(max(20, spec.feeds // 5))]

    def entry(self, base: str, feed: int, serial: int, published: datetime) -> _Entry:
        rng = random.Random(hash((self.spec.seed, feed, serial)) & 0xFFFFFFFF)
        self.text.rng = rng
        link = f"{base}/news/{feed}/{serial}-{rng.randrange(10**6):06d}"
        if rng.random() < 0.10:
            title, paragraphs = rng.choice(self.wire)
        else:
            related = rng.random() < 0.02
            title = self.text.title()
            paragraphs = self.text.paragraphs(rng.randint(3, 5), related)
        html = _html(paragraphs, rng, link)
        return _Entry(
            uid=f"urn:farm:{self.spec.seed}:{feed}:{serial}",
            link=link + ("?utm_source=rss&utm_medium=feed" if rng.random() < 0.5 else ""),
            title=title,
            html=html,
            summary=paragraphs[0][:240],
            published=published,
            author=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            categories=rng.sample(_CATEGORIES, rng.randint(1, 3)),
        )

    def feed(self, feed: int, base: str, version: int) -> FeedVersion:
        spec = self.spec
        extra = spec.publish_entries if version >= 1 else 0
        newest = spec.entries - 1 + extra
        start = EPOCH - timedelta(minutes=7 * feed)
        entries = [
            self.entry(base, feed, serial, start + timedelta(minutes=37 * serial))
            for serial in range(newest, newest - spec.entries, -1)
        ]
        updated = entries[0].published
        if feed % 2 == 0:
            body = _rss(feed, base, entries, updated)
        else:
            body = _atom(feed, base, entries, updated)
        etag = '"' + hashlib.blake2b(body, digest_size=10).hexdigest() + '"'
        return FeedVersion(etag, format_datetime(updated, usegmt=True), body)


def _rss(feed: int, base: str, entries: list[_Entry], updated: datetime) -> bytes:
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom">\n<channel>\n'
        f"<title>Farm News {feed}</title>\n<link>{base}/</link>\n"
        f'<atom:link href="{base}/feeds/{feed}.xml" rel="self" type="application/rss+xml"/>\n'
        f"<description>World and regional news from desk {feed}</description>\n"
        f"<language>en</language>\n"
        f"<lastBuildDate>{format_datetime(updated)}</lastBuildDate>\n<ttl>15</ttl>\n"
    ]
    for e in entries:
        cats = "".join(f"<category>{c}</category>" for c in e.categories)
        out.append(
            f"<item>\n<title>{escape(e.title)}</title>\n<link>{escape(e.link)}</link>\n"
            f'<guid isPermaLink="false">{e.uid}</guid>\n'
            f"<pubDate>{format_datetime(e.published)}</pubDate>\n"
            f"<dc:creator>{e.author}</dc:creator>\n{cats}\n"
            f"<description>{escape(e.summary)}</description>\n"
            f"<content:encoded><![CDATA[{e.html}]]></content:encoded>\n</item>\n"
        )
    out.append("</channel>\n</rss>\n")
    return "".join(out).encode("utf-8")


def _atom(feed: int, base: str, entries: list[_Entry], updated: datetime) -> bytes:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">\n'
        f"<title>Farm Wire {feed}</title>\n<id>urn:farm:feed:{feed}</id>\n"
        f'<link href="{base}/"/>\n<link rel="self" href="{base}/feeds/{feed}.xml"/>\n'
        f"<updated>{updated.isoformat()}</updated>\n"
    ]
    for e in entries:
        cats = "".join(f'<category term="{c}"/>' for c in e.categories)
        out.append(
            f"<entry>\n<title>{escape(e.title)}</title>\n"
            f'<link rel="alternate" type="text/html" href="{escape(e.link)}"/>\n'
            f"<id>{e.uid}</id>\n<published>{e.published.isoformat()}</published>\n"
            f"<updated>{e.published.isoformat()}</updated>\n"
            f"<author><name>{e.author}</name></author>\n{cats}\n"
            f'<summary type="text">{escape(e.summary)}</summary>\n'
            f'<content type="html">{escape(e.html)}</content>\n</entry>\n'
        )
    out.append("</feed>\n")
    return "".join(out).encode("utf-8")


# ---------------------------------------------------------------------------------------
# The server


class _State:
    def __init__(self, versions: list[list[FeedVersion]]) -> None:
        self.versions = versions  # versions[v][feed]
        self.current = 0
        self.requests = 0
        self.not_modified = 0
        self.bytes = 0


def _match(value: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in value.split(",")]
    return "*" in tags or etag in tags


_PATH = re.compile(rb"^/feeds/(\d+)\.xml$")


class _Http(asyncio.Protocol):
    """HTTP/1.1 GET with keep-alive; requests are small, so a simple buffer parser does."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > 65536:
            self._send(b"431 Request Header Fields Too Large", {}, b"", close=True)
            return
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            if not self._handle(head):
                return

    def _handle(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            self._send(b"400 Bad Request", {}, b"", close=True)
            return False
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        close = headers.get("connection", "").lower() == "close" or version == b"HTTP/1.0"
        state = self.state
        state.requests += 1
        match = _PATH.match(target.split(b"?", 1)[0])
        feeds = state.versions[state.current]
        if method not in (b"GET", b"HEAD") or not match or int(match.group(1)) >= len(feeds):
            self._send(b"404 Not Found", {"Content-Type": "text/plain"}, b"not found\n", close)
            return not close
        feed = feeds[int(match.group(1))]
        validators = {"ETag": feed.etag, "Last-Modified": feed.last_modified,
                      "Cache-Control": "max-age=60"}
        if _not_modified(headers, feed):
            state.not_modified += 1
            self._send(b"304 Not Modified", validators, b"", close)
        else:
            body = feed.body if method == b"GET" else b""
            validators["Content-Type"] = (
                "application/rss+xml; charset=utf-8" if b"<rss" in feed.body[:200]
                else "application/atom+xml; charset=utf-8"
            )
            self._send(b"200 OK", validators, body, close, length=len(feed.body))
        return not close

    def _send(self, status: bytes, headers: dict[str, str], body: bytes, close: bool,
              length: int | None = None) -> None:
        assert self.transport is not None
        head = [b"HTTP/1.1 " + status, b"Server: monitor-bench-farm"]
        head += [f"{k}: {v}".encode("latin-1") for k, v in headers.items()]
        if not status.startswith(b"304"):
            head.append(b"Content-Length: %d" % (len(body) if length is None else length))
        if close:
            head.append(b"Connection: close")
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.state.bytes += len(body)
        if close:
            self.transport.close()


def _not_modified(headers: dict[str, str], feed: FeedVersion) -> bool:
    if "if-none-match" in headers:
        return _match(headers["if-none-match"], feed.etag)
    since = headers.get("if-modified-since")
    if since:
        try:
            return parsedate_to_datetime(since) >= parsedate_to_datetime(feed.last_modified)
        except (TypeError, ValueError):
            return False
    return False


def build_versions(spec: FarmSpec, ports: list[int]) -> list[list[FeedVersion]]:
    """Both versions of every feed (version 1 differs only for the published feeds)."""
    gen = _Generator(spec)
    bases = [f"http://127.0.0.1:{ports[i % len(ports)]}" for i in range(spec.feeds)]
    first = [gen.feed(i, bases[i], 0) for i in range(spec.feeds)]
    second = list(first)
    for i in spec.published_feeds():
        second[i] = gen.feed(i, bases[i], 1)
    return [first, second]


def feed_urls(spec: FarmSpec, ports: list[int]) -> list[str]:
    return [f"http://127.0.0.1:{ports[i % len(ports)]}/feeds/{i}.xml" for i in range(spec.feeds)]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _serve(spec: FarmSpec, conn: Connection, lifetime: float) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    state = _State([])
    for _ in range(spec.hosts):
        server = await loop.create_server(lambda: _Http(state), "127.0.0.1", 0, backlog=1024)
        servers.append(server)
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    started = time.perf_counter()
    state.versions = build_versions(spec, ports)
    sizes = [len(f.body) for f in state.versions[0]]
    conn.send({"ports": ports, "urls": feed_urls(spec, ports), "build_s":
               time.perf_counter() - started, "mean_bytes": sum(sizes) / len(sizes),
               "published": spec.published_feeds()})
    stop = asyncio.Event()
    parent = os.getppid()

    def command() -> None:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            stop.set()
            return
        if message == "stop":
            stop.set()
        elif isinstance(message, tuple) and message[0] == "version":
            state.current = int(message[1])
            conn.send("ok")
        elif message == "stats":
            conn.send({"requests": state.requests, "not_modified": state.not_modified,
                       "bytes": state.bytes, "cpu_s": _cpu()})

    loop.add_reader(conn.fileno(), command)
    deadline = time.monotonic() + lifetime
    while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    loop.remove_reader(conn.fileno())
    for server in servers:
        server.close()


def _main(spec: FarmSpec, conn: Connection, lifetime: float) -> None:
    asyncio.run(_serve(spec, conn, lifetime))


class Farm:
    """The farm in a child process: `with Farm(spec) as farm: farm.urls ...`."""

    def __init__(self, spec: FarmSpec, lifetime: float = 3600.0) -> None:
        self.spec = spec
        self.lifetime = lifetime
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_main, args=(spec, child, lifetime), daemon=True)
        self.urls: list[str] = []
        self.info: dict[str, object] = {}

    def __enter__(self) -> Farm:
        self._process.start()
        if not self._conn.poll(600):
            self.close()
            raise RuntimeError("the farm did not start within 600 s")
        self.info = self._conn.recv()
        self.urls = list(self.info["urls"])  # type: ignore[call-overload]
        return self

    def _ask(self, message: object) -> object:
        self._conn.send(message)
        if not self._conn.poll(30):
            raise RuntimeError(f"the farm did not answer {message!r}")
        return self._conn.recv()

    def set_version(self, version: int) -> None:
        self._ask(("version", version))

    def stats(self) -> dict[str, float]:
        return self._ask("stats")  # type: ignore[return-value]

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def close(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)

    def __exit__(self, *exc: object) -> None:
        self.close()
