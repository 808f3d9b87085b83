"""Tests for monitor.parse: fixture feeds against golden files, error cases, entry rules.

Golden files live in tests/golden/parse/; regenerate them with ``UPDATE_GOLDEN=1 pytest
tests/test_parse.py`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import feedparser
import pytest

from monitor import parse
from monitor.errors import ParseError
from monitor.models import Entry, ParsedFeed
from monitor.parse import entry_from_item, parse_feed

FEEDS = Path(__file__).parent / "data" / "feeds"
GOLDEN = Path(__file__).parent / "golden" / "parse"
NOW = datetime(2025, 7, 10, 12, 0, tzinfo=UTC)
XML = {"content-type": "application/rss+xml; charset=utf-8"}

# fixture file → (response headers, feed URL)
CASES: dict[str, tuple[dict[str, str], str]] = {
    "rss091.xml": ({"Content-Type": "text/xml"}, "http://kabulwire.example.org/rss.xml"),
    "rss10.rdf": ({"content-type": "application/rdf+xml"}, "https://rdf.example.net/feed.rdf"),
    "rss20.xml": (XML, "https://steppe.example.com/rss.xml"),
    "atom10.xml": ({"content-type": "application/atom+xml"}, "https://atom.example.fr/feed.atom"),
    "jsonfeed11.json": ({"content-type": "application/feed+json"}, "https://json.example.net/f"),
    "jsonfeed10.json": ({"content-type": "application/json"}, "https://json10.example.net/f"),
    "malformed.xml": (XML, "https://sloppy.example.org/rss"),
    "bad_encoding.xml": (XML, "https://cafe.example.org/rss"),
    "cp1251.xml": (
        {"Content-Type": "application/rss+xml; charset=windows-1251"},
        "https://vestnik.example.ru/rss",
    ),
    "relative_links.xml": (
        {"Content-Location": "https://rel.example.org/feeds/main.xml"},
        "https://rel.example.org/rss",
    ),
    "dates.xml": (XML, "https://dates.example.org/rss"),
    "dup_guids.xml": (XML, "https://dups.example.org/rss"),
    "scripts.xml": (XML, "https://scripts.example.org/rss"),
}


def _parse_fixture(name: str) -> ParsedFeed:
    headers, url = CASES[name]
    return parse_feed((FEEDS / name).read_bytes(), headers, url, NOW)


def _dump(feed: ParsedFeed) -> dict[str, Any]:
    def entry(e: Entry) -> dict[str, Any]:
        row = dataclasses.asdict(e)
        row["published"] = e.published.isoformat()
        del row["raw_hash"]  # a digest of the input, tested on its own
        return row

    return {
        "title": feed.title,
        "link": feed.link,
        "warning": feed.warning,
        "entries": [entry(e) for e in feed.entries],
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_matches_golden(name: str) -> None:
    got = _dump(_parse_fixture(name))
    golden = GOLDEN / (name.rsplit(".", 1)[0] + ".json")
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}; run with UPDATE_GOLDEN=1"
    assert got == json.loads(golden.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- not a feed


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"  \r\n ",
        b"\xef\xbb\xbf",
        (FEEDS / "html_page.html").read_bytes(),
        b"<html><body><p>hi</p></body></html>",
        b'{"hello": "world"}',
        b'{"version": "https://jsonfeed.org/version/1.1", "items": "nope"}',
        b"[1, 2, 3]",
        b"{not json",
        b"<?xml version='1.0'?><note><to>you</to></note>",
        b"just some words, no markup",
        bytes(random.Random(7).randrange(256) for _ in range(3000)),
    ],
)
def test_not_a_feed_raises(body: bytes) -> None:
    with pytest.raises(ParseError, match="is not a feed"):
        parse_feed(body, XML, "https://x.example/feed", NOW)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"<!-- generated --> \n<html lang='en'><body>hi</body></html>", "an HTML page"),
        (b"<?xml version='1.0'?><note><to>you</to></note>", "an XML document whose root is <note>"),
        (
            b'<!DOCTYPE html><html><head><link rel="stylesheet" href="/s.css"><link '
            b'rel="alternate" type="application/rss+xml" title="News" href="/feed/"><link '
            b"rel=alternate type=application/atom+xml href='https://y.example/a?x=1&amp;y=2'>"
            b"</head><body>hi</body></html>",
            "an HTML page, which names feeds: https://x.example/feed/, "
            "https://y.example/a\\?x=1&y=2",
        ),
        (
            b"<!-- home --><html><head><link rel='alternate' type='application/feed+json' "
            b"href='feed.json'><link rel='alternate' hreflang='fr' href='/fr/'></head></html>",
            "an HTML page, which names a feed: https://x.example/feed.json",
        ),
        (  # WordPress: its REST API's page is "application/json" too, and no feed
            b'<!DOCTYPE html><html><head><link rel="alternate" type="application/rss+xml" '
            b'href="/feed/"><link rel="alternate" type="application/rss+xml" '
            b'href="/comments/feed/"><link rel="alternate" title="JSON" type="application/json" '
            b'href="/wp-json/wp/v2/pages/2"></head><body>hi</body></html>',
            "an HTML page, which names feeds: https://x.example/feed/, "
            "https://x.example/comments/feed/$",
        ),
        (  # JSON Feed 1.0 announced itself as "application/json"
            b"<html><head><link rel='alternate' type='application/json' href='/feed.json'>"
            b"</head></html>",
            "an HTML page, which names a feed: https://x.example/feed.json$",
        ),
    ],
)
def test_not_a_feed_says_what_it_is(body: bytes, said: str) -> None:
    with pytest.raises(ParseError, match=f"is not a feed: {said}"):
        parse_feed(body, XML, "https://x.example/feed", NOW)


def test_parser_exception_becomes_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(feedparser, "parse", boom)
    body = (FEEDS / "malformed.xml").read_bytes()  # malformed, so it goes to feedparser
    with pytest.raises(ParseError, match="parser exploded") as info:
        parse_feed(body, XML, "https://sloppy.example.org/rss", NOW)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_body_naming_a_local_file_is_not_read(tmp_path: Path) -> None:
    # feedparser.parse(b"/some/path") would open that file; we pass a stream instead.
    path = tmp_path / "feed.xml"
    path.write_bytes((FEEDS / "rss20.xml").read_bytes())
    with pytest.raises(ParseError):
        parse_feed(str(path).encode(), XML, "https://x.example/feed", NOW)


def test_body_that_is_a_url_is_not_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import fastfeedparser.main

    def no_fetch(url: str) -> bytes:
        raise AssertionError(f"tried to fetch {url}")

    monkeypatch.setattr(fastfeedparser.main, "_fetch_url_content", no_fetch)
    with pytest.raises(ParseError):
        parse_feed(b"https://example.com/feed.xml", XML, "https://x.example/feed", NOW)


# --------------------------------------------------------------------------- recoverable


def test_bozo_feed_keeps_entries_with_warning() -> None:
    feed = _parse_fixture("malformed.xml")
    assert feed.warning and "undefined entity" in feed.warning
    assert [e.key for e in feed.entries] == ["sloppy-1", "sloppy-2"]
    assert feed.entries[0].title == "Undefined entity in title"


def test_declared_utf8_but_latin1_bytes() -> None:
    feed = _parse_fixture("bad_encoding.xml")
    assert feed.warning and "encoding" in feed.warning.lower()
    assert feed.entries[0].title == "Résumé of the week"


def test_one_stray_byte_in_utf8_is_replaced_not_the_whole_feed_read_as_latin() -> None:
    title = "Верховный суд приостановил запрет"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Вестник'
        f"</title><item><guid>r1</guid><title>{title}</title><link>https://r.example/1</link>"
        "<description>Суд \udcff рассмотрел дело.</description></item></channel></rss>"
    ).encode("utf-8", "surrogateescape")  # (\udcff: the byte 0xFF, not UTF-8)
    feed = parse_feed(body, {}, "https://r.example/feed", NOW)
    assert feed.title == "Вестник" and feed.entries[0].title == title
    assert feed.entries[0].summary == "Суд \ufffd рассмотрел дело."
    assert feed.warning and "1 byte(s) that are not UTF-8" in feed.warning


def test_charset_from_http_header() -> None:
    feed = _parse_fixture("cp1251.xml")
    assert feed.title == "Московский вестник"
    assert feed.entries[0].title == "Верховный суд приостановил запрет «Талибана»"
    assert feed.entries[0].language == "ru"


def test_wrong_http_charset_on_valid_utf8_document() -> None:
    body = (FEEDS / "rss20.xml").read_bytes()
    feed = parse_feed(body, {"content-type": "text/xml; charset=iso-8859-1"}, "https://s/", NOW)
    assert feed.warning and "charset conflict" in feed.warning
    assert feed.entries[0].title.startswith("Russia’s Supreme Court")


# --------------------------------------------------------------------------- entry rules


def test_relative_links_resolved_against_content_location_or_url() -> None:
    feed = _parse_fixture("relative_links.xml")
    assert [e.url for e in feed.entries] == [
        "https://rel.example.org/news/2025/one.html",
        "https://rel.example.org/feeds/two.html?b=2&a=1&utm_campaign=x",
        "https://other.example.net/three",
    ]
    assert feed.entries[1].canonical_url == "https://rel.example.org/feeds/two.html?a=1&b=2"
    body = (FEEDS / "relative_links.xml").read_bytes()
    plain = parse_feed(body, {}, "https://rel.example.org/rss/index.xml", NOW)
    assert plain.entries[1].url.startswith("https://rel.example.org/rss/two.html")


def test_dates_missing_future_and_unparseable() -> None:
    by_key = {e.key: e for e in _parse_fixture("dates.xml").entries}
    assert by_key["d-none"].published == NOW and not by_key["d-none"].dated
    assert by_key["d-future"].published == NOW and not by_key["d-future"].dated
    assert by_key["d-soon"].published == NOW + timedelta(hours=3) and by_key["d-soon"].dated
    assert by_key["d-garbage"].published == NOW and not by_key["d-garbage"].dated
    assert all(e.published.tzinfo is UTC for e in by_key.values())


def test_posts_told_apart_by_a_fragment_are_entries_of_their_own() -> None:
    """A live page's posts: one address, a fragment each, in the guid or only in the link.
    The fragment was dropped from the key: every post but one was lost as a repeat."""
    live = "https://g.example/world/live/port"
    guid_posts = _rss([(f"{live}#block-{n}", f"{live}#block-{n}", "") for n in (1, 2)])
    feed = parse_feed(guid_posts, XML, "https://g.example/rss", NOW)
    assert [e.key for e in feed.entries] == [f"{live}#block-1", f"{live}#block-2"]
    assert {e.canonical_url for e in feed.entries} == {live}  # one page, for duplicates
    assert feed.warning is None
    link_posts = guid_posts.replace(b"<guid>", b"<x>").replace(b"</guid>", b"</x>")
    feed = parse_feed(link_posts, XML, "https://g.example/rss", NOW)
    assert [e.key for e in feed.entries] == [f"{live}#block-1", f"{live}#block-2"]


def test_one_story_listed_twice_under_ids_that_differ_by_a_fragment_is_one_entry() -> None:
    """The BBC lists a story twice, its guid ending "#0" and "#3", with one link and one
    text: once keys kept fragments (a live page's posts), both were stored."""
    story = "https://bbc.example/news/articles/c0x"
    items = [
        (f"{story}#0", story, "Port reopens"),
        (f"{story}#3", story, "Port reopens"),
        (f"{story}#4", story, "Port closes again"),  # another text: another entry
    ]
    body = (
        '<rss version="2.0"><channel><title>BBC</title>'
        + "".join(
            f"<item><guid>{guid}</guid><link>{link}</link><title>{title}</title>"
            "<description>Ships are back.</description></item>"
            for guid, link, title in items
        )
        + "</channel></rss>"
    ).encode()
    feed = parse_feed(body, XML, "https://bbc.example/rss", NOW)
    assert [e.key for e in feed.entries] == [f"{story}#0", f"{story}#4"]
    assert feed.warning == "1 entries repeat the link and text of another; kept the first"
    # a live page's posts link their own fragments: saying the same, they are two posts
    live = body.replace(f"<link>{story}</link>".encode(), b"<link>https://bbc.example/live</link>")
    live = live.replace(b"<guid>https://bbc.example/news/articles/c0x#", b"<guid>post-")
    live = live.replace(
        b"<link>https://bbc.example/live</link>", b"<link>https://bbc.example/live#p</link>", 1
    )
    posts = parse_feed(live, XML, "https://bbc.example/rss", NOW).entries
    assert [(e.key, e.url) for e in posts] == [
        ("post-0", "https://bbc.example/live#p"),
        ("post-3", "https://bbc.example/live"),
        ("post-4", "https://bbc.example/live"),
    ]


def test_an_aggregators_item_names_its_outlet_as_source_and_not_in_its_title() -> None:
    """A news-search feed (Google News) gives every item the outlet's <source> and appends
    " - Outlet" to its title: the story's source was the search feed's name, and the
    development's label ended in "- Reuters"."""
    rss = (
        b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Search'
        b"</title><link>https://news.example/search</link><item><title>Port reopens - "
        b"Harbour Times</title><link>https://news.example/articles/CBMi1?oc=5</link>"
        b'<guid isPermaLink="false">CBMi1</guid><description>Port reopens</description>'
        b'<source url="https://harbour.example">Harbour Times</source></item><item><title>'
        b"Strike ends | Coast Daily</title><link>https://news.example/articles/CBMi2</link>"
        b'<guid isPermaLink="false">CBMi2</guid><source url="https://coast.example">Coast Daily'
        b"</source></item><item><title>No outlet named - Anyone</title><link>"
        b"https://news.example/articles/CBMi3</link></item></channel></rss>"
    )
    feed = parse_feed(rss, XML, "https://news.example/rss?q=port", NOW, source="Port search")
    assert [(e.title, e.source) for e in feed.entries] == [
        ("Port reopens", "Harbour Times"),
        ("Strike ends", "Coast Daily"),
        ("No outlet named - Anyone", "Port search"),
    ]
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>Planet</title><entry><id>p1</id>'
        b'<title>Ferry strike - Wire Service</title><link href="https://e.org/p1"/>'
        b"<updated>2025-07-01T00:00:00Z</updated><source><id>w</id><title>Wire Service</title>"
        b"</source></entry></feed>"
    )
    (entry,) = parse_feed(atom, XML, "https://e.org/atom", NOW, source="Planet").entries
    assert (entry.title, entry.source) == ("Ferry strike", "Wire Service")


