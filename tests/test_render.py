"""Rendering of alert messages: golden text and HTML, escaping, stable headers."""

from __future__ import annotations

import copy
import json
import os
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from monitor.render import (
    AlertPayload,
    message_id,
    render_email,
    render_html,
    render_text,
    safe_url,
    subject,
    webhook_body,
)

GOLDEN = Path(__file__).parent / "golden" / "render"


def development_alert() -> AlertPayload:
    return {
        "type": "development.new",
        "id": "a_0123456789abcdef",
        "topic": "taliban-delisting",
        "created_at": "2025-04-17T09:30:00+00:00",
        "story": {
            "id": "s_42",
            "url": "https://news.example.org/world/russia-taliban?utm=x&y=1",
            "title": "Russia's Supreme Court lifts ban on the Taliban",
            "source": "Example World",
            "published": "2025-04-17T08:05:00Z",
            "summary": "The court suspended the ban in force since 2003.\n\nKabul welcomed it.",
        },
        "development": {
            "id": "d_7",
            "label": "Supreme Court lifts the ban",
            "sources": ["Example World", "Wire Daily", "Example World"],
            "story_count": 3,
        },
        "score": 0.8123,
        "reasons": [
            {"kind": "terms", "text": "matched 4 topic terms", "weight": 0.5},
            {"kind": "novelty", "text": "new facts: Supreme Court, suspended", "weight": 0.31},
            {"kind": "profile", "text": "joins the topic's examples", "weight": None},
        ],
        "matched_terms": [["taliban", 0.0712], ["supreme court", 0.0305]],
        "nearest_seed": {"id": "000_4848f0c9aefd9c35", "title": "Russia plans", "similarity": 0.41},
    }


def hostile_alert() -> AlertPayload:
    payload = development_alert()
    payload["story"] = {
        "id": "s_666",
        "url": "javascript:alert(document.cookie)",
        "title": 'Hacked <script>alert("x")</script> & "quoted"',
        "source": "<b>Evil</b> Feed",
        "published": "not a date",
        "summary": '<a href="javascript:alert(1)">click</a> <img src=x onerror=alert(1)>',
    }
    payload["development"]["label"] = "<script>steal()</script>"
    payload["nearest_seed"] = None
    return payload


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    content: str = part.get_content()
    return content


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8")


def email_for(payload: AlertPayload) -> EmailMessage:
    return reparse(render_email(payload, sender="monitor@example.org", recipients=["me@x.org"]))


# --- golden --------------------------------------------------------------------------------


def test_development_text_golden() -> None:
    check_golden("development.txt", text_part(email_for(development_alert())))


def test_development_html_golden() -> None:
    check_golden("development.html", html_part(email_for(development_alert())))


def test_digest_golden() -> None:
    payload: AlertPayload = {
        "type": "digest",
        "id": "a_digest1",
        "topic": "taliban-delisting",
        "created_at": "2025-04-18T07:00:00Z",
        "digest": {
            "since": "2025-04-17T07:00:00Z",
            "until": "2025-04-18T07:00:00Z",
            "developments": [
                {
                    "id": "d_7",
                    "label": "Supreme Court lifts the ban",
                    "stories": [
                        {
                            "title": "Court lifts ban",
                            "url": "https://a.example/1",
                            "source": "A",
                            "status": "development",
                        },
                        {
                            "title": "<i>Ban lifted</i>",
                            "url": "ftp://b.example/2",
                            "source": "B",
                            "status": "coverage",
                        },
                    ],
                    "sources": ["A", "B"],
                    "count": 2,
                }
            ],
            "held_back": [
                {
                    "id": "s_9",
                    "title": "Another",
                    "url": "https://c.example/3",
                    "alert_id": "a_9",
                    "development": "Embassy reopens",
                }
            ],
            "counts": {"development": 1, "coverage": 1, "duplicate": 4},
        },
    }
    msg = email_for(payload)
    assert msg["Subject"] == "[taliban-delisting] Digest: 1 development since 2025-04-17 07:00 UTC"
    check_golden("digest.txt", text_part(msg))
    check_golden("digest.html", html_part(msg))


# --- structure and headers -----------------------------------------------------------------


def test_email_is_multipart_alternative_with_both_parts() -> None:
    msg = email_for(development_alert())
    assert msg.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in msg.iter_parts()]
    assert types == ["text/plain", "text/html"]
    assert msg["Subject"] == "[taliban-delisting] Russia's Supreme Court lifts ban on the Taliban"
    assert msg["From"] == "monitor@example.org"
    assert msg["To"] == "me@x.org"
    assert msg["Date"] == "Thu, 17 Apr 2025 09:30:00 +0000"


def test_message_id_is_stable_and_derived_from_the_alert_id() -> None:
    first = render_email(development_alert(), sender="m@x.org", recipients=["a@x.org"])
    again = render_email(development_alert(), sender="m@x.org", recipients=["a@x.org"])
    other = development_alert()
    other["id"] = "a_ffffffffffffffff"
    third = render_email(other, sender="m@x.org", recipients=["a@x.org"])
    assert first["Message-ID"] == again["Message-ID"] == "<a_0123456789abcdef@monitor.local>"
    assert third["Message-ID"] != first["Message-ID"]


