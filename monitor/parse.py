"""Feed bytes plus response headers → `ParsedFeed` of clean `Entry` records; replay item → `Entry`.

Pure core: no network, no database, no clock (``now`` is passed in). It never fetches: both
parsers get the body as bytes (feedparser through a BytesIO, because ``feedparser.parse``
given raw bytes would try them as a *file path* first), and fastfeedparser only fetches
when handed a ``str`` URL, which it never is here.

Two parsers, one result:

* **Fast path** — fastfeedparser (lxml plus a native extractor) for well-formed RSS
  0.9x/1.0/2.0 and Atom. Before it runs, the body is transcoded to UTF-8 by the HTTP/XML
  charset rules and checked for well-formedness with expat, because fastfeedparser repairs
  broken XML silently and we want to report it.
* **Reference path** — feedparser, for anything the fast path declines: malformed XML
  (its "bozo" feeds still yield entries, with ``warning`` set), undeclarable encodings,
  ``xml:base``, entities defined only in an external DTD (RSS 0.91), a fast-path error,
  or a suspicious fast result (no entries although the body has ``<item``/``<entry``).
* **Limits** — a document that would hold the worker thread for long is refused with a
  ``ParseError`` saying why: a tag with more than 1,000 attributes, more than 100,000
  entries, and, before feedparser, more than 250,000 tags and attributes or entities that
  expand to more than the document (see "limits" below).
* **JSON Feed 1.0/1.1** is read here with ``json`` (a tiny format) and never sent to
  feedparser. Other JSON, HTML pages, empty bodies and random bytes raise ``ParseError``.

Measured on a 138 KB RSS 2.0 feed with 50 entries (description + content:encoded, built by
``tests/test_parse.py::realistic_feed``), Python 3.11, one core:

    feedparser.parse, defaults (what reader pays per feed)    ~40 ms
    feedparser.parse, sanitize_html/resolve_relative_uris off ~13 ms
    fastfeedparser.parse                                        ~0.35 ms
    expat well-formedness check                                 ~0.22 ms
    parse_feed, whole (fast path, 50 clean Entry records)       ~8 ms
      of which html_to_text on 100 summaries and contents       ~4 ms

So a cold poll of 1000 such feeds costs about 8 s of parsing CPU instead of ~40 s. A
13.6 MB feed of 10,000 entries parses in ~1.3 s with a ~31 MB peak.

Entry rules: ``key`` = the guid (canonicalised when it is a URL), else the canonical link,
else a hash of title + summary; a URL keeps its fragment there unless it is a list of
parameters (a live page's posts differ only by theirs: `text.identity_url`). ``url`` = the
link as published, made absolute against
Content-Location or the feed URL; ``canonical_url`` and a link ``key`` are those of the
article a news search's click counter leads to (Bing News's, whose query changes at every
fetch).
``content`` is empty when the feed gives no body beyond the summary; a missing summary, or
one that is just the start of the content, becomes the content's lead paragraph. What a
CMS appends to every item ("The post X appeared first on Y.", "Continue reading...") is
dropped, and so is an aggregator's description that only repeats the headline.
``published`` = published or updated, in UTC; missing → ``now`` with ``dated=False``; more
than a day ahead of ``now``, or before 1990 (a placeholder), → ``now`` with
``dated=False``. ``author`` = a name (RSS's "address (Name)" gives the name). ``source`` =
the outlet an aggregator's item names (``<source>``, Bing's ``<News:Source>``; its title
then loses " - Outlet"), else the feed's name.
Several entries with one key keep the latest, and several with one link and text the
first (both counted in ``warning``).

Unchanged entries are not cleaned again: each entry gets ``raw_hash``, a 64-bit digest of
the item exactly as the parser gave it (fields still holding markup, plus the base URL);
given ``known`` (the raw hashes already stored for this feed), ``parse_feed`` skips those
items before any cleaning and counts them in ``ParsedFeed.unchanged``. Cleaning is ~90% of
a feed's parse, and a changed feed usually repeats most of its entries.
"""

from __future__ import annotations

import calendar
import codecs
import email.utils
import functools
import hashlib
import html
import html.entities
import io
import json
import re
import time
import xml.parsers.expat
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import parse_qsl, urljoin, urlsplit

from monitor.errors import ParseError
from monitor.models import Entry, ParsedFeed
from monitor.text import (
    CROWDED_TAG,
    MAX_ATTRIBUTES,
    canonical_url,
    clean_line,
    content_hash,
    detect_language,
    html_to_text,
    identity_url,
    link_and_text,
    safe_str,
    shorten,
    with_fragment,
)

__all__ = ["entry_from_item", "parse_feed"]

MAX_FUTURE_SKEW = timedelta(days=1)
# A publication date before this is a placeholder, not a date: 1970-01-01 (a zero Unix
# time), 0001-01-01 (an unset .NET or Go date) or 1900-01-01 from a CMS. Such an entry is
# dated when first seen, as one without a date (its "1970" would put it before every
# other report of its story, and stretch a timeline over fifty years).
EARLIEST_PUBLISHED = datetime(1990, 1, 1, tzinfo=UTC)
_ABSOLUTE = ("http://", "https://")
_LEAD_CHARS = 500
# A title or an author longer than this is cut (a feed once sent a 10 MB title: stored
# whole, and in every alert, log line and export that names the story).
MAX_TITLE = 1000
MAX_AUTHOR = 300
# An entry's source: the feed's name from the config, else its title, or the outlet an
# aggregator's item names; the last two come from the feed, and as long as it likes.
MAX_SOURCE = 300
# Bounds on what a document may hold: parsing runs on the one worker thread that judges
# every feed, so a feed that takes a minute to parse delays all the others. Each is far
# above what real feeds hold; a document beyond one is a parse error saying which (found by
# an audit). Attributes on one tag: `text.MAX_ATTRIBUTES`.
MAX_ENTRIES = 100_000  # each costs ~10 µs to clean even when empty, then has to be judged
# "<" and "=" (tags and attributes) in a document left to feedparser, which spends 10-25 µs
# on each: ~6 s at most, where 10 MB of "<x/>" took a minute. A 10 MB feed of articles has
# ~200,000, and it would take the fast path unless it is malformed. Not counted: those in
# CDATA sections, which feedparser reads as text (`_markup_in_cdata`).
MAX_REFERENCE_MARKUP = 250_000
# Text that the entities a document declares may expand to, beyond the document's own size.
ENTITY_TEXT_ALLOWANCE = 1_000_000


