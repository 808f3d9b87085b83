"""The timeline report: the developments are there, the page is self-contained and escaped."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from monitor.report import buckets, link, write_report
from monitor.storage import Storage, iso

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "taliban-delisting"
T0 = datetime(2025, 4, 17, 10, 30, tzinfo=UTC)
EVIL = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def build(path: Path) -> Storage:
    """A small store written table by table (the report only reads tables)."""
    storage = Storage(path)
    db = storage.db
    db["topics"].insert({"name": TOPIC, "created_at": iso(T0)})
    db["seeds"].insert(
        {
            "id": "seed:000.txt",
            "topic": TOPIC,
            "path": "seeds/000.txt",
            "title": "Russia kickstarts process to remove Taliban from terror list",
            "text": "...",
            "content_hash": "h0",
            "added_at": iso(T0),
        }
    )
    stories = [
        (
            "s1",
            "Russia's Supreme Court lifts ban on the Taliban",
            "https://a.example/1",
            "Example World",
            T0,
            "development",
            "dev-court",
        ),
        (
            "s2",
            "Court removes Taliban from terrorist list",
            "https://b.example/2",
            "Example Wire",
            T0 + timedelta(hours=4),
            "coverage",
            "dev-court",
        ),
        (
            "s3",
            "Russia's Supreme Court lifts ban on the Taliban",
            "https://c.example/3",
            "Example Mirror",
            T0 + timedelta(hours=6),
            "duplicate",
            None,
        ),
        (
            "s4",
            EVIL,
            "javascript:alert(1)",
            "Evil <b>Outlet</b>",
            T0 + timedelta(days=77),
            "development",
            "dev-recognition",
        ),
        (
            "s5",
            "Derby ends level",
            "https://a.example/5",
            "Example World",
            T0 + timedelta(days=3),
            "unrelated",
            None,
        ),
    ]
    for sid, title, url, source, when, status, dev in stories:
        db["stories"].insert(
            {
                "id": sid,
                "origin": "replay:test",
                "entry_key": sid,
                "url": url,
                "canonical_url": url,
                "title": title,
                "source": source,
                "published": iso(when),
                "seen_at": iso(when),
                "content_hash": sid,
            }
        )
        if status == "development":
            db["developments"].insert(
                {
                    "id": dev,
                    "topic": TOPIC,
                    "label": title if sid == "s4" else "Supreme Court lifts the ban",
                    "first_story": sid,
                    "sources": json.dumps([source]),
                    "story_count": 1,
                    "first_seen": iso(when),
                    "last_seen": iso(when),
                }
            )
        db["decisions"].insert(
            {
                "story_id": sid,
                "topic": TOPIC,
                "status": status,
                "score": 0.8,
                "development": dev,
                "decided_at": iso(when),
            }
        )
    return storage


@pytest.fixture
def page(tmp_path: Path) -> str:
    storage = build(tmp_path / "monitor.db")
    try:
        out = write_report(
            storage, TOPIC, tmp_path / "out" / "timeline.html", T0 + timedelta(days=80)
        )
    finally:
        storage.close()
    return out.read_text(encoding="utf-8")


def test_report_shows_the_developments_with_first_report_and_sources(page: str) -> None:
    assert "Supreme Court lifts the ban" in page
    assert 'href="https://a.example/1"' in page
    assert "Russia&#x27;s Supreme Court lifts ban on the Taliban" in page
    assert "Example World" in page
    assert 'href="https://b.example/2"' in page  # the coverage that followed
    assert "Development 1" in page and "Development 2" in page
    assert "<svg" in page and "Stories per day" in page  # 77 days: daily bars


def test_report_is_self_contained(page: str) -> None:
    assert 'src="http' not in page
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page


def test_report_escapes_what_feeds_wrote(page: str) -> None:
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img" not in page
    assert "javascript:" not in page
    assert "Evil &lt;b&gt;Outlet&lt;/b&gt;" in page


def test_the_seed_is_dated_by_the_first_story_that_told_it_again(tmp_path: Path) -> None:
    """Seeds are loaded, not published: the moment they were loaded says nothing of the
    story, so the seed's card carries the date of its first restatement, or none."""
    loaded = T0 + timedelta(days=300)
    storage = build(tmp_path / "monitor.db")
    try:
        storage.db["developments"].insert(
            {
                "id": "dev-seed",
                "topic": TOPIC,
                "label": "Russia kickstarts process to remove Taliban from terror list",
                "first_story": "seed:000.txt",
                "sources": "[]",
                "story_count": 0,
                "first_seen": iso(loaded),
                "last_seen": iso(loaded),
            }
        )

        def seed_card() -> str:
            html = write_report(storage, TOPIC, tmp_path / "t.html", loaded).read_text("utf-8")
            match = re.search(r'<li class="event seed".*?</li>', html, re.S)
            assert match, html
            return match.group(0)

        untold = seed_card()
        assert "no story yet" in untold and "<time" not in untold
        # s3, six hours after T0, is a copy of the seed
        storage.db.execute(
            "UPDATE decisions SET duplicate_of = 'seed:000.txt' WHERE story_id = 's3'"
        )
        told = seed_card()
        html = (tmp_path / "t.html").read_text("utf-8")
    finally:
        storage.close()
    # in time order: after development 1 (s1, at T0), before development 2 (77 days on)
    assert html.index("Development 1") < html.index('class="event seed"')
    assert html.index('class="event seed"') < html.index("Development 2")
    stamp = T0 + timedelta(hours=6)
    assert f'<time datetime="{stamp.isoformat()}">{stamp:%d %b %Y}</time>' in told
    assert f"{loaded:%d %b %Y}" not in told and "no story yet" not in told