def test_html_source_elements_in_a_body_keep_a_feed_on_the_fast_path() -> None:
    body = _rss([("s1", "https://e.org/1", "Mon, 07 Jul 2025 10:00:00 GMT")]).replace(
        b"</item>",
        b"<content:encoded><![CDATA[<picture><source srcset='a.webp' type='image/webp'>"
        b"<img src='a.jpg'></picture><p>Text.</p>]]></content:encoded></item>",
    )
    body = body.replace(b"<rss ", b'<rss xmlns:content="http://purl.org/rss/1.0/modules/content/" ')
    assert parse._parse_fast(body, XML, "https://e.org/rss") is not None
    (entry,) = parse_feed(body, XML, "https://e.org/rss", NOW, source="Mine").entries
    assert entry.source == "Mine"


def test_placeholder_dates_of_the_distant_past_are_no_dates() -> None:
    """1970-01-01 (Unix time 0), 0001-01-01 and 1900-01-01 are what CMSs write for "no
    date": such an entry was dated decades before its story, first in every timeline."""
    stamps = [
        ("p-epoch", "https://e.org/1", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ("p-1900", "https://e.org/2", "Mon, 01 Jan 1900 00:00:00 GMT"),
        ("p-1995", "https://e.org/3", "Sun, 01 Jan 1995 12:00:00 GMT"),
    ]
    atom_zero = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><id>p-zero</id>'
        b'<title>Zero</title><link href="https://e.org/4"/><updated>0001-01-01T00:00:00Z'
        b"</updated><published>0001-01-01T00:00:00Z</published></entry></feed>"
    )
    entries = [
        *parse_feed(_rss(stamps), XML, "https://e.org/rss", NOW).entries,
        *parse_feed(atom_zero, XML, "https://e.org/atom", NOW).entries,
    ]
    assert [(e.key, e.published, e.dated) for e in entries] == [
        ("p-epoch", NOW, False),
        ("p-1900", NOW, False),
        ("p-1995", datetime(1995, 1, 1, 12, tzinfo=UTC), True),  # old, but a date
        ("p-zero", NOW, False),
    ]