def _no_relative_dates(value: str) -> None:
    return None


_COLON_OFFSET = re.compile(r"(\d\d:\d\d(?::\d\d)?\s+[+-]\d\d):(\d\d)\s*$")


# Both parsers are imported on first use (~20 ms together): a poll whose feeds all answer
# 304 parses nothing.
@functools.cache
def _fastfeedparser() -> Any:
    import fastfeedparser
    import fastfeedparser.main as ffp_main

    # fastfeedparser's last-resort date reader (dateparser) turns "2 hours ago" or
    # "yesterday" into dates relative to the wall clock, and caches them: parsing would
    # depend on when it ran, and replay could not be reproduced. feedparser's rules never do
    # that, so neither do we: such a date counts as missing.
    if hasattr(ffp_main, "_slow_dateparser"):
        ffp_main._slow_dateparser = _no_relative_dates
    # An RFC 822 date whose offset has a colon ("Thu, 17 Apr 2025 12:47:00 +03:00") reaches
    # its email.utils fallback, which ignores such an offset and reads the time as UTC (3
    # hours late for Moscow); feedparser reads it right. The colon goes first. So does a
    # zone's name that email.utils does not know ("10:00 EEST": `_zone_as_offset`).
    original = getattr(ffp_main, "_parsedate_to_utc", None)
    if original is not None:

        def parsedate_to_utc(value: str) -> Any:
            return original(_zone_as_offset(_COLON_OFFSET.sub(r"\1\2", value)))

        ffp_main._parsedate_to_utc = parsedate_to_utc
    return fastfeedparser


@functools.cache
def _feedparser() -> Any:
    import feedparser

    feedparser.registerDateHandler(_date_in_named_zone)
    return feedparser


# A time followed by a zone's abbreviation ("Sat, 28 Nov 2026 10:00:00 MSK").
_NAMED_ZONE = re.compile(r"\d:\d\d(?::\d\d)?\s*([A-Za-z]{2,5})\s*$")


@functools.cache
def _zone_offsets() -> dict[str, int]:
    """Seconds east of UTC of the zone abbreviations news feeds use (MSK, CET, EEST, IST,
    JST, AEST ...): fastfeedparser's table, the one its dateutil reader uses."""
    import fastfeedparser.main as ffp_main

    table = getattr(ffp_main, "_custom_tzinfos", {})
    return {name: seconds for name, seconds in table.items() if name.isalpha()}


def _zone_as_offset(value: str) -> str:
    """``value`` with a known zone abbreviation at its end written as an offset ("+0300").
    RFC 822's readers (email.utils, feedparser's) know only UT, GMT and the US zones, and
    read any other name as UTC: "10:00 MSK" came out three hours late."""
    match = _NAMED_ZONE.search(value)
    seconds = None if match is None else _zone_offsets().get(match.group(1).upper())
    if match is None or seconds is None:
        return value
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{value[: match.start(1)]}{'-' if seconds < 0 else '+'}{hours:02d}{minutes:02d}"


def _date_in_named_zone(value: str) -> time.struct_time | None:
    """A date handler for feedparser, tried before its own: an RFC 822 date whose zone is
    an abbreviation it does not know, read with that zone's offset. Else None, and
    feedparser's handlers go on as before."""
    offset = _zone_as_offset(value)
    parsed = email.utils.parsedate_tz(offset) if offset != value else None
    return None if parsed is None else time.gmtime(email.utils.mktime_tz(parsed))


@dataclass(slots=True)
class _Item:
    """One entry as a parser gave it, before cleaning. Text fields may hold markup."""

    guid: str | None
    link: str | None
    title: str
    summary: str
    content: str
    published: datetime | None
    language: str | None = None
    author: str | None = None
    summary_is_html: bool = True
    content_is_html: bool = True
    outlet: str | None = None  # the item's own <source>: an aggregator's, naming the outlet


@dataclass(slots=True)
class _Doc:
    title: str | None
    link: str | None
    language: str | None
    items: list[_Item]
    warning: str | None = None


# --------------------------------------------------------------------------- public API


