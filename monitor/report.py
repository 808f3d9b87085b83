"""`monitor report`: one static, self-contained HTML page with a topic's story at a glance.

The page holds a stacked bar chart of stories per day (per week when the span is long) by
decision status, drawn as inline SVG, and the developments as a timeline: each with its
first report, label, sources and the later coverage. Inline CSS, no script, no external
asset, so the file can be mailed, archived or opened offline.

Everything that came from a feed is escaped; only http(s) URLs become links. This module
reads the database and writes one file; it never changes stored data.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import UserError
from .storage import Storage, parse_iso
from .text import counted

STATUSES = ("development", "coverage", "duplicate", "unrelated")
COLOURS = {
    "development": "#e8590c",
    "coverage": "#1c7ed6",
    "duplicate": "#94a3b8",
    "unrelated": "#dfe3e8",
}
WEEKLY_AFTER_DAYS = 92  # a longer span is charted per week
MAX_DAYS = 2 * 365  # the chart shows at most the last two years
SHOWN_COVERAGE = 6  # coverage links listed under a development before "and N more"


@dataclass(slots=True)
class Report:
    story: str
    url: str | None
    title: str
    source: str | None
    published: datetime | None
    status: str


@dataclass(slots=True)
class Development:
    id: str
    label: str
    first_seen: datetime | None  # a seed's: its earliest restatement or coverage, if any
    sources: list[str]
    story_count: int
    first: Report | None
    seed: bool
    reports: list[Report] = field(default_factory=list)


def link(url: str | None) -> str | None:
    """`url` when it is an http(s) URL with a host, else None (never a javascript: link)."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _day(value: str | None) -> date | None:
    moment = parse_iso(value)
    return moment.astimezone(UTC).date() if moment else None


# -- reading ---------------------------------------------------------------------------------


def _stories(storage: Storage, topic: str) -> list[dict[str, Any]]:
    return list(
        storage.db.query(
            """
            SELECT s.id, s.url, s.title, s.source, s.published, d.status, d.development,
                d.duplicate_of
            FROM decisions d JOIN stories s ON s.id = d.story_id
            WHERE d.topic = ?
            ORDER BY s.published, s.id
            """,
            [topic],
        )
    )


def _developments(storage: Storage, topic: str, stories: list[dict[str, Any]]) -> list[Development]:
    by_id = {row["id"]: row for row in stories}
    reports: dict[str, list[Report]] = {}
    for row in stories:
        if row["development"] and row["status"] in ("development", "coverage"):
            reports.setdefault(row["development"], []).append(_report(row))
    seeds = {
        row["id"]: row["title"]
        for row in storage.db.query("SELECT id, title FROM seeds WHERE topic = ?", [topic])
    }
    found = []
    for row in storage.db.query(
        "SELECT * FROM developments WHERE topic = ? ORDER BY first_seen, id", [topic]
    ):
        first_id = row["first_story"]
        seed = first_id.startswith("seed:")
        if seed:
            first: Report | None = Report(
                first_id, None, seeds.get(first_id, first_id[5:]), "seed document", None, "seed"
            )
        else:
            first = _report(by_id[first_id]) if first_id in by_id else None
        try:
            sources = [str(source) for source in json.loads(row["sources"] or "[]")]
        except ValueError:
            sources = []
        own = [r for r in reports.get(row["id"], []) if r.story != first_id]
        if seed:  # loaded, not published: dated by the first story that told it again
            told = [
                moment
                for story in stories
                if story["development"] == row["id"] or story["duplicate_of"] == first_id
                if (moment := parse_iso(story["published"])) is not None
            ]
            first_seen = min(told, default=None)
        else:
            first_seen = parse_iso(row["first_seen"]) or datetime.now(UTC)
        found.append(
            Development(
                id=row["id"],
                label=row["label"],
                first_seen=first_seen,
                sources=sources,
                story_count=row["story_count"],
                first=first,
                seed=seed,
                reports=own,
            )
        )
    # In time order; a seed no story has told again yet comes first.
    found.sort(key=lambda d: (_when(d) or _EARLIEST, not d.seed, d.id))
    return found


def _report(row: dict[str, Any]) -> Report:
    return Report(
        row["id"],
        row["url"],
        row["title"] or "(untitled)",
        row["source"],
        parse_iso(row["published"]),
        row["status"],
    )


_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _when(development: Development) -> datetime | None:
    first = development.first
    if first is not None and first.published is not None:
        return first.published
    return development.first_seen


# -- the chart -------------------------------------------------------------------------------


