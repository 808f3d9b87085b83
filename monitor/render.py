"""Build the content of an alert message from its stored payload.

Pure: no network, no database, no clock (the ``Date`` header comes from the payload's
``created_at``). The adapters in ``monitor.notify`` call these functions and only move bytes.

Everything that came from a feed is untrusted. In HTML it is escaped with ``html.escape``
and a URL becomes a link only when it is a plain ``http``/``https`` URL; anything else
(``javascript:``, ``data:``, URLs with control characters) is shown as inert text.

Message kinds (``payload["type"]``): ``development.new``, ``feed.failing``,
``feed.recovered``, ``digest`` and ``test``; any other type gets a generic message.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, NotRequired, Required, TypedDict
from urllib.parse import urlsplit

from .text import counted, shorten

__all__ = [
    "AlertPayload",
    "DevelopmentInfo",
    "DigestDevelopment",
    "DigestPayload",
    "DigestStory",
    "FeedInfo",
    "NearestSeed",
    "Reason",
    "StoryInfo",
    "alert_text",
    "message_id",
    "render_email",
    "render_html",
    "render_text",
    "safe_url",
    "subject",
    "webhook_body",
]

MESSAGE_ID_DOMAIN = "monitor.local"
SUBJECT_MAX = 200


# --- the payload (a JSON blob, hence TypedDicts) --------------------------------------------


class StoryInfo(TypedDict, total=False):
    id: str
    url: str
    title: str
    source: str | None
    published: str | None
    summary: str | None


class DevelopmentInfo(TypedDict, total=False):
    id: str
    label: str | None
    sources: list[str]
    story_count: int


class Reason(TypedDict, total=False):
    kind: str
    text: str
    weight: float


class NearestSeed(TypedDict, total=False):
    id: str
    title: str
    similarity: float


class FeedInfo(TypedDict, total=False):
    url: str
    name: str | None
    error: str | None
    since: str | None


class DigestStory(TypedDict, total=False):
    id: str
    alert_id: str  # held-back stories: the alert that the budget held
    development: str | None  # held-back stories: the development's label
    title: str
    url: str
    source: str | None
    status: str
    published: str | None


class DigestDevelopment(TypedDict, total=False):
    id: str
    label: str | None
    stories: list[DigestStory]
    sources: list[str]
    count: int  # stories in the period


class DigestPayload(TypedDict, total=False):
    since: str
    until: str
    developments: list[DigestDevelopment]
    held_back: list[DigestStory]
    counts: dict[str, int]


class AlertPayload(TypedDict, total=False):
    """What the outbox stores for one alert and every channel renders from (DESIGN §3.5)."""

    type: Required[str]
    id: Required[str]
    topic: str | None
    created_at: str
    story: StoryInfo
    development: DevelopmentInfo
    score: float
    reasons: list[Reason]
    matched_terms: list[list[Any]]  # [[term, weight], ...] (JSON has no tuples)
    nearest_seed: NearestSeed | None
    feed: FeedInfo
    digest: DigestPayload
    message: NotRequired[str]  # free text, used by "test" alerts


# --- small pure helpers --------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_SPACE = re.compile(r"\s+")
_MSGID_SAFE = re.compile(r"[A-Za-z0-9._-]+")


def safe_url(url: object) -> str | None:
    """Return ``url`` if it may become a link: http(s), with a host, no whitespace or controls."""
    if not isinstance(url, str) or not url or _CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def one_line(value: object) -> str:
    """Collapse whitespace (newlines included) so a feed string fits a header or a line."""
    return _SPACE.sub(" ", str(value)).strip() if value is not None else ""


def when(value: object) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM UTC``; anything unparseable is shown as given."""
    if not isinstance(value, str) or not value:
        return "unknown"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return one_line(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _number(value: object, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    return f"{value:.{digits}f}"


def _weight(reason: Mapping[str, Any]) -> str:
    """ " (weight 0.22)" for a reason that carries a number, else nothing."""
    value = reason.get("weight")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    return f" (weight {_number(value)})"


def message_id(alert_id: str) -> str:
    """A stable ``Message-ID`` for an alert: the same alert ID always gives the same header."""
    local = alert_id if _MSGID_SAFE.fullmatch(alert_id) else None
    if local is None:
        local = "h" + hashlib.sha256(alert_id.encode("utf-8")).hexdigest()[:32]
    return f"<{local}@{MESSAGE_ID_DOMAIN}>"


def _terms(payload: Mapping[str, Any]) -> list[tuple[str, object]]:
    terms: list[tuple[str, object]] = []
    for item in payload.get("matched_terms") or []:
        if isinstance(item, Sequence) and not isinstance(item, str) and item:
            terms.append((one_line(item[0]), item[1] if len(item) > 1 else None))
        else:
            terms.append((one_line(item), None))
    return terms


def _feedback_commands(
    story_id: str, topic: object, config: str | None = None
) -> list[tuple[str, str]]:
    """The commands that correct an alert's story, for the alert's topic (a story may be
    about one topic and not another), with the sender's config file when it is known: a
    copied command otherwise reads the default config's database, wherever the user is."""
    quoted = shlex.quote(story_id)
    named = f" --topic {shlex.quote(one_line(topic))}" if one_line(topic) else ""
    monitor = f"monitor --config {shlex.quote(config)}" if config else "monitor"
    return [
        (f"{monitor} feedback {quoted} irrelevant{named}", "it is not about the topic"),
        (f"{monitor} feedback {quoted} not-new{named}", "it reports nothing new"),
    ]


def _digest_counts(dev: Mapping[str, Any]) -> str:
    sources = len(dict.fromkeys(one_line(s) for s in dev.get("sources") or []))
    text = counted(sources, "source")
    count = dev.get("count")
    if isinstance(count, int) and not isinstance(count, bool):
        text += f", {counted(count, 'story', 'stories')}"
    return text


def _topic(payload: Mapping[str, Any]) -> str:
    return one_line(payload.get("topic")) or "monitor"


# --- subject -------------------------------------------------------------------------------


def subject(payload: Mapping[str, Any]) -> str:
    """``[<topic>] <story title>`` for developments; a short summary line for other types."""
    kind = payload.get("type")
    topic = _topic(payload)
    if kind == "development.new":
        story = payload.get("story") or {}
        line = one_line(story.get("title")) or "New development"
    elif kind in ("feed.failing", "feed.recovered"):
        feed = payload.get("feed") or {}
        name = one_line(feed.get("name")) or one_line(feed.get("url")) or "a feed"
        line = f"Feed failing: {name}" if kind == "feed.failing" else f"Feed recovered: {name}"
    elif kind == "digest":
        digest = payload.get("digest") or {}
        count = len(digest.get("developments") or [])
        line = f"Digest: {counted(count, 'development')} since {when(digest.get('since'))}"
    elif kind == "test":
        line = "Test alert"
    else:
        line = f"Alert: {one_line(kind)}"
    return shorten(f"[{topic}] {line}", SUBJECT_MAX)


# --- plain text ----------------------------------------------------------------------------


def render_text(payload: Mapping[str, Any], *, config: str | None = None) -> str:
    """The plain-text body of an alert (also used by chat channels). ``config``: the
    sender's config file, named in the commands it suggests."""
    kind = payload.get("type")
    if kind == "development.new":
        lines = _text_development(payload, config)
    elif kind in ("feed.failing", "feed.recovered"):
        lines = _text_feed(payload)
    elif kind == "digest":
        lines = _text_digest(payload)
    elif kind == "test":
        lines = _text_test(payload)
    else:
        lines = _text_generic(payload)
    lines += ["", f"-- monitor · alert {one_line(payload.get('id'))}"]
    return "\n".join(lines) + "\n"


def _text_development(payload: Mapping[str, Any], config: str | None) -> list[str]:
    story = payload.get("story") or {}
    dev = payload.get("development") or {}
    lines = [
        f"New development in {_topic(payload)}",
        "",
        one_line(story.get("title")) or "(untitled)",
        f"Source: {one_line(story.get('source')) or 'unknown'}",
        f"Published: {when(story.get('published'))}",
        f"Link: {one_line(story.get('url'))}",
    ]
    summary = (story.get("summary") or "").strip()
    if summary:
        lines += ["", summary]
    lines += ["", "Why you got this", ""]
    lines += [f"- {line}" for line in _why_lines(payload, dev)]
    for reason in payload.get("reasons") or []:
        lines.append(
            f"  - {one_line(reason.get('kind'))}: {one_line(reason.get('text'))}{_weight(reason)}"
        )
    story_id = one_line(story.get("id"))
    if story_id:
        lines += ["", "Wrong? Tell the monitor:"]
        commands = _feedback_commands(story_id, payload.get("topic"), config)
        width = max(len(command) for command, _ in commands)
        for command, meaning in commands:
            lines.append(f"  {command.ljust(width)}  # {meaning}")
    return lines


def _why_lines(payload: Mapping[str, Any], dev: Mapping[str, Any]) -> list[str]:
    sources = list(dict.fromkeys(one_line(s) for s in dev.get("sources") or []))
    count = len(sources)
    label = one_line(dev.get("label")) or one_line(dev.get("id")) or "(unlabelled)"
    carried = f"{counted(count, 'source')} so far"
    if sources:
        carried += f" ({', '.join(sources)})"
    story_count = dev.get("story_count")
    if isinstance(story_count, int) and not isinstance(story_count, bool):
        carried += f", {counted(story_count, 'story', 'stories')}"
    lines = [f"Development: {label} — {carried}", f"Score: {_number(payload.get('score'))}"]
    terms = _terms(payload)
    if terms:
        lines.append("Matched terms: " + ", ".join(f"{t} ({_number(w)})" for t, w in terms))
    seed = payload.get("nearest_seed")
    if seed:
        lines.append(
            f"Nearest seed: {one_line(seed.get('title')) or one_line(seed.get('id'))}"
            f" (similarity {_number(seed.get('similarity'))})"
        )
    else:
        lines.append("Nearest seed: none")
    if payload.get("reasons"):
        lines.append("Reasons:")
    return lines


def _text_feed(payload: Mapping[str, Any]) -> list[str]:
    feed = payload.get("feed") or {}
    failing = payload.get("type") == "feed.failing"
    name = one_line(feed.get("name")) or one_line(feed.get("url")) or "a feed"
    lines = [
        f"Feed {'failing' if failing else 'recovered'}: {name}",
        "",
        f"URL: {one_line(feed.get('url'))}",
    ]
    if failing:
        lines += [
            f"Failing since: {when(feed.get('since'))}",
            f"Last error: {one_line(feed.get('error')) or 'unknown'}",
            "",
            "The monitor keeps retrying with backoff; see `monitor status`.",
        ]
    else:
        lines.append(f"Working again since: {when(feed.get('since'))}")
    return lines


def _text_digest(payload: Mapping[str, Any]) -> list[str]:
    digest = payload.get("digest") or {}
    lines = [
        f"Digest for {_topic(payload)}",
        f"From {when(digest.get('since'))} to {when(digest.get('until'))}",
    ]
    counts = digest.get("counts") or {}
    if counts:
        lines.append("Counts: " + ", ".join(f"{one_line(k)} {v}" for k, v in counts.items()))
    developments = digest.get("developments") or []
    if not developments:
        lines += ["", "No developments in this period."]
    for dev in developments:
        label = one_line(dev.get("label")) or one_line(dev.get("id"))
        lines += ["", f"* {label} — {_digest_counts(dev)}"]
        for story in dev.get("stories") or []:
            lines.append(f"  - {_text_story_line(story)}")
    held = digest.get("held_back") or []
    if held:
        lines += ["", "Held back (alert budget reached):"]
        lines += [f"  - {_text_story_line(story)}" for story in held]
    return lines


def _text_story_line(story: Mapping[str, Any]) -> str:
    parts = [one_line(story.get("title")) or "(untitled)"]
    meta = [one_line(story.get(k)) for k in ("source", "status", "development") if story.get(k)]
    if meta:
        parts.append(f"({', '.join(meta)})")
    parts.append(one_line(story.get("url")))
    return " ".join(p for p in parts if p)


def _text_test(payload: Mapping[str, Any]) -> list[str]:
    message = one_line(payload.get("message"))
    return [
        f"Test alert for {_topic(payload)}",
        "",
        message or "If you can read this, this channel works.",
    ]


def _text_generic(payload: Mapping[str, Any]) -> list[str]:
    body = json.dumps(payload, ensure_ascii=False, indent=2, default=str)
    return [f"Alert of type {one_line(payload.get('type'))}", "", body]


# --- HTML ----------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(one_line(value), quote=True)


def _link(url: object, text: object | None = None) -> str:
    """An ``<a>`` for http(s) URLs; anything else as escaped, inert text."""
    label = _e(text if text not in (None, "") else url)
    target = safe_url(url)
    if target is None:
        return label
    return f'<a href="{html.escape(target, quote=True)}">{label}</a>'


def _paragraphs(text: object) -> str:
    blocks = [b for b in re.split(r"\n\s*\n", str(text or "").strip()) if b.strip()]
    return "".join(f"<p>{_e(b)}</p>" for b in blocks)


def render_html(payload: Mapping[str, Any], *, config: str | None = None) -> str:
    """The HTML body of an alert: small, inline-styled, every feed string escaped."""
    kind = payload.get("type")
    if kind == "development.new":
        body = _html_development(payload, config)
    elif kind in ("feed.failing", "feed.recovered"):
        body = _html_feed(payload)
    elif kind == "digest":
        body = _html_digest(payload)
    elif kind == "test":
        body = _html_test(payload)
    else:
        dump = json.dumps(payload, ensure_ascii=False, indent=2, default=str)
        body = [f"<h1>Alert of type {_e(kind)}</h1>", f"<pre>{html.escape(dump)}</pre>"]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{_e(subject(payload))}</title></head>",
            '<body style="font-family: sans-serif; line-height: 1.4; max-width: 42em">',
            *body,
            f'<p style="color: #666; font-size: small">monitor · alert {_e(payload.get("id"))}</p>',
            "</body></html>",
            "",
        ]
    )


