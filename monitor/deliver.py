"""Delivery: drain the outbox through the configured channels, retrying and recording.

One call of `deliver_pending`:

    1. budget    hold the development alerts over their topic's daily budget (`budget`)
    2. dispatch  give every pending alert that has none yet one delivery per configured channel
    3. claim     each due delivery in the database just before sending it
    4. send      it, one at a time, on the calling thread
    5. record    each attempt, with its outcome, before the next send starts

Rules:

- "Alerted" means a channel confirmed it: a delivery becomes ``delivered`` only after the
  notifier returned its confirmation. A crash between the send and the record makes the
  alert go out again on the next run, with the same Message-ID / webhook-id (at least
  once, and recognisably so).
- Only the process that claimed a delivery sends it: the daemon and a `monitor poll` (or
  `replay --deliver`) running at the same time never send one alert twice. The claim
  outlasts any attempt (`claim_lease`); if its process dies, it lapses, and the delivery
  is sent again then (a daemon that starts takes back at once what its dead predecessor
  claimed). An attempt interrupted by an exception (Ctrl-C) gives its claim back.
- A `DeliveryError` with ``transient=True`` is retried after an exponential backoff with
  jitter (tenacity's `wait_exponential_jitter`), never sooner than the channel's
  Retry-After; after `max_attempts` attempts, or at once when not transient, the delivery
  is ``failed`` with its last error. A Retry-After holds back the channel's other pending
  alerts too (a 429 or 503 asks the sender to wait, whatever it sends), in the database,
  so that the next run, a restart or a `monitor poll` from cron waits as well; an alert
  raised while a channel is being retried waits for that channel's next retry.
- Channels are independent: each (alert, channel) pair has its own state, and a channel
  that failed transiently is not tried again in the same run (so a server that is down
  costs one timeout per run, not one per alert); the other channels carry on.
- A run asked to stop (``stop``, set by the daemon on SIGTERM) stops between two
  deliveries: the one being sent finishes and is recorded, the others stay pending for
  the next start, so a stop waits for one attempt, not for the whole backlog.
- Any other exception from a notifier is a bug: it is logged with its traceback and that
  delivery is recorded ``failed`` with the error (retry it with `monitor alerts retry`
  once fixed); it does not stop the other deliveries.

This module decides and records; notifiers (`monitor.notify`) do the sending. It reads the
time only from the ``clock`` passed in, once for the run (what is due) and again as each
attempt ends: an attempt is stamped, and its backoff and Retry-After counted, from the
moment its reply came, not from the start of a run that may have spent minutes on others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from . import metrics
from .budget import apply_budget
from .config import AlertSettings, Settings
from .errors import ConfigError, DeliveryError
from .log import redact
from .storage import Storage
from .storage.alerts import AttemptRecord, DueDelivery, claim_owner
from .text import counted

if TYPE_CHECKING:  # (a poll with no channel never imports them, nor tenacity)
    from .notify.base import Notifier
    from .render import AlertPayload

log = logging.getLogger("monitor.deliver")

#: The longest Retry-After honoured; a server asking for more is retried after this.
MAX_RETRY_AFTER = 86400.0

#: The shortest time a claim on a delivery holds (`claim_lease`).
CLAIM_FLOOR = 600.0


def claim_lease(settings: AlertSettings) -> timedelta:
    """How long a claim on a delivery holds: twice as long as any attempt can last, each
    exchange bounded as a whole (an attempt that outlived its claim could be sent again by
    another process meanwhile; recognisably, by its ID)."""
    seconds = CLAIM_FLOOR
    if settings.email is not None:
        from .notify.email import SMTP_STEPS

        steps = SMTP_STEPS + len(settings.email.recipients)
        seconds = max(seconds, 2 * steps * settings.email.timeout)
    for hook in settings.webhooks:
        seconds = max(seconds, 2 * hook.timeout)
    return timedelta(seconds=seconds)


def retry_delay(attempt: int, settings: AlertSettings, retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    ``retry_base * 2**(attempt-1)`` plus up to ``retry_base`` of random jitter, capped at
    ``retry_max``; a server's Retry-After is a floor (itself capped at a day).
    """
    from tenacity import RetryCallState, Retrying, wait_exponential_jitter

    wait = wait_exponential_jitter(
        multiplier=settings.retry_base, max=settings.retry_max, jitter=settings.retry_base
    )
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = max(attempt, 1)
    delay = float(wait(state))
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