def buckets(
    days: list[tuple[date, str]], now: datetime
) -> tuple[str, list[tuple[date, Counter[str]]]]:
    """Group (day, status) pairs per day, or per ISO week when the span is long.

    Returns the unit ("day" or "week") and every bucket from the first to the last, empty
    ones included, so gaps show as gaps.
    """
    if not days:
        return "day", []
    last = min(max(day for day, _ in days), now.astimezone(UTC).date())
    first = max(min(day for day, _ in days), last - timedelta(days=MAX_DAYS))
    weekly = (last - first).days > WEEKLY_AFTER_DAYS
    step = timedelta(days=7 if weekly else 1)

    def start(day: date) -> date:
        return day - timedelta(days=day.weekday()) if weekly else day

    counts: dict[date, Counter[str]] = {}
    cursor = start(first)
    while cursor <= last:
        counts[cursor] = Counter()
        cursor += step
    for day, status in days:
        key = start(day)
        if key in counts:
            counts[key][status] += 1
    return ("week" if weekly else "day"), sorted(counts.items())


def _nice_max(value: int) -> int:
    for nice in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= nice:
            return nice
    return ((value // 10000) + 1) * 10000


def chart_svg(unit: str, rows: list[tuple[date, Counter[str]]], marks: set[date]) -> str:
    """A stacked bar chart as inline SVG; `marks` are buckets with a new development."""
    if not rows:
        return '<p class="empty">No stories judged for this topic yet.</p>'
    width, height = 1000, 280
    left, right, top, bottom = 44, 12, 18, 42
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max(sum(c.values()) for _, c in rows) or 1)
    slot = plot_w / len(rows)
    bar = max(min(slot * 0.78, 42), 1.0)
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Stories per {unit} by decision status" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(5):
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        label = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
        out.append(
            f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
        )
    every = max(1, round(len(rows) / 12))
    for index, (bucket, counts) in enumerate(rows):
        x = left + slot * index + (slot - bar) / 2
        y = top + plot_h
        parts = []
        for status in STATUSES:
            count = counts.get(status, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[status]}"/>'
            )
        total = sum(counts.values())
        period = f"week of {bucket.isoformat()}" if unit == "week" else bucket.isoformat()
        detail = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))
        tip = escape(f"{period}: {total} stories" + (f" ({detail})" if detail else ""))
        out.append(f"<g><title>{tip}</title>{''.join(parts)}</g>")
        if bucket in marks:
            cx = x + bar / 2
            out.append(
                f'<path class="mark" d="M{cx - 5:.1f} {top - 12} L{cx + 5:.1f} {top - 12} '
                f'L{cx:.1f} {top - 4} Z"><title>new development</title></path>'
            )
        if index % every == 0:
            text = (
                bucket.strftime("%d %b") if unit == "day" or index else bucket.strftime("%d %b %Y")
            )
            out.append(
                f'<text class="axis" x="{x + bar / 2:.1f}" y="{height - bottom + 18}" '
                f'text-anchor="middle">{escape(text)}</text>'
            )
    out.append(
        f'<line class="base" x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}"/>'
    )
    out.append("</svg>")
    return "".join(out)


# -- the page --------------------------------------------------------------------------------


def _fmt(moment: datetime | None, with_time: bool = True) -> str:
    if moment is None:
        return ""
    moment = moment.astimezone(UTC)
    return moment.strftime("%d %b %Y, %H:%M UTC" if with_time else "%d %b %Y")


def _anchor(report: Report, css: str = "") -> str:
    title = escape(report.title)
    href = link(report.url)
    cls = f' class="{css}"' if css else ""
    if href is None:
        return f"<span{cls}>{title}</span>"
    return f'<a{cls} href="{escape(href, quote=True)}" rel="noopener noreferrer">{title}</a>'