def test_the_header_spans_the_whole_story_when_the_chart_shows_its_last_two_years(
    tmp_path: Path,
) -> None:
    storage = build(tmp_path / "monitor.db")
    old = T0 - timedelta(days=1000)
    try:
        storage.db["stories"].insert(
            {
                "id": "s0",
                "origin": "replay:test",
                "entry_key": "s0",
                "url": "https://a.example/0",
                "canonical_url": "https://a.example/0",
                "title": "An old story",
                "published": iso(old),
                "seen_at": iso(old),
                "content_hash": "s0",
            }
        )
        storage.db["decisions"].insert(
            {
                "story_id": "s0",
                "topic": TOPIC,
                "status": "unrelated",
                "score": 0.0,
                "decided_at": iso(old),
            }
        )
        html = write_report(storage, TOPIC, tmp_path / "t.html", T0 + timedelta(days=80))
        text = html.read_text("utf-8")
    finally:
        storage.close()
    last = T0 + timedelta(days=77)  # s4, the latest story
    assert f"{old:%d %b %Y} – {last:%d %b %Y}" in text
    assert "judged for this topic in the last two years, by publication week" in text


def test_links_only_for_http_urls() -> None:
    assert link("https://example.org/a") == "https://example.org/a"
    assert link("http://example.org") == "http://example.org"
    for bad in ("javascript:alert(1)", "data:text/html,x", "ftp://x.example", "//x.example", ""):
        assert link(bad) is None


def test_buckets_per_day_then_per_week() -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    unit, rows = buckets([(date(2025, 5, 1), "coverage"), (date(2025, 5, 3), "duplicate")], now)
    assert unit == "day"
    assert [d for d, _ in rows] == [date(2025, 5, 1), date(2025, 5, 2), date(2025, 5, 3)]
    assert rows[1][1] == {}
    unit, rows = buckets([(date(2025, 1, 1), "coverage"), (date(2025, 5, 30), "coverage")], now)
    assert unit == "week"
    assert all(d.weekday() == 0 for d, _ in rows)
    assert sum(sum(c.values()) for _, c in rows) == 2


def test_empty_topic_still_renders(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "monitor.db")
    try:
        html = write_report(storage, TOPIC, tmp_path / "t.html", T0).read_text(encoding="utf-8")
    finally:
        storage.close()
    assert "No stories judged" in html and "No development recorded yet" in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "render_report", ROOT / "scripts" / "render_report.py"
    )
    assert spec and spec.loader
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    storage = build(tmp_path / "monitor.db")
    try:
        html = write_report(storage, TOPIC, tmp_path / "timeline.html", T0 + timedelta(days=80))
    finally:
        storage.close()
    dom = render.dump_dom(html)
    assert "Supreme Court lifts the ban" in dom
    assert re.search(r"Development\s+2", dom)
    png = render.screenshot(html, tmp_path / "timeline.png", width=1280, height=1400)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
