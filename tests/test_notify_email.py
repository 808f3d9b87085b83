"""EmailNotifier against real local SMTP peers (aiosmtpd) from tests/peers.py."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from monitor.channels import build_channels
from monitor.config import AlertSettings, EmailSettings
from monitor.errors import DeliveryError, EmailError
from monitor.notify.base import Notifier
from monitor.notify.email import EmailNotifier
from tests.peers import SMTP_PASSWORD, SMTP_USER, SmtpPeer
from tests.test_render import development_alert, hostile_alert, html_part, text_part


def notifier(peer: SmtpPeer, **kwargs: object) -> EmailNotifier:
    options: dict[str, object] = {
        "sender": "monitor@example.org",
        "recipients": ["me@example.org"],
        "timeout": 5.0,
    }
    options.update(kwargs)
    return EmailNotifier(peer.host, peer.port, **options)  # type: ignore[arg-type]


def test_is_a_notifier() -> None:
    email = EmailNotifier("127.0.0.1", 25, "m@x.org", ["a@x.org"])
    assert isinstance(email, Notifier)
    assert email.channel == "email"


def test_plain_delivery(smtp_server: SmtpPeer) -> None:
    confirmation = notifier(smtp_server).send(development_alert())
    assert confirmation.startswith("250 ")
    assert "queued as m1" in confirmation
    [mail] = smtp_server.received
    assert mail.mail_from == "monitor@example.org"
    assert mail.rcpt_tos == ["me@example.org"]
    msg = mail.message
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"] == "<a_0123456789abcdef@monitor.local>"
    assert "monitor feedback s_42 irrelevant" in text_part(msg)
    assert "Supreme Court lifts the ban" in html_part(msg)


def test_the_suggested_commands_name_the_senders_config(
    smtp_server: SmtpPeer, tmp_path: Path
) -> None:
    """A user who copied `monitor feedback ...` from an alert sent by a daemon with another
    config than the default read the default config's database ("no story with ID")."""
    config = tmp_path / "my monitor" / "monitor.toml"
    settings = AlertSettings(
        email=EmailSettings(host=smtp_server.host, port=smtp_server.port, recipients=("me@x.org",))
    )
    (email,) = build_channels(settings, {}, source=config)
    email.send(development_alert())
    msg = smtp_server.received[0].message
    named = f"monitor --config '{config}' feedback s_42 irrelevant --topic taliban-delisting"
    assert named in text_part(msg)
    assert named.replace("'", "&#x27;") in html_part(msg)


def test_retry_carries_the_same_message_id(smtp_server: SmtpPeer) -> None:
    email = notifier(smtp_server)
    email.send(development_alert())
    email.send(development_alert())
    ids = [mail.message["Message-ID"] for mail in smtp_server.received]
    assert ids[0] == ids[1]


def test_hostile_content_is_inert_after_the_trip(smtp_server: SmtpPeer) -> None:
    notifier(smtp_server).send(hostile_alert())
    html = html_part(smtp_server.received[0].message).lower()
    assert "<script" not in html
    assert 'href="javascript:' not in html


def test_non_ascii_content(smtp_server: SmtpPeer) -> None:
    payload = development_alert()
    payload["story"]["title"] = "Талибы — «исключены» из списка"
    notifier(smtp_server).send(payload)
    msg = smtp_server.received[0].message
    assert msg["Subject"] == "[taliban-delisting] Талибы — «исключены» из списка"
    assert "«исключены»" in text_part(msg)


def test_starttls_and_login(smtp_tls_server: SmtpPeer, tls_client_context: ssl.SSLContext) -> None:
    email = notifier(
        smtp_tls_server,
        security="starttls",
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        ssl_context=tls_client_context,
    )
    assert email.send(development_alert()).startswith("250 ")
    [mail] = smtp_tls_server.received
    assert mail.tls
    assert mail.authenticated_as == SMTP_USER
    assert [(user, ok) for _, user, ok in smtp_tls_server.handler.logins] == [(SMTP_USER, True)]


def test_wrong_password_is_permanent_and_never_shown(
    smtp_tls_server: SmtpPeer, tls_client_context: ssl.SSLContext
) -> None:
    wrong = "hunter2-not-the-password"
    email = notifier(
        smtp_tls_server,
        security="starttls",
        username=SMTP_USER,
        password=wrong,
        ssl_context=tls_client_context,
    )
    with pytest.raises(EmailError) as caught:
        email.send(development_alert())
    error = caught.value
    assert not error.transient
    assert error.status == "535"
    assert SMTP_USER in str(error)
    assert wrong not in str(error) and wrong not in repr(error)
    assert wrong not in repr(email)
    assert error.__cause__ is None and error.__suppress_context__
    assert smtp_tls_server.received == []


def test_untrusted_certificate_is_permanent(smtp_tls_server: SmtpPeer) -> None:
    email = notifier(smtp_tls_server, security="starttls", ssl_context=ssl.create_default_context())
    with pytest.raises(EmailError) as caught:
        email.send(development_alert())
    assert not caught.value.transient
    assert "certificate" in str(caught.value)


def test_starttls_required_but_not_offered_is_permanent(smtp_server: SmtpPeer) -> None:
    with pytest.raises(EmailError) as caught:
        notifier(smtp_server, security="starttls").send(development_alert())
    assert not caught.value.transient
    assert smtp_server.received == []


def test_plain_client_against_a_starttls_only_server_fails(smtp_tls_server: SmtpPeer) -> None:
    with pytest.raises(EmailError) as caught:
        notifier(smtp_tls_server).send(development_alert())
    # aiosmtpd answers "530 Must issue a STARTTLS command first": a configuration problem
    assert not caught.value.transient
    assert caught.value.status == "530"