def parse_feed(
    body: bytes,
    headers: Mapping[str, str],
    url: str,
    now: datetime,
    *,
    source: str | None = None,
    known: Callable[[list[int]], Collection[int]] | None = None,
) -> ParsedFeed:
    """Parse a feed document fetched from ``url`` into clean entries.

    ``headers`` are the response headers (any case); ``content-type`` (charset) and
    ``content-location`` (base for relative links) are used. ``source`` names the outlet;
    the feed's own title is used when it is None. ``known``, given the raw hashes of the
    document's items, returns those already stored: such items are skipped uncleaned.
    Raises ``ParseError`` when the body is not a feed or cannot be parsed at all.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    base = urljoin(url, lowered["content-location"]) if lowered.get("content-location") else url
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise ParseError(f"{url} is not a feed: empty body")
    if head[:1] in (b"{", b"["):
        doc = _parse_json_feed(body, url)
    elif head[:14].lower() == b"<!doctype html" or head[:5].lower() == b"<html":
        raise ParseError(f"{url} is not a feed: {_html_page(body, url)}")
    else:
        doc = _parse_fast(body, lowered, url) or _parse_reference(body, lowered, url)
    return _build(doc, base, _utc(now), source, known)


def entry_from_item(item: Mapping[str, Any], now: datetime, *, source: str | None = None) -> Entry:
    """An `Entry` from one archived item (DESIGN.md §3.4, one line of a replay file).

    Reads ``url``, ``title``, ``published`` (ISO 8601), and optionally ``summary`` (may hold
    HTML), ``content``, ``source`` and ``language``; other fields are ignored. The item's
    ``source`` wins over the ``source`` argument. Raises ``ParseError`` for an item with
    neither a URL nor any text.
    """
    if not isinstance(item, Mapping):
        raise ParseError(f"archived item is not a JSON object: {type(item).__name__}")

    def field(name: str) -> str:
        value = item.get(name)
        return value if isinstance(value, str) else ""

    if not (field("url") or field("title") or field("summary") or field("content")):
        raise ParseError("archived item has no url, title, summary or content")
    raw = _Item(
        guid=None,
        link=field("url") or None,
        title=field("title"),
        summary=field("summary"),
        content=field("content"),
        published=_parse_iso(item.get("published")),
        language=field("language") or None,
        outlet=field("source") or None,  # as a polled item naming it: its title's end goes
    )
    return _make_entry(raw, base=None, now=_utc(now), source=field("source") or source)


# --------------------------------------------------------------------------- fast path


_XML_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([^;"'\s]+)""", re.I)
_UTF16_32_BOMS = (
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
)
# An item's <source> (RSS: with its url; Atom: with children), which only the reference
# parser reads. HTML's <source srcset=...> in a CDATA body is neither.
_ITEM_SOURCE = re.compile(rb"<source(?:\s+url\s*=|\s*>)")
# Bing News names an item's outlet in an element of its own namespace (<News:Source>),
# declared on its root, which fastfeedparser drops and feedparser keeps as "news_source".
_BING_NAMESPACE = b"xmlns:News="
_RSS_LANGUAGE = re.compile(
    rb"<(?:dc:)?language>\s*(?:<!\[CDATA\[\s*)?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)\s*(?:\]\]>\s*)?</"
)  # (in CDATA at the BBC: "<language><![CDATA[en-gb]]></language>")


def _parse_fast(body: bytes, headers: Mapping[str, str], url: str) -> _Doc | None:
    """fastfeedparser's reading of a well-formed document, or None to use the reference."""
    prepared = _to_utf8(body, headers.get("content-type", ""))
    if prepared is None:
        return None
    xml_bytes, warning = prepared
    # xml:base, and xml:lang below the root, are honoured only by the reference parser (and
    # entities the document declares itself: see `_well_formed`).
    if b"xml:base" in xml_bytes or xml_bytes.count(b"xml:lang") > 1:
        return None
    if b"<source" in xml_bytes and _ITEM_SOURCE.search(xml_bytes):
        return None  # an aggregator's items name their outlets (Google News does)
    if xml_bytes.find(_BING_NAMESPACE, 0, 4096) >= 0:
        return None  # so do Bing News's
    if not _well_formed(xml_bytes):
        # HTML's named entities (&eacute;), undefined in XML, are what most often spoils a
        # document: old RSS 0.91 declared them in Netscape's DTD, which no parser reads.
        numeric = _NAMED_ENTITY.sub(_numeric_entity, xml_bytes)
        if numeric == xml_bytes or not _well_formed(numeric):
            return None
        xml_bytes = numeric
        flaw = "entities XML does not define, read as HTML reads them"
        warning = f"{warning}; {flaw}" if warning else flaw
    # (expat's time is linear in attributes; in well-formed XML each has its "=", so a
    # document with few of them has no crowded tag, and most feeds skip the scan.)
    if xml_bytes.count(b"=") > MAX_ATTRIBUTES:
        _refuse_crowded_tags(xml_bytes, url)
    try:
        parsed = _fastfeedparser().parse(xml_bytes)
    except Exception:  # whatever it is, the reference parser decides and reports
        return None
    raw_entries = parsed.get("entries") or []
    _refuse_many_entries(len(raw_entries), url)
    if not raw_entries and (b"<item" in xml_bytes or b"<entry" in xml_bytes):
        return None
    feed = parsed.get("feed") or {}
    language = feed.get("language")
    if not language:
        match = _RSS_LANGUAGE.search(xml_bytes, 0, 8192)
        language = match.group(1).decode("ascii") if match else None
    return _Doc(
        title=feed.get("title") or None,
        link=feed.get("link") or None,
        language=language,
        items=[_item_from_fast(e) for e in raw_entries],
        warning=warning,
    )


def _item_from_fast(e: Mapping[str, Any]) -> _Item:
    link = _str_or_none(e.get("link"))
    guid = _str_or_none(e.get("id"))
    if guid == link:  # fastfeedparser fills a missing RSS guid with the link
        guid = None
    contents = e.get("content") or []
    body, body_lang, body_html = "", None, True
    if contents and isinstance(contents[0], Mapping):
        body = str(contents[0].get("value") or "")
        body_lang = contents[0].get("language")
        body_html = "plain" not in str(contents[0].get("type") or "")
    stamp = e.get("published") or e.get("updated")
    return _Item(
        guid=guid,
        link=link,
        title=str(e.get("title") or ""),
        summary=str(e.get("description") or ""),
        content=body,
        published=_parse_iso(stamp),
        language=_str_or_none(body_lang),
        author=_str_or_none(e.get("author")),
        content_is_html=body_html,
    )