def test_relative_date_phrases_do_not_read_the_clock() -> None:
    body = _rss([("r1", "https://e.org/1", "2 hours ago"), ("r2", "https://e.org/2", "yesterday")])
    feed = parse_feed(body, XML, "https://e.org/rss", NOW)
    assert [(e.published, e.dated) for e in feed.entries] == [(NOW, False), (NOW, False)]


def test_duplicate_guids_keep_latest() -> None:
    feed = _parse_fixture("dup_guids.xml")
    assert [e.key for e in feed.entries] == ["same-guid", "other-guid"]
    assert feed.entries[0].title == "Story, updated version"
    assert feed.warning and "1 entries repeat" in feed.warning


def test_edited_entry_keeps_key_changes_hash() -> None:
    before = _rss([("g-1", "https://e.org/1", "Mon, 07 Jul 2025 10:00:00 GMT")], text="First.")
    after = _rss([("g-1", "https://e.org/1", "Mon, 07 Jul 2025 10:00:00 GMT")], text="Edited.")
    (a,) = parse_feed(before, XML, "https://e.org/rss", NOW).entries
    (b,) = parse_feed(after, XML, "https://e.org/rss", NOW).entries
    assert a.key == b.key == "g-1"
    assert a.content_hash != b.content_hash


def record_cleaning(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The guids of the items `parse` cleans from now on, in order."""
    cleaned: list[str | None] = []
    real = parse._make_entry

    def spy(item: Any, **kwargs: Any) -> Entry:
        cleaned.append(item.guid)
        return real(item, **kwargs)

    monkeypatch.setattr(parse, "_make_entry", spy)
    return cleaned


def test_known_raw_items_are_skipped_before_cleaning(monkeypatch: pytest.MonkeyPatch) -> None:
    dates = "Mon, 07 Jul 2025 10:00:00 GMT"
    body = _rss([("g-1", "https://e.org/1", dates), ("g-2", "https://e.org/2", dates)])
    first = parse_feed(body, XML, "https://e.org/rss", NOW)
    hashes = [e.raw_hash for e in first.entries]
    assert all(isinstance(h, int) for h in hashes) and len(set(hashes)) == 2
    # the same bytes give the same digests; another base URL (links resolve elsewhere) not
    again = parse_feed(body, XML, "https://e.org/rss", NOW)
    assert [e.raw_hash for e in again.entries] == hashes
    moved = parse_feed(body, XML, "https://mirror.example/rss", NOW)
    assert not set(hashes) & {e.raw_hash for e in moved.entries}

    asked: list[list[int]] = []
    cleaned = record_cleaning(monkeypatch)
    known = {hashes[0]}
    feed = parse_feed(body, XML, "https://e.org/rss", NOW, known=lambda h: asked.append(h) or known)
    assert asked == [hashes]
    assert cleaned == ["g-2"]  # g-1 was never cleaned
    assert [e.key for e in feed.entries] == ["g-2"] and feed.unchanged == 1
    # an edit changes the raw digest, so an edited entry is never skipped
    edited = _rss([("g-1", "https://e.org/1", dates)], text="Edited.")
    (entry,) = parse_feed(edited, XML, "https://e.org/rss", NOW, known=lambda h: known).entries
    assert entry.key == "g-1" and entry.raw_hash not in known


def test_items_repeating_an_id_are_never_skipped_by_raw_hash() -> None:
    older = "Mon, 07 Jul 2025 09:00:00 GMT"
    newer = "Mon, 07 Jul 2025 10:00:00 GMT"
    body = _rss([("same", "https://e.org/1", older), ("same", "https://e.org/1", newer)])
    (latest,) = parse_feed(body, XML, "https://e.org/rss", NOW).entries
    # the stored version is the latest; the older twin must not stand in for it next time
    feed = parse_feed(body, XML, "https://e.org/rss", NOW, known=lambda h: {latest.raw_hash})
    assert [e.raw_hash for e in feed.entries] == [latest.raw_hash] and feed.unchanged == 0


def test_key_falls_back_to_canonical_link_then_hash() -> None:
    entries = _parse_fixture("rss20.xml").entries
    assert entries[1].key == "https://steppe.example.com/world/2025/04/18/kabul-reacts"
    assert entries[1].guid is None or entries[1].guid == entries[1].key
    assert len(entries[2].key) == 32 and entries[2].url == "" and entries[2].guid is None


def test_html_is_cleaned_and_scripts_dropped() -> None:
    for name in ("rss20.xml", "scripts.xml"):
        for e in _parse_fixture(name).entries:
            for text in (e.title, e.summary, e.content):
                assert "<script" not in text.lower()
                assert "alert(" not in text and "document.write" not in text
    first = _parse_fixture("rss20.xml").entries[0]
    assert (
        first.summary
        == "The court granted the prosecutor’s request.\n\nThe ruling takes effect immediately."
    )
    assert first.title == "Russia’s Supreme Court lifts <ban> on the Taliban"  # literal text kept
    assert first.url.endswith("#comments")  # as published
    assert first.canonical_url == "https://steppe.example.com/World/2025/04/17/Taliban-Ban?a=1&b=2"


def test_source_and_language() -> None:
    feed = _parse_fixture("rss10.rdf")
    assert {e.source for e in feed.entries} == {"RDF Monitor"}
    assert {e.language for e in feed.entries} == {"de"}
    body = (FEEDS / "rss10.rdf").read_bytes()
    named = parse_feed(body, XML, "https://rdf.example.net/feed.rdf", NOW, source="My Name")
    assert {e.source for e in named.entries} == {"My Name"}
    atom = _parse_fixture("atom10.xml").entries
    assert [e.language for e in atom] == ["fr", "en"]  # entry xml:lang beats the feed's


def test_json_feed_naive_dates_are_utc() -> None:
    body = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "N",
            "items": [
                {"id": "1", "url": "https://n.org/1", "date_published": "2025-07-01T10:00:00"}
            ],
        }
    ).encode()
    (e,) = parse_feed(body, {}, "https://n.org/feed.json", NOW).entries
    assert e.published == datetime(2025, 7, 1, 10, tzinfo=UTC) and e.dated


def test_lone_surrogates_and_control_characters_never_reach_the_entry() -> None:
    """JSON may escape a lone surrogate (which SQLite cannot store) in any field, and a feed
    may carry NUL or a terminal's ESC: every field comes out encodable and printable."""
    body = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "Feed \ud800",
            "items": [
                {
                    "id": "id-\udfff",
                    "url": "https://n.org/\ud800",
                    "title": "Bad \ud800 title \x1b[31mred\x00",
                    "authors": [{"name": "A\u0007 \ud83d writer"}],
                    "content_text": "Text \udc00 here.",
                }
            ],
        }
    ).encode()
    (e,) = parse_feed(body, {}, "https://n.org/feed.json", NOW).entries
    for value in [e.key, e.url, e.canonical_url, e.title, e.summary, e.content, e.guid, e.author,
                  e.source]:  # fmt: skip
        (value or "").encode("utf-8")  # raises on a lone surrogate
        assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value or "")
    assert e.title == "Bad ? title [31mred" and e.author == "A ? writer"


