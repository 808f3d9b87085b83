"""Two processes polling one database at once (the daemon and `monitor poll`): each read
the feed's row before its fetch, and neither may act on what the other already did."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

from monitor.config import load_settings
from monitor.pipeline import Pipeline, PollSummary
from monitor.storage import Storage
from tests.feedserver import FeedServer, Reply, Request

ROOT = Path(__file__).resolve().parents[1]


def test_a_feed_failing_for_two_pollers_raises_one_alert_and_one_recovery(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    answers = [Reply(500, b"down")]
    together = threading.Barrier(2, timeout=20)

    def both_then(request: Request) -> Reply:
        together.wait()  # each poller has read the feed's row and sent its request
        return answers[0]

    url = feed_server.route("/flaky.xml", both_then)
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[database]\npath = "m.db"\n[alerts]\nfeed_failing_polls = 1\n'
        f'[[topics]]\nname = "t"\nseeds = ["{ROOT / "seeds"}"]\n'
        f'[[feeds]]\nurl = "{url}"\n'
    )
    settings = load_settings(config)
    stores = [Storage(settings.database_path) for _ in range(2)]
    stores[0].sync_feeds(settings.feeds, datetime.now(UTC))
    pipelines = [Pipeline(settings, store) for store in stores]

    async def both() -> list[PollSummary]:
        return await asyncio.gather(*(pipeline.poll(only_due=False) for pipeline in pipelines))

    def kinds() -> list[str]:
        rows = stores[0].db.execute("SELECT kind FROM alerts ORDER BY created_at, rowid")
        return [row[0] for row in rows]

    try:
        polls = asyncio.run(both())
        assert [(poll.outcomes["error"], poll.alerts) for poll in polls] in (
            [(1, 1), (1, 0)],
            [(1, 0), (1, 1)],
        )
        assert kinds() == ["feed_failing"]
        answers[0] = Reply(200, b"<rss version='2.0'><channel><title>up</title></channel></rss>")
        together.reset()
        polls = asyncio.run(both())
        assert [(poll.outcomes["ok"], poll.alerts) for poll in polls] in (
            [(1, 1), (1, 0)],
            [(1, 0), (1, 1)],
        )
        assert kinds() == ["feed_failing", "feed_recovered"]
    finally:
        for pipeline in pipelines:
            pipeline.close()
        for store in stores:
            store.close()
    assert len(feed_server.requests_for("/flaky.xml")) == 4