def _to_utf8(body: bytes, content_type: str) -> tuple[bytes, str | None] | None:
    """The body as UTF-8 XML (declaration fixed) plus a charset warning, or None to decline.

    Order of authority (RFC 7303): a byte-order mark, then the HTTP charset, then the XML
    declaration, then UTF-8. One exception, because servers often send a default charset:
    when HTTP names another charset, the declaration says UTF-8 and the bytes are valid
    UTF-8, the document is believed.
    """
    if body.startswith(codecs.BOM_UTF8):
        return body[3:], None
    if body.startswith(_UTF16_32_BOMS):
        return None
    match = _CHARSET.search(content_type)
    http_codec = _codec(match.group(1)) if match else None
    decl = _XML_DECL_ENCODING.match(body, 0, 512)
    decl_codec = _codec(decl.group(1).decode("ascii")) if decl else None
    if (match and http_codec is None) or (decl and decl_codec is None):
        return None  # an unknown charset name: let feedparser guess
    codec = http_codec or decl_codec or "utf-8"
    warning = None
    if http_codec and decl_codec and http_codec != decl_codec:
        if decl_codec == "utf-8" and _is_utf8(body):
            codec = "utf-8"
        warning = (
            f"charset conflict: HTTP says {match.group(1) if match else '?'}, "
            f"the document says {decl.group(1).decode('ascii') if decl else '?'}; read as {codec}"
        )
    if codec == "utf-8":
        mended, repaired = _mended_utf8(body)
        if mended is None:
            return None  # not UTF-8 at all (Latin-1 called UTF-8): feedparser guesses
        if repaired:
            warning = "; ".join(w for w in (warning, repaired) if w)
        return (_declare_utf8(mended) if decl_codec not in (None, "utf-8") else mended), warning
    try:
        text = body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None
    return _declare_utf8(text.encode("utf-8")), warning


def _mended_utf8(body: bytes) -> tuple[bytes | None, str | None]:
    """UTF-8 with a few stray bytes (a byte cut from a character, a Latin-1 quote pasted
    in) gets U+FFFD in their place and a warning: read whole in another charset, every
    other letter of the feed would be garbled. None when the non-ASCII text is mostly not
    UTF-8, so that the document is another charset (feedparser guesses which)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return body, None
    text = body.decode("utf-8", "replace")
    bad = text.count("\ufffd") - body.count("\ufffd".encode())
    good = sum(1 for char in text if char > "\x7f") - text.count("\ufffd")
    if good < 10 * bad:
        return None, None
    return text.encode("utf-8"), f"{bad} byte(s) that are not UTF-8 replaced by U+FFFD"


def _codec(name: str) -> str | None:
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    return "utf-8" if codec == "ascii" else codec  # ASCII is UTF-8's subset


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _declare_utf8(body: bytes) -> bytes:
    match = _XML_DECL_ENCODING.match(body, 0, 512)
    if match is None:
        return body
    return body[: match.start(1)] + b"utf-8" + body[match.end(1) :]


_NAMED_ENTITY = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")
_XML_ENTITIES = frozenset((b"amp", b"lt", b"gt", b"quot", b"apos"))


def _numeric_entity(match: re.Match[bytes]) -> bytes:
    """An HTML named entity as a numeric character reference; XML's own five as they
    were; a name HTML does not define as the text it is (as a browser shows it)."""
    name = match.group(1)
    if name in _XML_ENTITIES:
        return match.group(0)
    codepoint = html.entities.name2codepoint.get(name.decode("ascii"))
    return b"&#%d;" % codepoint if codepoint is not None else b"&amp;" + match.group(0)[1:]


class _Declared(Exception):
    """The document declares an entity: `_well_formed` need read no further."""


def _well_formed(xml_bytes: bytes) -> bool:
    """Whether expat reads the document without an error, an unresolved entity, or an
    entity the document declares itself (only the reference parser honours those:
    fastfeedparser drops such an entity and the text after it)."""
    parser = xml.parsers.expat.ParserCreate()
    skipped: list[str] = []

    def on_skipped(name: str, *ignored: object) -> None:
        skipped.append(name)

    def on_declared(*ignored: object) -> None:
        # Stop at once: expat would expand the entities up to 100 times the document.
        raise _Declared

    parser.SkippedEntityHandler = on_skipped
    parser.EntityDeclHandler = on_declared
    try:
        parser.Parse(xml_bytes, True)
    except (xml.parsers.expat.ExpatError, _Declared):
        return False
    return not skipped


# --------------------------------------------------------------------------- limits


_CROWDED_TAG = re.compile(CROWDED_TAG.encode())


def _refuse_crowded_tags(xml_bytes: bytes, url: str) -> None:
    """A tag with more than `MAX_ATTRIBUTES` attributes is refused: fastfeedparser's
    extractor and feedparser take quadratic time in them (80,000 on one tag, a 0.9 MB feed:
    4.6 s on the fast path; 20,000 took feedparser 2.8 s). Namespace declarations count."""
    crowded = _CROWDED_TAG.search(xml_bytes)
    if crowded is None:
        return
    name = _FIRST_ELEMENT.match(xml_bytes, crowded.start())
    tag = name.group(1).decode("ascii", "replace") if name else "?"
    line = xml_bytes.count(b"\n", 0, crowded.start()) + 1
    raise ParseError(
        f"{url} refused: a tag with more than {MAX_ATTRIBUTES:,} attributes or namespace "
        f"declarations (<{tag}> on line {line:,}); parsers take quadratic time in them"
    )


def _refuse_heavy_markup(xml_bytes: bytes, url: str) -> None:
    """feedparser's time is in its tags and attributes, not its bytes: see
    `MAX_REFERENCE_MARKUP`. Those in CDATA sections are text to it, and do not count."""
    markup = xml_bytes.count(b"<") + xml_bytes.count(b"=")
    if markup > MAX_REFERENCE_MARKUP and b"<![CDATA[" in xml_bytes:
        markup -= _markup_in_cdata(xml_bytes)
    if markup > MAX_REFERENCE_MARKUP:
        raise ParseError(
            f"{url} refused: {markup:,} tags and attributes in a document the fast parser "
            f"cannot read; feedparser is given at most {MAX_REFERENCE_MARKUP:,}"
        )


class _Unsure(Exception):
    """`_markup_in_cdata` cannot tell where the document's sections are."""