def test_an_absurdly_long_title_or_author_is_cut() -> None:
    body = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "N",
            "items": [{"id": "1", "url": "https://n.org/1", "title": "word " * 200_000,
                       "authors": [{"name": "x" * 5000}], "content_text": "Text."}],
        }
    ).encode()  # fmt: skip
    (e,) = parse_feed(body, {}, "https://n.org/feed.json", NOW).entries
    assert len(e.title) == parse.MAX_TITLE and e.title.endswith("word…")
    assert e.author is not None and len(e.author) == parse.MAX_AUTHOR


def test_an_absurdly_long_outlet_or_feed_title_is_cut_as_a_source() -> None:
    """An entry's source is the outlet an aggregator's item names, else the feed's title
    when the config gives no name: 1 MB of either was every such story's source, in every
    alert, log line and export that names it."""
    long = "Outlet " * 150_000
    rss = (
        f'<rss version="2.0"><channel><title>{long}</title><item><title>T - x</title>'
        f'<link>https://e.org/1</link><source url="https://o.example">{long}</source></item>'
        f"<item><title>U</title><link>https://e.org/2</link></item></channel></rss>"
    ).encode()
    feed = parse_feed(rss, XML, "https://e.org/rss", NOW)
    assert [len(e.source or "") for e in feed.entries] == [300, 300]  # parse.MAX_SOURCE
    assert all((e.source or "").startswith("Outlet Outlet") for e in feed.entries)
    assert feed.title is not None and len(feed.title) == parse.MAX_TITLE