@dataclass(slots=True)
class DeliverySummary:
    """What one run of `deliver_pending` did."""

    delivered: int = 0
    retried: int = 0
    failed: int = 0
    held: list[str] = field(default_factory=list)
    dispatched: int = 0  # alerts given their deliveries in this run
    deferred: int = 0  # due deliveries skipped because their channel failed earlier this run
    elsewhere: int = 0  # due deliveries another process claimed (or sent) meanwhile
    orphaned: int = 0  # due deliveries for a channel that is no longer configured
    stopped: int = 0  # due deliveries left for the next start because the run was stopped
    bugs: int = 0  # unexpected exceptions from notifiers (also counted in `failed`)
    no_channels: bool = False
    waiting: int = 0  # pending alerts when no channel is configured

    def text(self) -> str:
        if self.no_channels:
            return (
                f"no alert channel is configured: {self.waiting} alerts wait in the outbox "
                "(configure [alerts.email], [[alerts.webhooks]] or [[alerts.apprise]])"
            )
        parts = [
            f"{self.delivered} delivered",
            f"{self.retried} to retry",
            f"{self.failed} failed",
        ]
        if self.held:
            parts.append(f"{len(self.held)} held for the digest (alert budget)")
        if self.deferred:
            parts.append(f"{self.deferred} deferred (channel failing)")
        if self.elsewhere:
            parts.append(f"{self.elsewhere} left to another process")
        if self.orphaned:
            parts.append(f"{self.orphaned} waiting for a channel no longer configured")
        if self.stopped:
            parts.append(f"stopped: {self.stopped} left for the next start")
        if self.bugs:
            parts.append(f"{self.bugs} internal errors (see the log)")
        return "deliveries: " + ", ".join(parts)


def channel_names(channels: Sequence[Notifier]) -> list[str]:
    """The channels' names, which key their deliveries; two channels may not share one."""
    names = [channel.channel for channel in channels]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ConfigError(f"alerts: two channels are both named {name!r}")
    return names


def deliver_pending(
    storage: Storage,
    channels: Sequence[Notifier],
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    owner: str | None = None,
    stop: threading.Event | None = None,
) -> DeliverySummary:
    """Send every due delivery once, record each attempt, and return what happened.

    Deliveries are created for the channels configured when an alert is first dispatched;
    a channel added later receives only the alerts raised after it was added. ``owner``
    names this process's claims (`claim_owner`; a fresh one by default). Once ``stop`` is
    set, no further delivery is started.
    """
    owner = owner or claim_owner()
    lease = claim_lease(settings.alerts)
    now = clock()
    summary = DeliverySummary()
    summary.held = apply_budget(storage, settings.topics)
    if not channels:
        summary.no_channels = True
        summary.waiting = int(storage.outbox_counts()["pending"])
        if summary.waiting:
            log.warning("no alert channel is configured; %d alerts wait", summary.waiting)
        return summary
    names = channel_names(channels)
    by_name = {channel.channel: channel for channel in channels}

    for alert in storage.undispatched_alerts():
        storage.open_deliveries(alert.id, names, now)
        summary.dispatched += 1

    failing: set[str] = set()
    due_now = storage.pending_deliveries(now)
    for index, due in enumerate(due_now):
        if stop is not None and stop.is_set():
            summary.stopped = len(due_now) - index
            break
        notifier = by_name.get(due.channel)
        if notifier is None:
            summary.orphaned += 1
            continue
        if due.channel in failing:
            summary.deferred += 1
            continue
        at = clock()
        claimed = storage.claim_delivery(due, owner, at, at + lease)
        if claimed is None:
            summary.elsewhere += 1
            continue
        try:
            outcome = _attempt(storage, notifier, claimed, settings.alerts, clock, owner)
        except BaseException:
            storage.release_claim(due.id, owner)
            raise
        if outcome == "delivered":
            summary.delivered += 1
        elif outcome == "partial":  # the channel works: the others go on
            summary.retried += 1
        elif outcome == "retry":
            summary.retried += 1
            failing.add(due.channel)
        else:
            summary.failed += 1
            if outcome == "bug":
                summary.bugs += 1
    if summary.delivered or summary.retried or summary.failed or summary.stopped or summary.held:
        log.info(summary.text())
    return summary