def _markup_in_cdata(xml_bytes: bytes) -> int:
    """The "<" and "=" in the CDATA sections of a document expat reads whole: text to both
    of feedparser's parsers, each reading a section from "<![CDATA[" to the next "]]>"
    (4.5 MB of articles in CDATA took it 0.3 s, the same markup as elements 1.5 s). Where
    expat sees no section, the tolerant parser may see one (it ends a processing
    instruction at its first ">"), which costs it less, not more. 0 for a document expat
    does not read whole, or whose DOCTYPE declares anything: where the parsers may not
    agree on its sections, all of its markup counts."""
    parser = xml.parsers.expat.ParserCreate()
    opened: list[int] = []
    inside = 0

    def on_start() -> None:
        opened.append(parser.CurrentByteIndex)

    def on_end() -> None:
        nonlocal inside
        start, stop = opened.pop(), parser.CurrentByteIndex
        inside += xml_bytes.count(b"<", start, stop) + xml_bytes.count(b"=", start, stop)

    def on_doctype(name: str, system: str | None, public: str | None, subset: int) -> None:
        if subset:
            raise _Unsure

    parser.StartCdataSectionHandler = on_start
    parser.EndCdataSectionHandler = on_end
    parser.StartDoctypeDeclHandler = on_doctype
    try:
        parser.Parse(xml_bytes, True)
    except (xml.parsers.expat.ExpatError, _Unsure):
        return 0
    return inside


_ENTITY_DECL = re.compile(rb"""<!ENTITY\s+(%\s+)?([^\s"'>]+)\s+(?:"([^"]*)"|'([^']*)')""")
_ENTITY_REF = re.compile(rb"&([A-Za-z_:][\w.:-]*);")


def _refuse_entity_expansion(xml_bytes: bytes, url: str) -> None:
    """Entities a document declares may not expand to more text than the document holds
    (plus `ENTITY_TEXT_ALLOWANCE`). expat stops only at 100 times the document, and
    feedparser's tolerant parser not at all: a 0.5 MB feed grew to 50 MB of text, 0.8 s and
    200 MB. Real feeds declare entities for single characters, if at all."""
    if b"<!ENTITY" not in xml_bytes:
        return
    values: dict[bytes, bytes] = {}
    for parameter, name, double, single in _ENTITY_DECL.findall(xml_bytes):
        if parameter:
            raise ParseError(
                f"{url} refused: it declares parameter entities (<!ENTITY %), which can "
                "declare entities unseen"
            )
        values.setdefault(name, double or single)  # the first declaration binds
    for name, value in values.items():
        if any(inner in values for inner in _ENTITY_REF.findall(value)):
            raise ParseError(
                f"{url} refused: its entity &{name.decode('ascii', 'replace')}; is made of "
                "entities (how entity bombs grow)"
            )
    allowed = len(xml_bytes) + ENTITY_TEXT_ALLOWANCE
    if xml_bytes.count(b"&") * max(map(len, values.values()), default=0) <= allowed:
        return  # (each reference starts with "&" and expands to one value at most)
    uses = Counter(match.group(1) for match in _ENTITY_REF.finditer(xml_bytes))
    text = sum(len(values[name]) * uses[name] for name in values)
    if text > allowed:
        raise ParseError(
            f"{url} refused: the entities it declares expand to {text:,} bytes of text, "
            f"from a document of {len(xml_bytes):,}"
        )


def _refuse_many_entries(count: int, url: str) -> None:
    if count > MAX_ENTRIES:
        raise ParseError(f"{url} refused: {count:,} entries, more than {MAX_ENTRIES:,}")


# --------------------------------------------------------------------------- reference path