def test_entities_a_document_declares_or_html_names_keep_their_text() -> None:
    declared = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY co "ACME Corp">]><rss version="2.0">'
        b"<channel><title>E</title><item><guid>e1</guid><title>News from &co; today</title>"
        b"<link>http://news.example/e1</link><description>By &co; on boats</description>"
        b"</item></channel></rss>"
    )
    (e,) = parse_feed(declared, {}, "https://n.org/feed.xml", NOW).entries
    assert (e.title, e.summary) == ("News from ACME Corp today", "By ACME Corp on boats")
    netscape = (
        b'<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS '
        b'0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd"><rss version="0.91">'
        b"<channel><title>Old</title><link>http://x/</link><description>d</description><item>"
        b"<title>Caf&eacute; owner &quot;wins&quot; &copy; prize</title>"
        b"<link>http://news.example/091</link><description>d&eacute;j&agrave; vu &bogus;"
        b"</description></item></channel></rss>"
    )
    (e,) = parse_feed(netscape, {}, "https://n.org/feed.xml", NOW).entries
    assert e.title == 'Café owner "wins" © prize' and e.summary.startswith("déjà vu")


# --------------------------------------------------------------------------- outlets' habits


def _bing(tid: str) -> bytes:
    """Bing News's RSS as it answers a search: every link goes through its click counter,
    whose tid (and c) change from one answer to the next; the outlet is <News:Source>."""
    items = "".join(
        f"<item><title>{title}</title><link>https://www.bing.com/news/apiclick.aspx?ref=FexRss"
        f"&amp;aid=&amp;tid={tid}&amp;url={target}&amp;c=1234{tid[:3]}&amp;mkt=en-us</link>"
        f"<description>{text}</description><pubDate>Thu, 17 Apr 2025 10:37:00 GMT</pubDate>"
        f"{outlet}<News:Image>http://www.bing.com/th?id=ON.1&amp;pid=News</News:Image></item>"
        for title, target, text, outlet in [
            ("Moscow lifts ban on Taliban", "https%3a%2f%2fwire.example%2fworld%2fx-1%3fid%3d7",
             "The court ruled on Thursday.", "<News:Source>Wire Daily</News:Source>"),
            ("Kabul welcomes ruling", "http%3a%2f%2fcoast.example%2fk", "Officials said.", ""),
        ]
    )  # fmt: skip
    return (
        '<?xml version="1.0" encoding="utf-8" ?><rss version="2.0" xmlns:News="https://www.'
        'bing.com:443/news/search?q=Taliban&amp;format=RSS"><channel><title>Taliban - Bing News'
        f"</title><link>https://www.bing.com:443/news/search?q=Taliban</link>{items}"
        "</channel></rss>"
    ).encode()


def test_bing_news_items_are_the_articles_they_link_named_by_their_outlet() -> None:
    """The key was the click counter's link, new in every answer: each poll stored and
    judged every item again. And the outlet Bing names was lost."""
    url = "https://www.bing.com/news/search?q=Taliban&format=rss"
    first = parse_feed(_bing("c237eccc50bd"), XML, url, NOW, source="Bing: Taliban").entries
    again = parse_feed(_bing("9a1f0e22d4c8"), XML, url, NOW, source="Bing: Taliban").entries
    assert [e.key for e in first] == [e.key for e in again]
    assert [(e.canonical_url, e.source) for e in first] == [
        ("https://wire.example/world/x-1?id=7", "Wire Daily"),
        ("http://coast.example/k", "Bing: Taliban"),
    ]
    assert first[0].key == "https://wire.example/world/x-1?id=7"
    assert first[0].url.startswith("https://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid=")


def test_what_a_cms_appends_to_every_item_is_not_its_text() -> None:
    """WordPress (Yoast) ends each item with "The post <title> appeared first on <site>.",
    themes add "Read More..." or "Continue reading <title>", The Guardian "Continue
    reading...": they were the end of every summary and body (and of alerts)."""
    wordpress = (
        b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:content="http://purl.'
        b'org/rss/1.0/modules/content/"><channel><title>Kabul Desk</title><item><title>Court '
        b'lifts ban</title><link>https://desk.example/court/</link><guid isPermaLink="false">'
        b"https://desk.example/?p=101</guid><description><![CDATA[<p>The court lifted the ban "
        b'on Thursday, a judge said [&#8230;]</p>\n<p>The post <a href="https://desk.example/c'
        b'ourt/">Court lifts ban</a> appeared first on <a href="https://desk.example">Kabul Des'
        b"k</a>.</p>\n]]></description><content:encoded><![CDATA[<p>The court lifted the ban on"
        b' Thursday, a judge said.</p><p>The ruling takes effect at once.</p><p><a href="https:'
        b'//desk.example/court/" class="more-link">Continue reading<span class="screen-reader-'
        b'text"> "Court lifts ban"</span></a></p><p>The post <a href="https://desk.example/cour'
        b't/">Court lifts ban</a> appeared first on <a href="https://desk.example">Kabul Desk</'
        b"a>.</p>]]></content:encoded></item><item><title>Talks resume</title><link>https://de"
        b"sk.example/talks/</link><description><![CDATA[<p>Talks resumed in Doha.</p><p><a hre"
        b'f="https://desk.example/talks/">Read More...</a></p>]]></description></item><item><t'
        b"itle>Aid</title><link>https://desk.example/aid/</link><description><![CDATA[<p>Aid ar"
        b"rived.</p><p>Read more: Aid to Afghanistan in 2025</p>]]></description></item><item>"
        b"<title>Statement</title><link>https://desk.example/post/</link><description><![CDATA["
        b"<p>A statement was posted.</p><p>The post appeared first on Telegram.</p>]]></descrip"
        b"tion></item></channel></rss>"
    )
    court, talks, aid, post = parse_feed(wordpress, XML, "https://desk.example/feed/", NOW).entries
    assert court.summary == "The court lifted the ban on Thursday, a judge said."  # the lead
    assert court.content == (
        "The court lifted the ban on Thursday, a judge said.\n\nThe ruling takes effect at once."
    )
    assert (talks.summary, talks.content) == ("Talks resumed in Doha.", "")
    assert aid.content == "Aid arrived.\n\nRead more: Aid to Afghanistan in 2025"  # its topic's
    assert post.content == "A statement was posted.\n\nThe post appeared first on Telegram."
    guardian = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>World</title>'
        b"<item><title>Moscow and Kabul</title><link>https://paper.example/world/1</link><descr"
        b"iption>&lt;p&gt;The decision ends a 22-year ban.&lt;/p&gt;&lt;p&gt;Diplomats said more"
        b' would follow.&lt;/p&gt; &lt;a href="https://paper.example/world/1"&gt;Continue readi'
        b"ng...&lt;/a&gt;</description></item></channel></rss>"
    )
    (e,) = parse_feed(guardian, XML, "https://paper.example/world/rss", NOW).entries
    assert e.summary == "The decision ends a 22-year ban."
    assert e.content == "The decision ends a 22-year ban.\n\nDiplomats said more would follow."