def test_message_id_of_an_odd_alert_id_is_still_valid_and_stable() -> None:
    odd = "weird id <with> @ signs"
    assert message_id(odd) == message_id(odd)
    local = message_id(odd)[1:].split("@")[0]
    assert local.isalnum()


def test_text_says_what_happened_and_why() -> None:
    text = render_text(development_alert())
    for expected in [
        "Russia's Supreme Court lifts ban on the Taliban",
        "Source: Example World",
        "Published: 2025-04-17 08:05 UTC",
        "Link: https://news.example.org/world/russia-taliban?utm=x&y=1",
        "The court suspended the ban",
        "Supreme Court lifts the ban — 2 sources so far (Example World, Wire Daily), 3 stories",
        "Score: 0.81",
        "taliban (0.07), supreme court (0.03)",
        "  - profile: joins the topic's examples\n",  # a reason without a number has none
        "Nearest seed: Russia plans (similarity 0.41)",
        "monitor feedback s_42 irrelevant --topic taliban-delisting",
        "monitor feedback s_42 not-new --topic taliban-delisting",
    ]:
        assert expected in text


# --- hostile feed content ------------------------------------------------------------------


def test_script_and_javascript_links_arrive_inert() -> None:
    msg = email_for(hostile_alert())
    html = html_part(msg)
    lowered = html.lower()
    assert "<script" not in lowered
    assert 'href="javascript:' not in lowered
    assert "<img" not in lowered
    assert "<b>" not in lowered
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "javascript:alert(document.cookie)" in html  # shown, as text
    assert "<a " not in lowered  # no http(s) URL in this alert, so no link at all
    # the subject and the text part carry the title verbatim (plain text is inert)
    assert msg["Subject"].startswith('[taliban-delisting] Hacked <script>alert("x")</script>')
    assert "Published: not a date" in text_part(msg)


def test_newlines_in_a_title_cannot_inject_headers() -> None:
    payload = development_alert()
    payload["story"]["title"] = "Title\r\nBcc: victim@example.org\nX: y"
    msg = render_email(payload, sender="m@x.org", recipients=["a@x.org"])
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.org/a?b=1&c=2", True),
        ("http://example.org", True),
        ("HTTPS://EXAMPLE.ORG/", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        ("java\nscript:alert(1)", False),
        (" https://example.org", False),
        ("data:text/html,<script>", False),
        ("//example.org/x", False),
        ("https:///nohost", False),
        ("mailto:a@b.org", False),
        ("", False),
        (None, False),
    ],
)
def test_only_plain_http_urls_become_links(url: Any, ok: bool) -> None:
    assert (safe_url(url) is not None) is ok


def test_link_attributes_are_escaped() -> None:
    payload = development_alert()
    payload["story"]["url"] = 'https://example.org/"><script>x</script>'
    html = render_html(payload)
    assert "<script" not in html
    assert 'href="https://example.org/&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in html


# --- other alert types ---------------------------------------------------------------------


def test_feed_failing_and_recovered() -> None:
    base: dict[str, Any] = {
        "id": "a_f1",
        "topic": None,
        "created_at": "2025-04-17T09:30:00Z",
        "feed": {
            "url": "https://feeds.example/rss",
            "name": "Example <Feed>",
            "error": "HTTP 503",
            "since": "2025-04-16T09:00:00Z",
        },
    }
    failing: AlertPayload = {**base, "type": "feed.failing"}  # type: ignore[typeddict-item]
    recovered: AlertPayload = {**base, "type": "feed.recovered"}  # type: ignore[typeddict-item]
    assert subject(failing) == "[monitor] Feed failing: Example <Feed>"
    assert subject(recovered) == "[monitor] Feed recovered: Example <Feed>"
    assert "Last error: HTTP 503" in render_text(failing)
    html = render_html(failing)
    assert "Example &lt;Feed&gt;" in html and "<Feed>" not in html
    assert '<a href="https://feeds.example/rss">' in html


def test_test_alert_and_unknown_type_render() -> None:
    test: AlertPayload = {"type": "test", "id": "a_t", "topic": "t", "message": "hello <b>"}
    assert subject(test) == "[t] Test alert"
    assert "hello <b>" in render_text(test)
    assert "hello &lt;b&gt;" in render_html(test)
    odd: AlertPayload = {"type": "something.else", "id": "a_o", "topic": "t"}
    assert subject(odd) == "[t] Alert: something.else"
    assert "something.else" in render_text(odd)
    msg = render_email(odd, sender="m@x.org", recipients=["a@x.org"])
    assert msg["Date"] is None  # no created_at, and rendering reads no clock


def test_render_does_not_mutate_the_payload() -> None:
    payload = hostile_alert()
    before = copy.deepcopy(payload)
    render_email(payload, sender="m@x.org", recipients=["a@x.org"])
    webhook_body(payload)
    assert payload == before


# --- webhook body --------------------------------------------------------------------------


def test_webhook_body_is_compact_utf8_json() -> None:
    payload = development_alert()
    payload["story"]["title"] = "Кабул — «талибы»"
    body = webhook_body(payload)
    assert body == json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    assert "Кабул".encode() in body
    assert json.loads(body) == payload


def test_webhook_body_rejects_nan() -> None:
    payload = development_alert()
    payload["score"] = float("nan")
    with pytest.raises(ValueError):
        webhook_body(payload)