def _html_development(payload: Mapping[str, Any], config: str | None) -> list[str]:
    story = payload.get("story") or {}
    dev = payload.get("development") or {}
    title = one_line(story.get("title")) or "(untitled)"
    out = [
        f"<p>New development in <strong>{_e(_topic(payload))}</strong></p>",
        f"<h1>{_link(story.get('url'), title)}</h1>",
        "<p>",
        f"Source: {_e(story.get('source') or 'unknown')}<br>",
        f"Published: {_e(when(story.get('published')))}<br>",
        f"Link: {_link(story.get('url'))}",
        "</p>",
    ]
    summary = _paragraphs(story.get("summary"))
    if summary:
        out.append(f"<blockquote>{summary}</blockquote>")
    out += ["<h2>Why you got this</h2>", "<ul>"]
    why = _why_lines(payload, dev)
    reasons = payload.get("reasons") or []
    for line in why:
        if line == "Reasons:":
            items = "".join(
                f"<li>{_e(r.get('kind'))}: {_e(r.get('text'))}{_weight(r)}</li>"  # (digits)
                for r in reasons
            )
            out.append(f"<li>Reasons:<ul>{items}</ul></li>")
        else:
            out.append(f"<li>{_e(line)}</li>")
    out.append("</ul>")
    story_id = one_line(story.get("id"))
    if story_id:
        out.append("<p>Wrong? Tell the monitor:</p><ul>")
        for command, meaning in _feedback_commands(story_id, payload.get("topic"), config):
            out.append(f"<li><code>{_e(command)}</code> — {_e(meaning)}</li>")
        out.append("</ul>")
    return out