def test_a_google_news_description_is_not_the_summary() -> None:
    """Google News's description links the headline and names the outlet (and may list
    other outlets' headlines): the summary was the title again, then "Reuters"."""
    rss = (
        b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Search</tit'
        b"le><item><title>Port reopens - Harbour Times</title><link>https://news.example/articl"
        b'es/CBMi1?oc=5</link><guid isPermaLink="false">CBMi1</guid><description>&lt;a href="h'
        b'ttps://news.example/articles/CBMi1?oc=5" target="_blank"&gt;Port reopens&lt;/a&gt;&am'
        b'p;nbsp;&amp;nbsp;&lt;font color="#6f6f6f"&gt;Harbour Times&lt;/font&gt;</description'
        b'><source url="https://harbour.example">Harbour Times</source></item><item><title>Stri'
        b"ke ends - Coast Daily</title><link>https://news.example/articles/CBMi2?oc=5</link><de"
        b'scription>&lt;ol&gt;&lt;li&gt;&lt;a href="https://news.example/articles/CBMi2?oc=5"&'
        b'gt;Strike ends&lt;/a&gt;&amp;nbsp;&amp;nbsp;&lt;font color="#6f6f6f"&gt;Coast Daily'
        b'&lt;/font&gt;&lt;/li&gt;&lt;li&gt;&lt;a href="https://news.example/articles/CBMi3"&gt'
        b';Dockers return&lt;/a&gt;&amp;nbsp;&amp;nbsp;&lt;font color="#6f6f6f"&gt;Other Pap'
        b'er&lt;/font&gt;&lt;/li&gt;&lt;/ol&gt;</description><source url="https://coast.exampl'
        b'e">Coast Daily</source></item><item><title>Talks go on - Wire</title><link>https://ne'
        b"ws.example/articles/CBMi4</link><description>Negotiators met again on Friday.</descri"
        b'ption><source url="https://wire.example">Wire</source></item></channel></rss>'
    )
    entries = parse_feed(rss, XML, "https://news.example/rss?q=port", NOW).entries
    assert [(e.title, e.summary, e.content) for e in entries] == [
        ("Port reopens", "", ""),
        ("Strike ends", "", ""),
        ("Talks go on", "Negotiators met again on Friday.", ""),  # a text of its own stays
    ]


def test_an_rfc822_offset_with_a_colon_is_an_offset() -> None:
    """fastfeedparser's last RFC 822 reader ignored "+03:00" and took the time for UTC: a
    story published at 12:47 in Moscow was dated three hours after it was."""
    body = _rss([("m1", "https://ru.example/1", "Thu, 17 Apr 2025 12:47:00 +03:00")])
    assert parse._parse_fast(body, XML, "https://ru.example/rss") is not None
    (e,) = parse_feed(body, XML, "https://ru.example/rss", NOW).entries
    assert e.published == datetime(2025, 4, 17, 9, 47, tzinfo=UTC) and e.dated


@pytest.mark.parametrize("malformed", [False, True])
def test_a_zone_named_by_its_abbreviation_is_that_zones_time(malformed: bool) -> None:
    """RFC 822 names only UT, GMT and the US zones; Russian and European outlets write MSK,
    CET or EEST, which feedparser (and, without seconds, fastfeedparser) read as UTC."""
    dates = [
        "Thu, 28 Nov 2024 10:00:00 MSK", "Thu, 28 Nov 2024 10:00 EEST", "28 Nov 2024 10:00 CET",
        "Thu, 28 Nov 2024 10:00:00 IST", "Thu, 28 Nov 2024 10:00:00 EST",
        "Thu, 28 Nov 2024 10:00:00 GMT", "Thu, 28 Nov 2024 10:00:00 +0300",
    ]  # fmt: skip
    body = _rss([(f"z{n}", f"https://ru.example/{n}", date) for n, date in enumerate(dates)])
    if malformed:  # (feedparser's path)
        body = body.replace(b"<channel>", b"<channel><br>")
    assert (parse._parse_fast(body, XML, "https://ru.example/rss") is None) == malformed
    entries = parse_feed(body, XML, "https://ru.example/rss", NOW).entries
    assert [e.published.strftime("%H:%M") for e in entries] == [
        "07:00", "07:00", "09:00", "04:30", "15:00", "10:00", "07:00",
    ]  # fmt: skip