def _parse_reference(body: bytes, headers: Mapping[str, str], url: str) -> _Doc:
    # Content-Location is kept from feedparser so that relative guids stay as written (it
    # would resolve them against the base); links are made absolute in _make_entry instead.
    given = {k: v for k, v in headers.items() if k != "content-location"}
    feedparser = _feedparser()
    try:
        # The limits are checked on the document as feedparser's parsers will read it: in
        # UTF-16, say, a byte scan would see no tags at all.
        readable = feedparser.encodings.convert_to_utf8(given, body, {})
        _refuse_crowded_tags(readable, url)
        _refuse_heavy_markup(readable, url)
        _refuse_entity_expansion(readable, url)
        parsed = feedparser.parse(
            io.BytesIO(body),
            response_headers=given,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except ParseError:
        raise
    except Exception as exc:  # feedparser promises not to raise; translate if it does
        raise ParseError(f"{url} could not be parsed: {type(exc).__name__}: {exc}") from exc
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    entries = parsed.get("entries") or []
    _refuse_many_entries(len(entries), url)
    if not parsed.get("version") and not entries:
        reason = _what_it_is(body, url)
        if reason is None:
            reason = f"{type(problem).__name__}: {problem}" if problem else "no feed elements"
        raise ParseError(f"{url} is not a feed: {reason}") from problem
    warning = None
    if problem is not None and not isinstance(problem, feedparser.NonXMLContentType):
        warning = f"{type(problem).__name__}: {problem}"
    feed = parsed.get("feed") or {}
    return _Doc(
        title=feed.get("title") or None,
        link=feed.get("link") or None,
        language=feed.get("language") or (feed.get("title_detail") or {}).get("language"),
        items=[_item_from_reference(e) for e in entries],
        warning=warning,
    )


_FIRST_ELEMENT = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_SKIPPED_MARKUP = re.compile(rb"<!--.*?-->|<\?.*?\?>|<!DOCTYPE[^>]*>", re.S | re.I)


def _what_it_is(body: bytes, url: str) -> str | None:
    """What a document that is not a feed is, when it can be told: an HTML page (a site's
    home page, an error page), or XML of another kind (a sitemap)."""
    head = _SKIPPED_MARKUP.sub(b"", body[:8192])
    match = _FIRST_ELEMENT.search(head)
    if match is None:
        return None
    root = match.group(1).decode("ascii", "replace")
    if root.lower() in ("html", "head", "body"):
        return _html_page(body, url)
    return f"an XML document whose root is <{root}> (a feed's is <rss>, <feed> or <rdf:RDF>)"


_LINK_TAG = re.compile(rb"<link\b[^<>]{0,2000}>", re.I)
_LINK_ATTRIBUTE = re.compile(rb"""([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_FEED_TYPES = {
    b"application/rss+xml", b"application/atom+xml", b"application/rdf+xml",
    b"application/feed+json", b"application/json",
}  # fmt: skip


def _html_page(body: bytes, url: str) -> str:
    """What to call an HTML page given for a feed, with the feeds its head announces
    (<link rel="alternate" type="application/rss+xml">): a site's address given for its
    feed's is a common slip."""
    feeds: list[str] = []
    # "application/json": JSON Feed 1.0's type, and also that of WordPress's REST API pages,
    # which its every page announces as alternates: named only when no other feed is
    plain_json: list[str] = []
    for tag in _LINK_TAG.finditer(body, 0, 65536):
        attributes = {
            m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) or b""
            for m in _LINK_ATTRIBUTE.finditer(tag.group(0))
        }
        rel = attributes.get(b"rel", b"").lower().split()
        kind = attributes.get(b"type", b"").strip().lower()
        if b"alternate" not in rel or kind not in _FEED_TYPES:
            continue
        href = clean_line(html.unescape(attributes.get(b"href", b"").decode("utf-8", "replace")))
        address = urljoin(url, href) if href else ""
        into = plain_json if kind == b"application/json" else feeds
        if address.startswith(_ABSOLUTE) and address not in into and len(into) < 3:
            into.append(address)
    feeds = feeds or plain_json
    if not feeds:
        return "an HTML page"
    named = "a feed" if len(feeds) == 1 else "feeds"
    return f"an HTML page, which names {named}: {', '.join(feeds)}"


def _item_from_reference(e: Mapping[str, Any]) -> _Item:
    summary_detail = e.get("summary_detail") or {}
    contents = [c for c in e.get("content") or [] if isinstance(c, Mapping)]
    chosen = next((c for c in contents if "html" in str(c.get("type", ""))), None)
    chosen = chosen or (contents[0] if contents else {})
    # dict.get: FeedParserDict.get maps a missing published_parsed to updated_parsed with a
    # DeprecationWarning; ask for each explicitly instead.
    plain = cast(dict[str, Any], e)
    stamp = dict.get(plain, "published_parsed") or dict.get(plain, "updated_parsed")
    published = None
    if stamp:
        try:
            published = datetime.fromtimestamp(calendar.timegm(stamp), UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            published = None
    languages = (d.get("language") for d in (e.get("title_detail") or {}, summary_detail, chosen))
    origin = e.get("source")
    outlet = origin.get("title") if isinstance(origin, Mapping) else e.get("news_source")
    guid, link = _str_or_none(e.get("id")), _str_or_none(e.get("link"))
    if link is None or (e.get("guidislink") and link == guid):
        # An item without a <link>: feedparser takes its guid for one unless isPermaLink is
        # "false", even a guid that is no address ("a-17" became the feed's URL + "a-17");
        # fastfeedparser takes a guid that is a web address, whatever isPermaLink says.
        # Both paths now do the latter, so a feed gives the same entries on either.
        link = guid if guid and guid.startswith(_ABSOLUTE) else None
    return _Item(
        guid=guid,
        link=link,
        title=str(e.get("title") or ""),
        summary=str(e.get("summary") or ""),
        content=str(chosen.get("value") or ""),
        published=published,
        language=next((lang for lang in languages if lang), None),
        author=_first_author(e),
        summary_is_html=summary_detail.get("type", "text/html") != "text/plain",
        content_is_html=chosen.get("type", "text/html") != "text/plain",
        outlet=_str_or_none(outlet),
    )


def _first_author(e: Mapping[str, Any]) -> str | None:
    """The entry's first author, as fastfeedparser gives it: of several (<dc:creator>s,
    Atom <author>s) feedparser's ``author`` is the last one."""
    authors = e.get("authors") or []
    first = authors[0] if len(authors) > 1 and isinstance(authors[0], Mapping) else {}
    return _str_or_none(first.get("name")) or _str_or_none(e.get("author"))


# --------------------------------------------------------------------------- JSON Feed


def _parse_json_feed(body: bytes, url: str) -> _Doc:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"{url} is not a feed: invalid JSON ({exc})") from exc
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str) or "jsonfeed.org/version/1" not in version:
        raise ParseError(f"{url} is not a feed: JSON that is not a JSON Feed")
    items = data.get("items")
    if not isinstance(items, list):
        raise ParseError(f"{url} is not a feed: JSON Feed without an items list")
    _refuse_many_entries(len(items), url)
    skipped = sum(1 for i in items if not isinstance(i, dict))
    return _Doc(
        title=_str_or_none(data.get("title")),
        link=_str_or_none(data.get("home_page_url")),
        language=_str_or_none(data.get("language")),
        items=[_item_from_json(i) for i in items if isinstance(i, dict)],
        warning=f"{skipped} JSON Feed items are not objects" if skipped else None,
    )