def _html_feed(payload: Mapping[str, Any]) -> list[str]:
    feed = payload.get("feed") or {}
    lines = _text_feed(payload)
    rest = "".join(f"{_e(line)}<br>" for line in lines[3:] if line)
    return [f"<h1>{_e(lines[0])}</h1>", f"<p>URL: {_link(feed.get('url'))}<br>{rest}</p>"]


def _html_story_item(story: Mapping[str, Any]) -> str:
    meta = [one_line(story.get(k)) for k in ("source", "status", "development") if story.get(k)]
    suffix = f" ({_e(', '.join(meta))})" if meta else ""
    url = story.get("url")
    if url and safe_url(url) is None:  # not linkable: still show where it was, as text
        suffix += f" {_e(url)}"
    return f"<li>{_link(url, story.get('title') or '(untitled)')}{suffix}</li>"


def _html_list(stories: Iterable[Mapping[str, Any]]) -> str:
    return "<ul>" + "".join(_html_story_item(s) for s in stories) + "</ul>"


def _html_digest(payload: Mapping[str, Any]) -> list[str]:
    digest = payload.get("digest") or {}
    out = [
        f"<h1>Digest for {_e(_topic(payload))}</h1>",
        f"<p>From {_e(when(digest.get('since')))} to {_e(when(digest.get('until')))}</p>",
    ]
    counts = digest.get("counts") or {}
    if counts:
        out.append(
            "<p>Counts: " + _e(", ".join(f"{one_line(k)} {v}" for k, v in counts.items())) + "</p>"
        )
    developments = digest.get("developments") or []
    if not developments:
        out.append("<p>No developments in this period.</p>")
    for dev in developments:
        label = dev.get("label") or dev.get("id")
        out.append(f"<h2>{_e(label)} — {_e(_digest_counts(dev))}</h2>")
        out.append(_html_list(dev.get("stories") or []))
    held = digest.get("held_back") or []
    if held:
        out += ["<h2>Held back (alert budget reached)</h2>", _html_list(held)]
    return out