def test_a_feed_language_in_cdata_is_the_feeds_language() -> None:
    """The BBC writes <language><![CDATA[ru]]></language>: the fast path missed it, and a
    headline too short to detect had no language."""
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title><![CDATA['
        b"BBC]]></title><link>https://bbc.example/</link><language><![CDATA[ru]]></language>"
        b"<item><title><![CDATA[\xd0\x92\xd0\xb8\xd0\xb4\xd0\xb5\xd0\xbe]]></title><link>https:"
        b"//bbc.example/1</link></item></channel></rss>"
    )
    (e,) = parse_feed(body, XML, "https://bbc.example/rss.xml", NOW).entries
    assert e.language == "ru"


@pytest.mark.parametrize("malformed", [False, True])
def test_an_authors_name_not_an_address(malformed: bool) -> None:
    """RSS 2.0's <author> is "address (Name)"; feedparser also left entities in it."""
    authors = [
        "desk@news.example (Naveed Ali)", "desk@news.example", "Ali &amp; Sara",
        "news@wire.example (Ali &amp; Sara)",
    ]  # fmt: skip
    items = "".join(
        f"<item><title>T{n}</title><link>https://n.example/{n}</link><author>{author}</author>"
        "</item>"
        for n, author in enumerate(authors)
    )
    flaw = "<br>" if malformed else ""  # (feedparser's path)
    body = f'<rss version="2.0"><channel><title>N</title>{flaw}{items}</channel></rss>'.encode()
    entries = parse_feed(body, XML, "https://n.example/rss", NOW).entries
    assert [e.author for e in entries] == [
        "Naveed Ali", "desk@news.example", "Ali & Sara", "Ali & Sara",
    ]  # fmt: skip


@pytest.mark.parametrize("malformed", [False, True])
def test_of_several_authors_the_first_is_the_entrys(malformed: bool) -> None:
    """feedparser gave the last of several <dc:creator>s or Atom <author>s, fastfeedparser
    the first: a feed's entries changed author when it went from one path to the other."""
    flaw = "<br/><br>" if malformed else ""
    rss = (
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>N'
        f"</title>{flaw}<item><title>T</title><link>https://n.example/1</link><dc:creator>"
        "Anna Ivanova</dc:creator><dc:creator>Boris Petrov</dc:creator></item></channel></rss>"
    )
    atom = (
        f'<feed xmlns="http://www.w3.org/2005/Atom"><title>N</title>{flaw}<entry><title>T'
        '</title><id>n1</id><link href="https://n.example/1"/><author><name>Anna Ivanova</name>'
        "</author><author><name>Boris Petrov</name></author></entry></feed>"
    )
    for body in (rss, atom):
        assert (parse._parse_fast(body.encode(), XML, "https://n.example/f") is None) == malformed
        (e,) = parse_feed(body.encode(), XML, "https://n.example/f", NOW).entries
        assert e.author == "Anna Ivanova"


# --------------------------------------------------------------------------- fast vs reference


def _rss(items: list[tuple[str, str, str]], text: str = "Body text.") -> bytes:
    rows = "".join(
        f"<item><title>Item {guid}</title><link>{escape(link)}</link><guid>{guid}</guid>"
        f"<pubDate>{date}</pubDate><description>{escape(text)}</description></item>"
        for guid, link, date in items
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
        f"<link>https://e.org/</link>{rows}</channel></rss>"
    ).encode()


_WORDS = (
    "government officials said the talks would continue next week despite objections from "
    "several regional powers including Russia China and Pakistan while analysts warned about "
    "the economy sanctions humanitarian aid and the security situation in Kabul"
)


_WORD_LIST = _WORDS.split()


def realistic_feed(n_items: int = 50, paragraphs: int = 4, seed: int = 1) -> bytes:
    """An RSS 2.0 feed like a news site's: ~140 KB for 50 entries with full content."""
    rnd = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rnd.choice(_WORD_LIST) for _ in range(n)).capitalize() + "."

    start = datetime(2025, 7, 1, 12, tzinfo=UTC)
    items = []
    for i in range(n_items):
        desc = f'<p>{sentence(40)} <a href="https://e.org/x?utm_source=rss">more</a></p>'
        body = f'<figure><img src="https://cdn.e.org/{i}.jpg"/><figcaption>{sentence(8)}</figcaption></figure>'
        body += "".join(
            f"<p>{sentence(55)} <b>{rnd.choice(_WORD_LIST)}</b> <a href='/tag/{i}'>tag</a></p>"
            for _ in range(paragraphs)
        )
        items.append(
            f"<item><title>{escape(sentence(9))}</title>"
            f"<link>https://news.example.org/world/{i:05d}-story?utm_source=rss&amp;utm_medium=feed</link>"
            f'<guid isPermaLink="false">urn:example:{seed}:{i}</guid>'
            f"<pubDate>{format_datetime(start - timedelta(minutes=i))}</pubDate>"
            f"<dc:creator>Reporter {i % 7}</dc:creator><category>World</category>"
            f"<description>{escape(desc)}</description>"
            f"<content:encoded><![CDATA[{body}]]></content:encoded></item>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>Example World News</title>'
        "<link>https://news.example.org/world</link><language>en-gb</language>\n"
        + "".join(items)
        + "</channel></rss>\n"
    ).encode()


def test_realistic_feed_takes_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    body = realistic_feed()
    assert 120_000 < len(body) < 160_000

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("feedparser should not be needed for a well-formed feed")

    monkeypatch.setattr(feedparser, "parse", refuse)
    feed = parse_feed(body, XML, "https://news.example.org/world/rss", NOW)
    assert len(feed.entries) == 50 and feed.warning is None
    assert all(e.language == "en" and e.dated and e.content for e in feed.entries)


@pytest.mark.parametrize(
    "name", ["rss20.xml", "rss10.rdf", "dates.xml", "dup_guids.xml", "atom10.xml", "cp1251.xml"]
)
def test_fast_and_reference_paths_agree(name: str) -> None:
    body, (headers, url) = (FEEDS / name).read_bytes(), CASES[name]
    body = body.replace(b' xml:lang="en"', b"")  # entry-level xml:lang sends Atom to feedparser
    lowered = {k.lower(): v for k, v in headers.items()}
    fast = parse._parse_fast(body, lowered, url)
    assert fast is not None, "fixture should take the fast path"
    ref = parse._parse_reference(body, lowered, url)
    a, b = (parse._build(doc, url, NOW, None) for doc in (fast, ref))
    fields = ("key", "url", "canonical_url", "title", "content", "published", "dated", "author")
    assert [[getattr(e, f) for f in fields] for e in a.entries] == [
        [getattr(e, f) for f in fields] for e in b.entries
    ]


def test_an_item_without_a_link_has_the_same_address_on_both_paths() -> None:
    """An item with a guid and no <link>: feedparser made a link of any guid not marked
    isPermaLink="false", even one that is no address ("a-17" became the feed's URL +
    "a-17"), and none of a web address marked "false", which fastfeedparser takes. A feed
    that turns malformed between two polls went from one path to the other."""
    guids = [
        "<guid>https://e.org/a/1</guid>", '<guid isPermaLink="false">https://e.org/a/2</guid>',
        "<guid>a-17</guid>", "<guid>a-18</guid><link>https://e.org/a/18</link>",
    ]  # fmt: skip
    items = "".join(f"<item><title>T{n}</title>{g}</item>" for n, g in enumerate(guids))
    body = f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()
    url = "https://e.org/rss"
    fast = parse._parse_fast(body, XML, url)
    assert fast is not None
    a, b = (
        parse._build(doc, url, NOW, None) for doc in (fast, parse._parse_reference(body, XML, url))
    )
    expected = [
        ("https://e.org/a/1", "https://e.org/a/1"), ("https://e.org/a/2", "https://e.org/a/2"),
        ("", "a-17"), ("https://e.org/a/18", "a-18"),
    ]  # fmt: skip
    assert [(e.url, e.key) for e in a.entries] == expected
    assert [(e.url, e.key) for e in b.entries] == expected