def _item_from_json(i: Mapping[str, Any]) -> _Item:
    raw_id = i.get("id")
    guid = str(raw_id).strip() if isinstance(raw_id, str | int) and str(raw_id).strip() else None
    html_body = i.get("content_html")
    authors: list[Any] = i["authors"] if isinstance(i.get("authors"), list) else [i.get("author")]
    names = [a["name"] for a in authors if isinstance(a, dict) and _str_or_none(a.get("name"))]
    return _Item(
        guid=guid,
        link=_str_or_none(i.get("url")) or _str_or_none(i.get("external_url")),
        title=_str_or_none(i.get("title")) or "",
        summary=_str_or_none(i.get("summary")) or "",
        content=(_str_or_none(html_body) or _str_or_none(i.get("content_text")) or ""),
        published=_parse_iso(i.get("date_published")) or _parse_iso(i.get("date_modified")),
        language=_str_or_none(i.get("language")),
        author=", ".join(str(n) for n in names) or None,
        summary_is_html=False,
        content_is_html=bool(_str_or_none(html_body)),
    )


# --------------------------------------------------------------------------- cleaning


def _build(
    doc: _Doc,
    base: str,
    now: datetime,
    source: str | None,
    known: Callable[[list[int]], Collection[int]] | None = None,
) -> ParsedFeed:
    feed_title = shorten(_clean_title(doc.title or ""), MAX_TITLE) or None
    name = source or feed_title
    feed_language = _iso639(doc.language)
    for item in doc.items:
        if item.language is None:
            item.language = feed_language
    hashes = [_raw_hash(item, base) for item in doc.items]
    stored = known(hashes) if known is not None and hashes else ()
    if stored:  # an item whose id repeats is never skipped: which one is latest decides
        ids = [(item.guid or "").strip() or (item.link or "").strip() for item in doc.items]
        counts = Counter(ids)
        repeated = {h for i, h in zip(ids, hashes, strict=True) if counts[i] > 1}
        stored = set(stored) - repeated
    by_key: dict[str, Entry] = {}
    # (canonical link, text) → the key of the entry that has them: the same link and text
    # under another id is that entry again (the BBC lists a story twice, as "...#0" and
    # "...#3"; across polls `StoryStore.known_by_link` says the same)
    texts: dict[tuple[str, str, str], str] = {}
    duplicates = repeats = unchanged = 0
    for item, raw in zip(doc.items, hashes, strict=True):
        if raw in stored:
            unchanged += 1
            continue
        entry = _make_entry(item, base=base, now=now, source=name, raw_hash=raw)
        if entry.canonical_url:
            same = link_and_text(entry.canonical_url, entry.url, entry.content_hash)
            first = texts.setdefault(same, entry.key)
            if first != entry.key:
                repeats += 1
                continue
        earlier = by_key.get(entry.key)
        if earlier is not None:
            duplicates += 1
            if entry.published <= earlier.published:
                continue
        by_key[entry.key] = entry
    warnings = [doc.warning] if doc.warning else []
    if duplicates:
        warnings.append(f"{duplicates} entries repeat the id of another; kept the latest")
    if repeats:
        warnings.append(f"{repeats} entries repeat the link and text of another; kept the first")
    return ParsedFeed(
        title=feed_title,
        link=urljoin(base, safe_str(doc.link).strip()) if doc.link else None,
        entries=tuple(by_key.values()),
        warning="; ".join(warnings) or None,
        unchanged=unchanged,
    )


def _raw_hash(item: _Item, base: str) -> int:
    """A signed 64-bit digest of an item as the parser gave it (before any cleaning), and
    of the base its links resolve against: equal digests mean the same cleaned entry."""
    fields: tuple[str, ...] = (
        base, item.guid or "", item.link or "", item.title, item.summary, item.content,
        str(item.published), item.language or "", item.author or "",
        f"{int(item.summary_is_html)}{int(item.content_is_html)}",
    )  # fmt: skip
    if item.outlet:  # (only then: every other item's digest stays what it was)
        fields += (item.outlet,)
    data = "\x1f".join(fields).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=8, person=b"raw-item").digest()
    return int.from_bytes(digest, "little", signed=True)


def _make_entry(
    item: _Item, *, base: str | None, now: datetime, source: str | None, raw_hash: int | None = None
) -> Entry:
    link = safe_str(item.link).strip()
    url = urljoin(base, link) if base and link and not link.startswith(_ABSOLUTE) else link
    article = _unwrapped(url)  # the article a news search's click counter leads to
    canonical = canonical_url(article) if article else ""
    title = shorten(_clean_title(item.title), MAX_TITLE)
    outlet = clean_line(item.outlet)
    if outlet:  # an aggregator's item: the outlet is its source, and its title's suffix
        source = outlet
        title = _without_outlet(title, outlet)
    summary = _without_trailers(_to_text(item.summary, item.summary_is_html), title)
    if outlet and summary.partition("\n\n")[0] in (title, f"{title} {outlet}"):
        # Google News's description is no text: a link to this headline, the outlet's
        # name, perhaps other outlets' headlines on the same event.
        summary = ""
    same_raw = item.content == item.summary and item.content_is_html == item.summary_is_html
    if same_raw:
        content = summary
    else:
        content = _without_trailers(_to_text(item.content, item.content_is_html), title)
    if content and (not summary or _is_lead_of(summary, content)):
        summary = _lead(content)
    if content == summary:
        content = ""  # no body beyond the summary
    guid = safe_str(item.guid).strip() or None
    if guid:
        key = identity_url(guid)
    else:
        key = with_fragment(canonical, article) or content_hash(title, summary)
    published, dated = _published(item.published, now)
    language = _iso639(item.language) or detect_language(f"{title}\n{summary or content[:500]}")
    return Entry(
        key=key,
        url=url,
        canonical_url=canonical,
        title=title,
        summary=summary,
        content=content,
        published=published,
        content_hash=content_hash(title, summary, content),
        guid=guid,
        source=shorten(clean_line(source), MAX_SOURCE) or None,
        language=language,
        author=_author(item.author),
        dated=dated,
        raw_hash=raw_hash,
    )


# Bing News links each item through its click counter, whose query changes at every fetch
# ("...apiclick.aspx?ref=FexRss&tid=<one per answer>&url=<the article>&c=..."): the entry's
# key and canonical link are the article's (the counter's were new at every poll); its
# ``url`` stays the link as published (DESIGN.md's export contract).
_CLICK_COUNTER = "bing.com/news/apiclick.aspx"


def _unwrapped(link: str) -> str:
    """The article a news search's click counter leads to, else ``link`` itself."""
    if _CLICK_COUNTER not in link:
        return link
    try:
        parts = urlsplit(link)
    except ValueError:
        return link
    host = (parts.hostname or "").removeprefix("www.")
    if host != "bing.com" or parts.path.lower() != "/news/apiclick.aspx":
        return link
    target = next((v for k, v in parse_qsl(parts.query) if k.lower() == "url"), "").strip()
    return target if target[:8].lower().startswith(_ABSOLUTE) else link


# Inline and common block tags: a title holding one of these is HTML; otherwise a "<...>"
# in it is literal text (an RSS title like "lifts <ban> on" must keep its words).
_TITLE_MARKUP = re.compile(
    r"</?(?:a|abbr|b|big|br|cite|code|del|div|em|font|i|img|ins|mark|p|q|s|script|small"
    r"|span|strike|strong|style|sub|sup|u)\b[^>]*>",
    re.I,
)


def _without_outlet(title: str, outlet: str) -> str:
    """An aggregator's title without the outlet it appends: "Port reopens - Reuters"."""
    for dash in (" - ", " | ", " \u2013 ", " \u2014 "):
        suffix = f"{dash}{outlet}"
        if title.endswith(suffix) and len(title) > len(suffix):
            return title[: -len(suffix)].rstrip()
    return title


# RSS 2.0's <author> is an address, with the name after it in parentheses by custom.
_ADDRESS_AND_NAME = re.compile(r"[^\s@()]+@[^\s@()]+\s*\(([^()]+)\)")


def _author(raw: str | None) -> str | None:
    """The author's name: "desk@dawn.com (Naveed Siddiqui)" is Naveed Siddiqui; entities
    are read (feedparser leaves them in this field: "Ali &amp; Sara")."""
    author = clean_line(raw)
    if "&" in author:
        author = clean_line(html.unescape(author))
    if "@" in author:
        named = _ADDRESS_AND_NAME.fullmatch(author)
        author = named.group(1).strip() if named else author
    return shorten(author, MAX_AUTHOR) or None


def _clean_title(raw: str) -> str:
    if not raw:
        return ""
    if _TITLE_MARKUP.search(raw):
        text = html_to_text(raw)
    else:
        text = html.unescape(raw) if "&" in raw else raw
    return clean_line(text)


def _to_text(raw: str, is_html: bool) -> str:
    if not raw:
        return ""
    if is_html:
        return html_to_text(raw)
    # Plain text keeps "<" literally; html_to_text's plain path only unescapes entities,
    # which plain text has none of, so use it with "<" shielded.
    return html_to_text(raw.replace("&", "&amp;").replace("<", "&lt;"))


# What a CMS appends to every item, as its last paragraphs: WordPress's (Yoast's) "The post
# <title> appeared first on <site>." and a theme's "Read More..." or "Continue reading
# <title>" link; The Guardian ends every description with "Continue reading...". Shown as
# an alert's summary, and read as the story's words. (Not "Read more: <another article>",
# a link to related coverage; and the footer only with the item's own title in it: "The
# post, which appeared first on X, ..." is news.)
_READ_ON = re.compile(r"Continue reading\b.{0,300}|Read [Mm]ore(?:\s*(?:\.\.\.|…|»|→))?", re.S)


def _without_trailers(text: str, title: str) -> str:
    footer = f"The post {title} appeared first on " if title else "\n"
    for _ in range(3):  # (a footer after a "Read More..." after a "Continue reading")
        cut = text.rfind("\n\n")
        if cut <= 0 or not text.startswith(("The post ", "Continue reading", "Read "), cut + 2):
            break
        if not text.startswith(footer, cut + 2) and _READ_ON.fullmatch(text, cut + 2) is None:
            break
        text = text[:cut]
    return text


def _is_lead_of(summary: str, content: str) -> bool:
    """Whether the summary is just the start of the content (perhaps cut mid-word)."""
    words = summary.split()
    if len(words) > 3:
        words.pop()  # a synthesised summary may end in half a word
    start = " ".join(content[: 2 * len(summary) + 64].split())
    return start.startswith(" ".join(words))


def _lead(content: str) -> str:
    first = content.split("\n\n", 1)[0]
    if len(first) <= _LEAD_CHARS:
        return first
    cut = first[:_LEAD_CHARS].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def _published(stamp: datetime | None, now: datetime) -> tuple[datetime, bool]:
    if stamp is None:
        return now, False
    stamp = _utc(stamp)
    if stamp > now + MAX_FUTURE_SKEW or stamp < EARLIEST_PUBLISHED:
        return now, False
    return stamp, True


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _parse_iso(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        return _utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        return None


def _iso639(tag: str | None) -> str | None:
    """The primary subtag of a language tag if it is a two-letter code: "en-GB" → "en"."""
    if not tag:
        return None
    primary = re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()
    return primary if len(primary) == 2 and primary.isascii() and primary.isalpha() else None


def _str_or_none(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None
