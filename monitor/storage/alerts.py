"""Use cases on the outbox: `alerts` rows written with the decision that raised them,
`deliveries` (one per alert and channel) and `delivery_attempts` (every try).

State rules kept here, in one place:

- an alert is ``pending`` until a channel confirms it, then ``delivered`` ("alerted means a
  channel confirmed it", if only for some of its recipients, the others being retried); it
  is ``failed`` only when every one of its deliveries failed; ``held`` means the alert
  budget kept it back for the digest;
- a delivery is ``pending`` (with ``next_attempt_at``), ``delivered`` or ``failed``;
- a pending delivery is sent only by the process that claimed it (``claimed_by``), until
  its claim lapses (``claimed_until``); the attempt's outcome changes the delivery only
  while that claim holds (a confirmation excepted: it is a fact whoever holds the claim);
- every attempt is a `delivery_attempts` row, written in the same transaction as the
  delivery and alert state it changes.

This module stores and reads; it never sends anything and never reads the clock.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from ..errors import UserError
from .base import dumps, iso, parse_iso

ALERT_STATUSES = ("pending", "delivered", "failed", "held")

#: How the daemon's claims on deliveries begin: at most one daemon runs on a database (the
#: run lock), so a daemon that starts knows every other such claim was left by one that died.
DAEMON_CLAIM = "run:"


def new_alert_id() -> str:
    """A unique, stable alert ID; it becomes the email Message-ID and the webhook-id."""
    return f"a_{secrets.token_hex(8)}"


def claim_owner(*, daemon: bool = False) -> str:
    """A token for the claims one process (or one daemon) makes on deliveries."""
    prefix = DAEMON_CLAIM if daemon else "cli:"
    return f"{prefix}{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class OutboxAlert:
    """An alert as the delivery step needs it (``rowid`` orders alerts created together)."""

    rowid: int
    id: str
    kind: str
    topic: str | None
    status: str
    created_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """One (alert, channel) pair whose next attempt is due."""

    id: int
    alert_id: str
    channel: str
    attempts: int
    payload: dict[str, Any]
    done: frozenset[str] = frozenset()  # targets earlier attempts settled (`recipients_done`)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What one send did: written by `record_attempt` before the next send starts."""

    delivery_id: int
    attempted_at: datetime
    outcome: str  # delivered | retry | failed
    status_code: str | None = None
    error: str | None = None
    duration_ms: float | None = None
    next_attempt_at: datetime | None = None  # for "retry"
    owner: str | None = None  # the claim the attempt was made under
    done: frozenset[str] = frozenset()  # targets this attempt settled, for "retry"/"failed"
    confirmation: str | None = None  # the reply of a "retry" that reached some targets
    channel_waits_until: datetime | None = None  # the server's Retry-After, for the channel


def alert_title(payload: dict[str, Any]) -> str:
    """A one-line description of an alert for lists."""
    story = payload.get("story")
    if isinstance(story, dict) and story.get("title"):
        return str(story["title"])
    feed = payload.get("feed")
    if isinstance(feed, dict):
        return f"{payload.get('type', 'feed')}: {feed.get('name') or feed.get('url')}"
    digest = payload.get("digest")
    if isinstance(digest, dict):
        return f"digest {digest.get('since', '?')} → {digest.get('until', '?')}"
    return str(payload.get("type", ""))