def _attempt(
    storage: Storage,
    notifier: Notifier,
    due: DueDelivery,
    settings: AlertSettings,
    clock: Callable[[], datetime],
    owner: str,
) -> str:
    """Send one claimed delivery (to the targets not done yet) and record the attempt;
    return delivered, partial (to retry, but the channel works: it reached some targets,
    or refused only these), retry, failed or bug."""
    attempt = due.attempts + 1
    started = time.perf_counter()
    outcome: str
    try:
        confirmation = notifier.send(cast("AlertPayload", due.payload), due.done)
    except DeliveryError as error:
        duration = _ms(started)
        now = clock()
        message = redact(str(error))
        reached = redact(error.confirmation)[:200] if error.confirmation is not None else None
        if error.transient and attempt < settings.max_attempts:
            outcome = "partial" if reached is not None or error.channel_works else "retry"
            delay = retry_delay(attempt, settings, error.retry_after)
            record = AttemptRecord(
                delivery_id=due.id,
                attempted_at=now,
                outcome="retry",
                status_code=error.status,
                error=message,
                duration_ms=duration,
                next_attempt_at=now + timedelta(seconds=delay),
                owner=owner,
                done=error.done,
                confirmation=reached,
                channel_waits_until=_waits_until(error, now),
            )
            log.warning(
                "alert %s via %s: attempt %d failed, retry in %.0fs: %s",
                due.alert_id,
                due.channel,
                attempt,
                delay,
                message,
            )
        else:
            outcome = "failed"
            if error.transient:
                message = f"gave up after {counted(attempt, 'attempt')}: {message}"
            record = AttemptRecord(
                delivery_id=due.id,
                attempted_at=now,
                outcome="failed",
                status_code=error.status,
                error=message,
                duration_ms=duration,
                owner=owner,
                done=error.done,
                confirmation=reached,
                channel_waits_until=_waits_until(error, now),
            )
            log.error("alert %s via %s failed: %s", due.alert_id, due.channel, message)
    except Exception as error:  # a bug in a notifier: visible, but the others go on
        now = clock()
        log.exception("alert %s via %s: unexpected error", due.alert_id, due.channel)
        outcome = "bug"
        record = AttemptRecord(
            delivery_id=due.id,
            attempted_at=now,
            outcome="failed",
            error=redact(f"internal error: {type(error).__name__}: {error}"),
            duration_ms=_ms(started),
            owner=owner,
        )
    else:
        now = clock()
        outcome = "delivered"
        record = AttemptRecord(
            delivery_id=due.id,
            attempted_at=now,
            outcome="delivered",
            status_code=redact(confirmation)[:200],
            duration_ms=_ms(started),
            owner=owner,
        )
        log.info("alert %s delivered via %s: %s", due.alert_id, due.channel, record.status_code)
    storage.record_attempt(record)
    metrics.observe_delivery(due.channel, record.outcome, (record.duration_ms or 0.0) / 1000)
    return outcome


def _waits_until(error: DeliveryError, now: datetime) -> datetime | None:
    """Until when the server asked to hear nothing more (its Retry-After), if it did."""
    if error.retry_after is None or error.retry_after <= 0:
        return None
    return now + timedelta(seconds=min(error.retry_after, MAX_RETRY_AFTER))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def probe_payload(now: datetime, alert_id: str) -> dict[str, Any]:
    """The message `monitor alerts test` sends through every channel."""
    return {
        "type": "test",
        "id": alert_id,
        "topic": None,
        "created_at": now.isoformat(timespec="seconds"),
        "message": "A test message from monitor: this channel works.",
    }


def send_test(channels: Sequence[Notifier], now: datetime) -> list[tuple[str, bool, str]]:
    """Send a test message through every channel now; (channel, ok, confirmation or error).

    Nothing is stored: this checks the channels, not the outbox.
    """
    from .storage.alerts import new_alert_id

    payload = cast("AlertPayload", probe_payload(now, f"test_{new_alert_id()[2:]}"))
    results: list[tuple[str, bool, str]] = []
    for notifier in channels:
        try:
            results.append((notifier.channel, True, redact(notifier.send(payload))))
        except DeliveryError as error:
            results.append((notifier.channel, False, redact(str(error))))
        except Exception as error:  # report a broken channel rather than stop at it
            log.exception("test message via %s: unexpected error", notifier.channel)
            detail = f"internal error: {type(error).__name__}: {error}"
            results.append((notifier.channel, False, redact(detail)))
    return results