def test_markup_in_cdata_sections_is_not_counted_against_feedparsers_limit() -> None:
    """feedparser reads a CDATA section as one piece of text, whatever tags it holds: an
    aggregator's feed (its items' <source> send it to feedparser) with 4 MB of articles in
    CDATA was refused for 400,000 "tags and attributes" that feedparser never parses. The
    same markup as elements still counts, and so does markup after a CDATA opener that is
    no section (in a processing instruction, "closed" in an attribute)."""
    article = "<p>" + '<a href="https://e.org/x" class="c">word</a> ' * 30 + "</p>"

    def aggregator(body: str, head: str = "", tail: str = "") -> bytes:
        items = "".join(
            f"<item><title>T{n}</title><link>https://e.org/{n}</link>"
            f'<source url="https://o.example">Outlet</source><description>{body}</description>'
            "</item>"
            for n in range(3_000)
        )
        return (
            f'<?xml version="1.0"?>{head}<rss version="2.0"><channel><title>C</title>{items}'
            f"{tail}</channel></rss>"
        ).encode()

    in_cdata = aggregator(f"<![CDATA[{article}]]>")
    assert in_cdata.count(b"<") + in_cdata.count(b"=") > 250_000  # parse.MAX_REFERENCE_MARKUP
    feed = parse_feed(in_cdata, XML, "https://e.org/rss", NOW)
    assert len(feed.entries) == 3_000
    assert feed.entries[0].summary.startswith("word word")
    for refused in (
        aggregator(article),
        aggregator(article, head="<?pi <![CDATA[ ?>", tail='<x a="]]>"/>'),
    ):
        with pytest.raises(ParseError, match="tags and attributes in a document"):
            parse_feed(refused, XML, "https://e.org/rss", NOW)


@pytest.mark.parametrize("malformed", [False, True])
def test_a_tag_may_carry_a_thousand_attributes_not_more(malformed: bool) -> None:
    """The limit is on the tag, whichever parser would read the document: fastfeedparser's
    extractor and feedparser both take quadratic time in one tag's attributes."""
    limit = 1_000  # parse.MAX_ATTRIBUTES

    def document(count: int) -> bytes:
        attributes = " ".join(f'data-{n}="{n}"' for n in range(count))
        items = f"<item {attributes}><title>T</title><link>https://e.org/1</link></item>"
        flaw = "<br>" if malformed else ""  # an unclosed tag: feedparser's
        return f'<rss version="2.0"><channel><title>C</title>{flaw}{items}</channel></rss>'.encode()

    assert len(parse_feed(document(limit), {}, "https://e.org/f", NOW).entries) == 1
    with pytest.raises(ParseError, match=r"https://e.org/f refused: a tag with more than 1,000 "):
        parse_feed(document(limit + 1), {}, "https://e.org/f", NOW)


def test_ten_thousand_entries() -> None:
    body = realistic_feed(n_items=10_000, paragraphs=1, seed=3)
    started = time.perf_counter()
    feed = parse_feed(body, XML, "https://news.example.org/world/rss", NOW)
    elapsed = time.perf_counter() - started
    assert len(feed.entries) == 10_000
    assert len({e.key for e in feed.entries}) == 10_000
    assert elapsed < 30, f"10,000 entries took {elapsed:.1f} s"


# --------------------------------------------------------------------------- replay items


def _stream() -> dict[str, dict[str, Any]]:
    lines = (FEEDS / "stream_dev.jsonl").read_text(encoding="utf-8").splitlines()
    return {item["id"]: item for item in map(json.loads, lines)}


def test_an_archived_item_naming_its_outlet_loses_it_from_the_title_as_a_polled_one() -> None:
    """Replay and polling share every step after parsing: a polled aggregator's item lost
    " - Outlet" from its title, the same item replayed kept it."""
    item = {
        "url": "https://harbour.example/port",
        "title": "Port reopens - Harbour Times",
        "source": "Harbour Times",
        "summary": "Ships are back in the harbour after a week.",
        "published": "2025-07-01T10:00:00Z",
    }
    entry = entry_from_item(item, NOW)
    assert (entry.title, entry.source) == ("Port reopens", "Harbour Times")
    assert entry.summary == "Ships are back in the harbour after a week."
    assert entry_from_item({**item, "source": None}, NOW).title == "Port reopens - Harbour Times"


def test_entry_from_item_dev_stream() -> None:
    items = _stream()
    e = entry_from_item(items["d001"], NOW)
    assert e.url == e.canonical_url == e.key == items["d001"]["url"]
    assert e.published == datetime(2023, 1, 6, 6, 30, tzinfo=UTC) and e.dated
    assert e.source == "Oxus Post" and e.language == "en"
    assert e.title.startswith("Islamic Emirate signs 25-year oil extraction deal")
    assert e.content.count("\n\n") == 3 and e.guid is None

    html = entry_from_item(items["d016"], NOW)
    assert html.summary == (
        "Astana calls it a technical correction. Grain traders & railway planners see an opening."
    )
    assert "utm_source" in html.url and "utm_" not in html.canonical_url
    assert html.key == html.canonical_url

    ru = entry_from_item(items["d043"], NOW, source="fallback")
    assert ru.language == "ru" and ru.source == "Stolichny Obozrevatel"
    assert ru.published == datetime(2024, 10, 4, 16, 30, tzinfo=UTC)


def test_entry_from_item_defaults_and_errors() -> None:
    e = entry_from_item({"url": "https://e.org/a", "title": "Only a title here"}, NOW, source="S")
    assert e.published == NOW and not e.dated and e.source == "S"
    same = entry_from_item({"url": "https://e.org/a", "title": "Only a title here"}, NOW)
    assert same.content_hash == e.content_hash
    edited = entry_from_item({"url": "https://e.org/a", "title": "Only a title, edited"}, NOW)
    assert edited.key == e.key and edited.content_hash != e.content_hash
    naive = entry_from_item({"url": "https://e.org/b", "published": "2025-01-01T08:00:00"}, NOW)
    assert naive.published == datetime(2025, 1, 1, 8, tzinfo=UTC)
    with pytest.raises(ParseError):
        entry_from_item({"id": "x", "grade": 1}, NOW)