class AlertStore:
    db: Database

    # -- writing alerts --------------------------------------------------------------------

    def enqueue_alert(
        self,
        *,
        kind: str,
        payload: dict[str, Any],
        now: datetime,
        topic: str | None = None,
        story_id: str | None = None,
        development: str | None = None,
        feed_id: int | None = None,
        alert_id: str | None = None,
    ) -> str:
        """Write an alert into the outbox (call inside the transaction that raised it).

        The payload's ``id`` and ``created_at`` are filled in here so that the stored row
        and what channels receive always agree.
        """
        alert_id = alert_id or new_alert_id()
        body = {**payload, "id": alert_id, "created_at": iso(now)}
        self.db.table("alerts").insert(
            {
                "id": alert_id,
                "kind": kind,
                "topic": topic,
                "story_id": story_id,
                "development": development,
                "feed_id": feed_id,
                "payload": dumps(body),
                "status": "pending",
                "created_at": iso(now),
            }
        )
        return alert_id

    # -- the delivery step ------------------------------------------------------------------

    def undispatched_alerts(self, *, kind: str | None = None) -> list[OutboxAlert]:
        """Pending alerts that have no delivery rows yet, oldest first."""
        sql = """
            SELECT a.rowid, * FROM alerts a
            WHERE a.status = 'pending'
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id)
        """
        params: list[Any] = []
        if kind is not None:
            sql += " AND a.kind = ?"
            params.append(kind)
        sql += " ORDER BY a.created_at, a.rowid"
        return [_outbox_alert(row) for row in self.db.query(sql, params)]

    def released_alerts_between(
        self, topic: str, start: datetime, end: datetime, *, before: OutboxAlert
    ) -> int:
        """How many development alerts of `topic`, created in [start, end) and before
        `before` (in outbox order), were let through (not held) — the budget's count."""
        created = iso(before.created_at)
        row = self.db.execute(
            """
            SELECT count(*) FROM alerts
            WHERE kind = 'development' AND topic = ? AND status != 'held'
              AND created_at >= ? AND created_at < ?
              AND (created_at < ? OR (created_at = ? AND rowid < ?))
            """,
            [topic, iso(start), iso(end), created, created, before.rowid],
        ).fetchone()
        return int(row[0])

    def hold_alert(self, alert_id: str) -> None:
        """Keep a development back for the digest (the alert budget is spent)."""
        self.db.execute(
            "UPDATE alerts SET status = 'held' WHERE id = ? AND status = 'pending'", [alert_id]
        )

    def open_deliveries(self, alert_id: str, channels: list[str], now: datetime) -> None:
        """One pending delivery per channel for an alert (idempotent), due now, or when the
        channel's next retry is due if it is retrying others: a receiver that answered 429
        or 503 (with its Retry-After) or a server that is down hears nothing new before
        then."""
        with self.db.atomic():
            for channel in channels:
                (retry,) = self.db.execute(
                    "SELECT min(next_attempt_at) FROM deliveries "
                    "WHERE status = 'pending' AND channel = ? AND attempts > 0",
                    [channel],
                ).fetchone()
                due = max(iso(now), retry) if retry else iso(now)
                self.db.execute(
                    "INSERT OR IGNORE INTO deliveries (alert_id, channel, status, attempts, "
                    "next_attempt_at) VALUES (?, ?, 'pending', 0, ?)",
                    [alert_id, channel, due],
                )

    def pending_deliveries(self, now: datetime) -> list[DueDelivery]:
        """Deliveries whose next attempt is due and that nobody claims, oldest alert first.

        What this returns may be stale by the time each is sent: claim each one first.
        """
        sql = """
            SELECT d.id, d.alert_id, d.channel, d.attempts, d.recipients_done, a.payload
            FROM deliveries d JOIN alerts a ON a.id = d.alert_id
            WHERE d.status = 'pending' AND d.next_attempt_at <= ?1
              AND (d.claimed_until IS NULL OR d.claimed_until <= ?1)
            ORDER BY a.created_at, a.rowid, d.id
        """
        return [
            DueDelivery(
                id=row["id"],
                alert_id=row["alert_id"],
                channel=row["channel"],
                attempts=row["attempts"],
                payload=json.loads(row["payload"]),
                done=_done(row["recipients_done"]),
            )
            for row in self.db.query(sql, [iso(now)])
        ]

    def claim_delivery(
        self, due: DueDelivery, owner: str, now: datetime, until: datetime
    ) -> DueDelivery | None:
        """Claim a delivery for sending until `until`; return it as it is now (its attempts
        and the targets done may have moved since it was read), or None when it is no
        longer pending and due, or another process's claim on it holds.

        One conditional UPDATE: of two processes that read the same due delivery, exactly
        one claims it. (Read after: SQLite before 3.35 cannot return the row it updates.)
        """
        with self.db.atomic():
            claimed = self.db.execute(
                """
                UPDATE deliveries SET claimed_by = ?1, claimed_until = ?2
                WHERE id = ?3 AND status = 'pending' AND next_attempt_at <= ?4
                  AND (claimed_until IS NULL OR claimed_until <= ?4)
                """,
                [owner, iso(until), due.id, iso(now)],
            ).rowcount
            if claimed != 1:
                return None
            attempts, done = self.db.execute(
                "SELECT attempts, recipients_done FROM deliveries WHERE id = ?", [due.id]
            ).fetchone()
        return replace(due, attempts=int(attempts), done=_done(done))

    def release_claim(self, delivery_id: int, owner: str) -> None:
        """Give back a claim without an attempt to record (the attempt was interrupted)."""
        self.db.execute(
            "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL "
            "WHERE id = ? AND claimed_by = ?",
            [delivery_id, owner],
        )

    def release_daemon_claims(self) -> int:
        """Give back the claims a daemon that died left (call holding the run lock): what
        it was sending when it died is due again at once; return how many."""
        cursor = self.db.execute(
            "UPDATE deliveries SET claimed_by = NULL, claimed_until = NULL "
            "WHERE substr(claimed_by, 1, ?) = ?",
            [len(DAEMON_CLAIM), DAEMON_CLAIM],
        )
        return int(cursor.rowcount)

    def record_attempt(self, record: AttemptRecord) -> str:
        """Write one attempt and its consequences in one transaction; return the alert's status.

        ``delivered`` confirms the delivery and (if it was not already) the alert;
        ``retry`` moves the delivery's next attempt; ``failed`` ends the delivery, and the
        alert too when none of its deliveries is left pending or delivered. Each releases
        the claim. An attempt whose claim lapsed meanwhile (another process may have sent
        the delivery since) is recorded, but only a confirmation changes the delivery.
        A ``retry`` or ``failed`` attempt that reached some of the delivery's targets (its
        ``confirmation``) adds those it settled to `recipients_done`, and the alert is
        delivered: a channel confirmed it. An attempt whose server asked to wait
        (``channel_waits_until``, its Retry-After) moves the channel's other pending
        deliveries due sooner to then: the server asked it of the sender, not of one alert.
        """
        if record.outcome not in ("delivered", "retry", "failed"):
            raise ValueError(f"unknown outcome {record.outcome!r}")
        if record.outcome == "retry" and record.next_attempt_at is None:
            raise ValueError("a retry needs next_attempt_at")
        when = iso(record.attempted_at)
        with self.db.atomic():
            inserted = self.db.execute(
                """
                INSERT INTO delivery_attempts (delivery_id, alert_id, channel, attempted_at,
                    outcome, status_code, error, duration_ms)
                SELECT id, alert_id, channel, ?, ?, ?, ?, ? FROM deliveries WHERE id = ?
                """,
                [
                    when,
                    record.outcome,
                    record.status_code,
                    record.error,
                    record.duration_ms,
                    record.delivery_id,
                ],
            ).rowcount
            if inserted != 1:
                raise ValueError(f"no delivery {record.delivery_id}")
            alert_id = self.db.execute(
                "SELECT alert_id FROM deliveries WHERE id = ?", [record.delivery_id]
            ).fetchone()[0]
            unclaim = "claimed_by = NULL, claimed_until = NULL"
            if record.outcome == "delivered":
                self.db.execute(
                    "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, "
                    f"confirmation = ?, delivered_at = ?, last_error = NULL, {unclaim} "
                    "WHERE id = ? AND status != 'delivered'",
                    [record.status_code, when, record.delivery_id],
                )
                self.db.execute(
                    "UPDATE alerts SET status = 'delivered', delivered_at = ? "
                    "WHERE id = ? AND status IN ('pending', 'failed')",
                    [when, alert_id],
                )
            elif record.outcome == "retry":
                self.db.execute(
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?, "
                    "last_error = ?, recipients_done = coalesce(?, recipients_done), "
                    f"confirmation = coalesce(?, confirmation), {unclaim} "
                    "WHERE id = ? AND status = 'pending' AND claimed_by IS ?",
                    [
                        iso(record.next_attempt_at),
                        record.error,
                        self._done_with(record),
                        record.confirmation,
                        record.delivery_id,
                        record.owner,
                    ],
                )
            else:
                self.db.execute(
                    "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, "
                    "last_error = ?, recipients_done = coalesce(?, recipients_done), "
                    f"confirmation = coalesce(?, confirmation), {unclaim} "
                    "WHERE id = ? AND status = 'pending' AND claimed_by IS ?",
                    [
                        record.error,
                        self._done_with(record),
                        record.confirmation,
                        record.delivery_id,
                        record.owner,
                    ],
                )
                self.db.execute(
                    """
                    UPDATE alerts SET status = 'failed'
                    WHERE id = ? AND status = 'pending' AND NOT EXISTS (
                        SELECT 1 FROM deliveries WHERE alert_id = ? AND status != 'failed')
                    """,
                    [alert_id, alert_id],
                )
            if record.channel_waits_until is not None and record.outcome != "delivered":
                until = iso(record.channel_waits_until)
                self.db.execute(
                    "UPDATE deliveries SET next_attempt_at = ? WHERE status = 'pending' "
                    "AND channel = (SELECT channel FROM deliveries WHERE id = ?) "
                    "AND id != ? AND next_attempt_at < ?",
                    [until, record.delivery_id, record.delivery_id, until],
                )
            if record.confirmation is not None:  # an attempt that reached some targets
                self.db.execute(
                    "UPDATE alerts SET status = 'delivered', delivered_at = ? "
                    "WHERE id = ? AND status IN ('pending', 'failed')",
                    [when, alert_id],
                )
            status = self.db.execute(
                "SELECT status FROM alerts WHERE id = ?", [alert_id]
            ).fetchone()
        return str(status[0])

    def _done_with(self, record: AttemptRecord) -> str | None:
        """The delivery's targets done, with those `record` settled (None: no change)."""
        if not record.done:
            return None
        row = self.db.execute(
            "SELECT recipients_done FROM deliveries WHERE id = ?", [record.delivery_id]
        ).fetchone()
        return dumps(sorted(_done(row[0]) | record.done))

    # -- reading, for the CLI and `status` -----------------------------------------------------

    def alerts_list(
        self, *, status: str | None = None, topic: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The newest alerts (optionally of one status or topic), each with a one-line title
        and its deliveries (channel, status, attempts, last error). An alert counts as
        delivered once one channel confirmed it, so "failed" and "pending" also take an
        alert with a channel in that state (the email sent, the webhook given up on)."""
        if status is not None and status not in ALERT_STATUSES:
            raise UserError(
                f"unknown alert status {status!r} (expected one of: {', '.join(ALERT_STATUSES)})"
            )
        where, params = ["1 = 1"], []
        if status in ("failed", "pending"):
            where.append("(status = ? OR id IN (SELECT alert_id FROM deliveries WHERE status = ?))")
            params.extend([status, status])
        elif status is not None:
            where.append("status = ?")
            params.append(status)
        if topic is not None:
            where.append("topic = ?")
            params.append(topic)
        rows = list(
            self.db.query(
                f"SELECT * FROM alerts WHERE {' AND '.join(where)} "
                "ORDER BY created_at DESC, rowid DESC LIMIT ?",
                [*params, limit],
            )
        )
        return [
            {
                "id": row["id"],
                "kind": row["kind"],
                "topic": row["topic"],
                "status": row["status"],
                "created_at": row["created_at"],
                "delivered_at": row["delivered_at"],
                "title": alert_title(json.loads(row["payload"])),
                "deliveries": self._deliveries(row["id"]),
            }
            for row in rows
        ]

    def _deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT channel, status, attempts, next_attempt_at, last_error, confirmation, "
                "delivered_at FROM deliveries WHERE alert_id = ? ORDER BY id",
                [alert_id],
            )
        )

    def alert_detail(self, alert_id: str) -> dict[str, Any]:
        """One alert with its payload, deliveries and every attempt; UserError when unknown."""
        rows = list(self.db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]))
        if not rows:
            raise UserError(f"no alert with ID {alert_id!r}")
        row = rows[0]
        attempts = list(
            self.db.query(
                "SELECT channel, attempted_at, outcome, status_code, error, duration_ms "
                "FROM delivery_attempts WHERE alert_id = ? ORDER BY id",
                [alert_id],
            )
        )
        return {
            "id": row["id"],
            "kind": row["kind"],
            "topic": row["topic"],
            "status": row["status"],
            "created_at": row["created_at"],
            "delivered_at": row["delivered_at"],
            "story_id": row["story_id"],
            "development": row["development"],
            "feed_id": row["feed_id"],
            "payload": json.loads(row["payload"]),
            "deliveries": self._deliveries(alert_id),
            "attempts": attempts,
        }

    def retry_alert(self, alert_id: str, now: datetime) -> int:
        """Give an alert's failed deliveries a fresh start, due now; return how many.

        Their attempt counters restart at zero; the attempts already made stay recorded.
        A failed alert becomes pending again. UserError when there is nothing to retry.
        """
        status = self.alert_detail(alert_id)["status"]
        if status == "held":
            raise UserError(f"alert {alert_id} was held back for the digest; nothing to retry")
        with self.db.atomic():
            cursor = self.db.execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ? "
                "WHERE alert_id = ? AND status = 'failed'",
                [iso(now), alert_id],
            )
            count = cursor.rowcount
            if count:
                self.db.execute(
                    "UPDATE alerts SET status = 'pending' WHERE id = ? AND status = 'failed'",
                    [alert_id],
                )
        if not count:
            raise UserError(f"alert {alert_id} has no failed delivery to retry (it is {status})")
        return count

    def outbox_counts(self, now: datetime | None = None) -> dict[str, Any]:
        """Alerts per status (pending, held, delivered, failed), deliveries still pending or
        failed, how many are due at `now`, and when the oldest pending alert was raised."""
        counts: dict[str, Any] = {status: 0 for status in ALERT_STATUSES}
        for status, count in self.db.execute(
            "SELECT status, count(*) FROM alerts GROUP BY status"
        ).fetchall():
            counts[status] = count
        for status in ("pending", "failed"):
            counts[f"deliveries_{status}"] = self.db.execute(
                "SELECT count(*) FROM deliveries WHERE status = ?", [status]
            ).fetchone()[0]
        if now is not None:
            counts["deliveries_due"] = self.db.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?",
                [iso(now)],
            ).fetchone()[0]
        counts["oldest_pending"] = self.db.execute(
            "SELECT min(created_at) FROM alerts WHERE status = 'pending'"
        ).fetchone()[0]
        return counts

    # -- the digest ---------------------------------------------------------------------------

    def digest_window_start(self, topic: str) -> datetime | None:
        """When the topic's last digest ended (or the topic was created); None if unknown."""
        row = self.db.execute(
            "SELECT coalesce(last_digest_at, created_at) FROM topics WHERE name = ?", [topic]
        ).fetchone()
        return parse_iso(row[0]) if row else None

    def digest_decisions(
        self, topic: str, since: datetime, until: datetime
    ) -> list[dict[str, Any]]:
        """Coverage and duplicate decisions of a topic made in (since, until], with their story."""
        return list(
            self.db.query(
                """
                SELECT s.id, s.title, s.url, s.source, d.status, d.development, d.duplicate_of,
                       d.decided_at, dev.label AS development_label
                FROM decisions d
                JOIN stories s ON s.id = d.story_id
                LEFT JOIN developments dev ON dev.id = d.development
                WHERE d.topic = ? AND d.status IN ('coverage', 'duplicate')
                  AND d.decided_at > ? AND d.decided_at <= ?
                ORDER BY d.decided_at, s.id
                """,
                [topic, iso(since), iso(until)],
            )
        )

    def held_alerts(self, topic: str, since: datetime, until: datetime) -> list[OutboxAlert]:
        """Development alerts of a topic held back by the budget, created in (since, until]."""
        return [
            _outbox_alert(row)
            for row in self.db.query(
                "SELECT rowid, * FROM alerts WHERE topic = ? AND status = 'held' "
                "AND created_at > ? AND created_at <= ? ORDER BY created_at, rowid",
                [topic, iso(since), iso(until)],
            )
        ]

    def mark_digested(self, topic: str, until: datetime) -> None:
        """Move the topic's digest window on to `until` (never back), inside the transaction
        that wrote the digest."""
        exists = self.db.execute("SELECT 1 FROM topics WHERE name = ?", [topic]).fetchone()
        if exists is None:
            self.db.table("topics").insert(
                {"name": topic, "last_digest_at": iso(until), "created_at": iso(until)}
            )
            return
        self.db.execute(
            "UPDATE topics SET last_digest_at = ? "
            "WHERE name = ? AND (last_digest_at IS NULL OR last_digest_at < ?)",
            [iso(until), topic, iso(until)],
        )


def _done(value: str | None) -> frozenset[str]:
    return frozenset(json.loads(value)) if value else frozenset()


def _outbox_alert(row: dict[str, Any]) -> OutboxAlert:
    created = parse_iso(row["created_at"])
    assert created is not None
    return OutboxAlert(
        rowid=row["rowid"],
        id=row["id"],
        kind=row["kind"],
        topic=row["topic"],
        status=row["status"],
        created_at=created,
        payload=json.loads(row["payload"]),
    )