def test_some_recipients_refused(smtp_server: SmtpPeer) -> None:
    email = notifier(smtp_server, recipients=["me@example.org", "refuse-bob@example.org"])
    confirmation = email.send(development_alert())
    assert confirmation.startswith("250 ")
    assert "refuse-bob@example.org" in confirmation and "550" in confirmation
    assert smtp_server.received[0].rcpt_tos == ["me@example.org"]


def test_all_recipients_refused_is_permanent(smtp_server: SmtpPeer) -> None:
    email = notifier(smtp_server, recipients=["refuse-a@example.org", "refuse-b@example.org"])
    with pytest.raises(EmailError) as caught:
        email.send(development_alert())
    assert not caught.value.transient
    assert caught.value.status == "550"
    assert "refuse-a@example.org" in str(caught.value)
    assert "refuse-b@example.org" in str(caught.value)
    assert smtp_server.received == []


def test_all_recipients_deferred_is_transient(smtp_server: SmtpPeer) -> None:
    email = notifier(smtp_server, recipients=["defer-a@example.org"])
    with pytest.raises(EmailError) as caught:
        email.send(development_alert())
    assert caught.value.transient
    assert caught.value.status == "450"


def test_a_recipient_deferred_while_others_were_settled_is_retried_alone(
    smtp_server: SmtpPeer,
) -> None:
    """Greylisting: boss is deferred once; me accepts; refuse-x is refused for good."""
    smtp_server.handler.greylist["boss@example.org"] = 1
    everyone = ["me@example.org", "boss@example.org", "refuse-x@example.org"]
    email = notifier(smtp_server, recipients=everyone)
    with pytest.raises(EmailError) as caught:
        email.send(development_alert())
    error = caught.value
    assert error.transient and error.status == "450"
    assert error.done == {"me@example.org", "refuse-x@example.org"}
    assert error.confirmation is not None and error.confirmation.startswith("250 ")
    assert "refuse-x@example.org (550" in error.confirmation
    assert "deferred: boss@example.org (450" in str(error)

    assert email.send(development_alert(), error.done).startswith("250 ")
    assert [mail.rcpt_tos for mail in smtp_server.received] == [
        ["me@example.org"],
        ["boss@example.org"],
    ]
    assert smtp_server.handler.rcpts == [*everyone, "boss@example.org"]
    first, second = (mail.message for mail in smtp_server.received)
    assert first["Message-ID"] == second["Message-ID"] and first["To"] == second["To"]


def test_deferred_and_refused_with_nobody_accepting_settles_no_one(
    smtp_server: SmtpPeer,
) -> None:
    """Nobody received it: the retry (or `monitor alerts retry`, once the server's refusal
    is fixed) sends it to every recipient again."""
    email = notifier(smtp_server, recipients=["refuse-a@example.org", "defer-b@example.org"])
    with pytest.raises(EmailError) as caught:
        email.send(development_alert())
    assert caught.value.transient and caught.value.status == "450"
    assert caught.value.done == frozenset() and caught.value.confirmation is None
    assert smtp_server.received == []


def test_a_server_trickling_its_greeting_is_cut_at_the_whole_exchanges_deadline() -> None:
    """Each byte comes well within the step timeout (0.2 s), but the greeting would take
    8 s: the exchange is cut at its own deadline, (10 steps + 1 recipient) x 0.2 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"220 " + b"x" * 156 + b"\r\n":
                if stop.wait(0.05):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    server = threading.Thread(target=trickle)
    server.start()
    email = EmailNotifier(
        "127.0.0.1", listener.getsockname()[1], "m@x.org", ["a@x.org"], timeout=0.2
    )
    started = time.monotonic()
    try:
        with pytest.raises(EmailError) as caught:
            email.send(development_alert())
    finally:
        stop.set()
        server.join(timeout=10)
        listener.close()
    assert caught.value.transient
    assert "timed out after 2.2s (the whole exchange)" in str(caught.value)
    assert time.monotonic() - started < 6.0  # (not the 8 s the greeting would take)


def test_black_hole_times_out_transiently(smtp_blackhole: int) -> None:
    email = EmailNotifier("127.0.0.1", smtp_blackhole, "m@x.org", ["a@x.org"], timeout=1.0)
    started = time.monotonic()
    with pytest.raises(EmailError) as caught:
        email.send(development_alert())
    elapsed = time.monotonic() - started
    assert caught.value.transient
    assert 0.5 < elapsed < 5.0
    assert f"127.0.0.1:{smtp_blackhole}" in str(caught.value)


def test_black_hole_with_implicit_tls_times_out(smtp_blackhole: int) -> None:
    email = EmailNotifier(
        "127.0.0.1", smtp_blackhole, "m@x.org", ["a@x.org"], security="tls", timeout=1.0
    )
    started = time.monotonic()
    with pytest.raises(EmailError) as caught:
        email.send(development_alert())
    assert caught.value.transient
    assert time.monotonic() - started < 5.0


def test_server_down_is_transient(closed_port: int) -> None:
    email = EmailNotifier("127.0.0.1", closed_port, "m@x.org", ["a@x.org"], timeout=1.0)
    with pytest.raises(DeliveryError) as caught:
        email.send(development_alert())
    assert isinstance(caught.value, EmailError)
    assert caught.value.transient
    assert "connection failed" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"security": "ssl"}, "security"),
        ({"recipients": []}, "recipient"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_construction(kwargs: dict[str, object], complaint: str) -> None:
    options: dict[str, object] = {"sender": "m@x.org", "recipients": ["a@x.org"]}
    options.update(kwargs)
    with pytest.raises(ValueError, match=complaint):
        EmailNotifier("127.0.0.1", 25, **options)  # type: ignore[arg-type]