def _html_test(payload: Mapping[str, Any]) -> list[str]:
    lines = _text_test(payload)
    return [f"<h1>{_e(lines[0])}</h1>", f"<p>{_e(lines[2])}</p>"]


# --- whole messages ------------------------------------------------------------------------


def alert_text(payload: Mapping[str, Any], *, config: str | None = None) -> tuple[str, str]:
    """``(title, body)`` for channels that take a title and plain text (apprise, chat)."""
    return subject(payload), render_text(payload, config=config)


def render_email(
    payload: Mapping[str, Any],
    *,
    sender: str,
    recipients: list[str],
    date: datetime | None = None,
    config: str | None = None,
) -> EmailMessage:
    """One ``multipart/alternative`` message (text, then HTML) for an alert.

    ``Message-ID`` is derived from the alert ID, so every retry carries the same one.
    ``Date`` is ``date`` if given, else the alert's ``created_at``; pure, so no clock is read.
    """
    msg = EmailMessage()
    msg["Subject"] = subject(payload)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Message-ID"] = message_id(str(payload["id"]))
    moment = date or _parse_time(payload.get("created_at"))
    if moment is not None:
        msg["Date"] = format_datetime(moment.astimezone(UTC))
    msg["X-Monitor-Alert"] = one_line(payload["id"])
    msg["X-Monitor-Type"] = one_line(payload.get("type"))
    msg.set_content(render_text(payload, config=config), cte="quoted-printable")
    msg.add_alternative(render_html(payload, config=config), subtype="html", cte="quoted-printable")
    return msg


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def webhook_body(payload: Mapping[str, Any]) -> bytes:
    """The webhook body: the payload as compact UTF-8 JSON (DESIGN §3.5)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )
