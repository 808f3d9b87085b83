"""Main text of a linked article, for feeds that carry only a line (pure: bytes in, text out).

trafilatura does the extraction: it is maintained, handles boilerplate (menus, comments,
cookie banners) far better than a hand-written heuristic, and works on bytes without any
network access. The pipeline fetches the page with the same polite `Fetcher` as feeds.
"""

from __future__ import annotations

from collections.abc import Mapping

from .models import Entry

SHORT_TEXT = 400  # characters: below this an entry is "a line" and worth enriching
MAX_ARTICLE_CHARS = 50_000


def needs_full_text(entry: Entry) -> bool:
    """True when the entry carries too little text to judge well."""
    return len(entry.content or entry.summary) < SHORT_TEXT


def extract_text(body: bytes, headers: Mapping[str, str], url: str) -> str | None:
    """The article's main text, or None when the page has none worth using."""
    content_type = headers.get("content-type", "")
    if content_type and "html" not in content_type and "xml" not in content_type:
        return None
    import trafilatura  # imported here: it is slow to import and most polls never need it

    try:
        text = trafilatura.extract(
            body, url=url, include_comments=False, include_tables=False, favor_precision=True
        )
    except (ValueError, TypeError, LookupError):
        return None
    if not text or len(text) < SHORT_TEXT // 2:
        return None
    return str(text)[:MAX_ARTICLE_CHARS]
