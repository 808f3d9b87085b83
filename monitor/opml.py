"""Feeds to and from OPML, the subscription lists that feed readers import and export.

`monitor feeds import FILE` adds the feeds of a reader's export (Feedly, Inoreader, Miniflux,
NetNewsWire, reader ...); `monitor feeds export` writes the database's feeds as OPML 2.0, for
a reader or another monitor.

Why listparser for reading: it is the subscription-list parser of feedparser's maintainer,
small and without dependencies; it reads OPML 1.0 and 2.0 (and the RDF and iGoogle lists
some older readers export), follows nested folders, takes a title from ``text`` or
``title``, drops repeated URLs, and reads the OPML that readers really write, unescaped
"&" in titles and URLs included, which an XML parser refuses. It is given bytes only: given
a string, it would fetch a URL. Writing needs no library: ElementTree escapes the attributes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from .errors import UserError
from .parse import MAX_SOURCE
from .text import clean_line, shorten

# Readers' exports are a few KB to a few hundred (thousands of feeds); anything far larger
# is not a subscription list, and is refused before it is parsed.
MAX_OPML_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Subscription:
    """One feed of a subscription list: its URL as written, and the title the reader gave it."""

    url: str
    title: str | None


def read_subscriptions(data: bytes, source: str) -> list[Subscription]:
    """The feeds of an OPML document, in its order, each URL once. ``source`` names the
    file in errors. Raises UserError when the document holds no feed at all."""
    if len(data) > MAX_OPML_BYTES:
        raise UserError(
            f"{source}: {len(data):,} bytes, more than a subscription list's "
            f"{MAX_OPML_BYTES // 1024 // 1024} MB: not imported"
        )
    import listparser

    parsed = listparser.parse(data)
    subscriptions: list[Subscription] = []
    seen: set[str] = set()
    for feed in parsed.get("feeds") or []:
        url = clean_line(feed.get("url"))
        if not url or url in seen:
            continue
        seen.add(url)
        title = shorten(clean_line(feed.get("title")), MAX_SOURCE)
        subscriptions.append(Subscription(url, title if title and title != url else None))
    if not subscriptions:
        problem = parsed.get("bozo_exception")
        why = f" ({type(problem).__name__}: {problem})" if problem else ""
        raise UserError(
            f"{source}: no feeds in it{why}; expected OPML, with an <outline xmlUrl=...> "
            "for each feed"
        )
    return subscriptions


def write_opml(feeds: Iterable[tuple[str, str]], now: datetime) -> str:
    """OPML 2.0 listing ``feeds``, each a URL and the feed's name."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = "monitor feeds"
    ET.SubElement(head, "dateCreated").text = format_datetime(now, usegmt=True)
    body = ET.SubElement(root, "body")
    for url, name in feeds:
        # (XML 1.0 has no place for control characters, which ElementTree writes as given)
        text = clean_line(name) or clean_line(url)
        ET.SubElement(body, "outline", type="rss", text=text, title=text, xmlUrl=clean_line(url))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