def _development_html(development: Development, number: int) -> str:
    first = development.first
    when = _when(development)
    kind = "seed" if development.seed else "development"
    if when is None:  # a seed no story has told again yet
        stamp = '<div class="when"><span class="hour">no story yet</span></div>'
    else:
        stamp = (
            f'<div class="when"><time datetime="{escape(when.isoformat(), quote=True)}">'
            f"{escape(_fmt(when, with_time=False))}</time>"
            f'<span class="hour">{escape(when.astimezone(UTC).strftime("%H:%M UTC"))}</span>'
            "</div>"
        )
    head = (
        f'<li class="event {kind}" id="dev-{escape(development.id, quote=True)}">{stamp}'
        f'<div class="card"><p class="tag">'
        f"{'What the seeds already told' if development.seed else f'Development {number}'}"
        f"</p><h3>{escape(development.label)}</h3>"
    )
    body = []
    if first is not None:
        source = f' <span class="src">— {escape(first.source)}</span>' if first.source else ""
        body.append(
            f'<p class="first"><span class="k">First report</span> {_anchor(first)}{source}</p>'
        )
    sources = development.sources or sorted(
        {r.source for r in development.reports if r.source}
        | ({first.source} if first and first.source and not development.seed else set())
    )
    count = development.story_count
    meta = counted(count, "report")
    if sources:
        meta += f" from {counted(len(sources), 'source')}"
    body.append(f'<p class="meta">{escape(meta)}</p>')
    if sources:
        chips = "".join(f'<span class="chip">{escape(s)}</span>' for s in sources[:12])
        more = f'<span class="chip more">+{len(sources) - 12}</span>' if len(sources) > 12 else ""
        body.append(f'<p class="chips">{chips}{more}</p>')
    if development.reports:
        items = []
        for report in development.reports[:SHOWN_COVERAGE]:
            src = f' <span class="src">{escape(report.source)}</span>' if report.source else ""
            day = escape(_fmt(report.published, with_time=False))
            items.append(f'<li><span class="d">{day}</span> {_anchor(report)}{src}</li>')
        rest = len(development.reports) - SHOWN_COVERAGE
        if rest > 0:
            items.append(f'<li class="rest">and {rest} more</li>')
        body.append(f'<ul class="follow">{"".join(items)}</ul>')
    return head + "".join(body) + "</div></li>"


def render_report(storage: Storage, topic: str, now: datetime) -> str:
    """The whole HTML page for `topic`, as a string."""
    stories = _stories(storage, topic)
    developments = _developments(storage, topic, stories)
    totals = Counter(row["status"] for row in stories)
    pairs = [(day, row["status"]) for row in stories if (day := _day(row["published"]))]
    unit, rows = buckets(pairs, now)
    real = [d for d in developments if not d.seed]
    dated = [when for d in real if (when := _when(d)) is not None]
    starts = {when.astimezone(UTC).date() for when in dated}
    if unit == "week":
        starts = {day - timedelta(days=day.weekday()) for day in starts}
    chart = chart_svg(unit, rows, starts)
    days = [day for day, _ in pairs]
    span = scope = ""
    if days:  # the whole story; the chart may show only its last `MAX_DAYS`
        first, last = min(days), min(max(days), now.astimezone(UTC).date())
        span = f"{first:%d %b %Y} – {last:%d %b %Y}" if first <= last else ""
        scope = " in the last two years" if first < last - timedelta(days=MAX_DAYS) else ""
    cards = "".join(
        f'<div class="stat {s}"><span class="n">{totals.get(s, 0)}</span>'
        f'<span class="l">{s}</span></div>'
        for s in STATUSES
    )
    legend = "".join(f'<span><i style="background:{COLOURS[s]}"></i>{s}</span>' for s in STATUSES)
    timeline = "".join(
        _development_html(d, 0 if d.seed else real.index(d) + 1) for d in developments
    )
    if not developments:
        timeline = '<li class="empty">No development recorded yet.</li>'
    latest = max(dated, default=None)
    lede = (
        f"{len(real)} {'development' if len(real) == 1 else 'developments'} across "
        f"{len(stories)} stories judged"
        + (f"; the latest on {_fmt(latest, with_time=False)}" if latest else "")
        + "."
    )
    return PAGE.format(
        topic=escape(topic),
        generated=escape(_fmt(now)),
        span=escape(span),
        lede=escape(lede),
        cards=cards,
        chart=chart,
        unit=unit,
        scope=scope,
        legend=legend,
        timeline=timeline,
        css=CSS,
    )


def write_report(storage: Storage, topic: str, output: Path, now: datetime) -> Path:
    """Write the report of `topic` to `output` (UTF-8) and return the path.

    A path that cannot be written (a folder that is a file, no permission) is a
    `UserError` naming it."""
    page = render_report(storage, topic, now)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(page, encoding="utf-8")
    except FileExistsError:  # (from mkdir: the folder is a file)
        raise UserError(f"{output}: cannot write the report: {output.parent} is a file") from None
    except OSError as error:
        raise UserError(f"{output}: cannot write the report: {error.strerror or error}") from None
    return output


CSS = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#e4e7eb;--bg:#f7f8fa;--card:#fff;
--dev:#e8590c;--cov:#1c7ed6;--dup:#94a3b8;--unr:#c9ced6}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:16px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:40px 28px 64px}
header .eyebrow{text-transform:uppercase;letter-spacing:.12em;font-size:12px;color:var(--muted);
margin:0}
h1{font-size:34px;line-height:1.15;margin:6px 0 8px;letter-spacing:-.01em}
.lede{font-size:18px;color:var(--muted);margin:0 0 24px}
.stats{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:0 0 28px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;
border-top:4px solid var(--unr)}
.stat.development{border-top-color:var(--dev)}.stat.coverage{border-top-color:var(--cov)}
.stat.duplicate{border-top-color:var(--dup)}
.stat .n{display:block;font-size:28px;font-weight:700;font-variant-numeric:tabular-nums}
.stat .l{color:var(--muted);font-size:13px;text-transform:capitalize}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:22px 24px;
margin:0 0 28px}
h2{font-size:20px;margin:0 0 4px}
.sub{color:var(--muted);margin:0 0 14px;font-size:14px}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#eef0f3;stroke-width:1}.chart .base{stroke:#9aa5b1;stroke-width:1}
.chart .axis{fill:#7b8794;font-size:12px}.chart .mark{fill:var(--dev)}
.legend{display:flex;gap:18px;flex-wrap:wrap;font-size:13px;color:var(--muted);margin-top:8px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:6px;
vertical-align:-1px}
.legend .m{color:var(--dev)}
ol.timeline{list-style:none;margin:8px 0 0;padding:0;position:relative}
ol.timeline:before{content:"";position:absolute;left:150px;top:6px;bottom:6px;width:2px;
background:var(--line)}
.event{display:grid;grid-template-columns:132px 1fr;gap:38px;margin:0 0 22px;position:relative}
.event:before{content:"";position:absolute;left:144px;top:16px;width:14px;height:14px;
border-radius:50%;background:var(--dev);box-shadow:0 0 0 4px var(--card)}
.event.seed:before{background:#fff;border:3px solid var(--muted)}
.when{text-align:right;padding-top:10px;font-variant-numeric:tabular-nums}
.when time{display:block;font-weight:600}
.when .hour{display:block;color:var(--muted);font-size:13px}
.card{border:1px solid var(--line);border-left:4px solid var(--dev);border-radius:10px;
padding:14px 18px;background:#fffdfb}
.seed .card{border-left-color:var(--muted);background:#fafbfc}
.tag{margin:0;font-size:12px;text-transform:uppercase;letter-spacing:.08em;color:var(--dev);
font-weight:600}
.seed .tag{color:var(--muted)}
h3{margin:2px 0 8px;font-size:19px;line-height:1.3}
.card p{margin:0 0 6px}
.k{display:inline-block;font-size:12px;color:var(--muted);text-transform:uppercase;
letter-spacing:.06em;margin-right:6px}
a{color:#0b5cad;text-decoration:none}a:hover{text-decoration:underline}
.src{color:var(--muted);font-size:14px}
.meta{color:var(--muted);font-size:14px}
.chip{display:inline-block;background:#eef2f7;border-radius:999px;padding:1px 10px;
margin:0 6px 4px 0;font-size:13px}
.follow{margin:8px 0 0;padding:8px 0 0;border-top:1px dashed var(--line);list-style:none;
font-size:14px}
.follow li{margin:3px 0}.follow .d{color:var(--muted);font-variant-numeric:tabular-nums;
display:inline-block;min-width:92px}
.rest,.empty{color:var(--muted)}
footer{color:var(--muted);font-size:13px;text-align:center}
@media (max-width:720px){.stats{grid-template-columns:repeat(2,1fr)}
ol.timeline:before,.event:before{display:none}.event{grid-template-columns:1fr;gap:4px}
.when{text-align:left;padding:0}}
@media print{body{background:#fff}section{border:none;padding:0}}
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{topic} — story timeline</title>
<style>{css}</style>
</head>
<body>
<main>
<header>
<p class="eyebrow">monitor · story timeline · {span}</p>
<h1>{topic}</h1>
<p class="lede">{lede}</p>
</header>
<div class="stats">{cards}</div>
<section>
<h2>Stories per {unit}</h2>
<p class="sub">Every story judged for this topic{scope}, by publication {unit} and decision.</p>
{chart}
<div class="legend">{legend}<span class="m">▼ new development</span></div>
</section>
<section>
<h2>Developments</h2>
<p class="sub">Each new development with its first report, its sources and the coverage
that followed.</p>
<ol class="timeline">{timeline}</ol>
</section>
<footer>Generated by monitor on {generated}. A static page: no script, no external
resource.</footer>
</main>
</body>
</html>
"""
