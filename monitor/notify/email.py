"""Deliver alerts by SMTP (smtplib), one message per alert.

This module only moves a rendered message (``monitor.render.render_email``) to an SMTP
server and translates what happens into ``EmailError``. It must not import storage, fetching
or other notifiers, and it never puts the password in a log line or an error message.

Every socket operation is bounded by ``timeout`` (smtplib's default is to wait forever):
the connection, the TLS handshake and each command, as the timeout is set on the socket.

Transient (retry): connection refused or reset, timeouts, a server that hangs up, TLS
handshake hiccups, any SMTP 4xx reply. Permanent: SMTP 5xx replies (including a refused
login), a server lacking STARTTLS or AUTH when they are configured, certificate errors.

Recipients one by one: a recipient refused for good (5xx) is named in the confirmation and
never tried again; one deferred (4xx, e.g. greylisting) while others accepted makes the
message go to the others and the attempt a transient error that lists as ``done`` those
accepted or refused for good, so that the retry goes to the deferred ones only (the
message is the same, To: header and Message-ID included).
"""

from __future__ import annotations

import email.policy
import io
import smtplib
import socket
import ssl
from email.generator import BytesGenerator
from email.message import EmailMessage
from typing import Any, Literal

from monitor.errors import EmailError
from monitor.render import AlertPayload, render_email

from .base import ExchangeDeadline, redact

__all__ = ["SMTP_STEPS", "EmailNotifier", "Security"]

#: SMTP steps an email attempt may take besides one RCPT per recipient: connect, EHLO,
#: STARTTLS, EHLO, AUTH (two replies), MAIL, DATA, the end of the data, QUIT. Each is
#: bounded by the timeout, and the whole exchange by this many (plus recipients) times it.
SMTP_STEPS = 10

Security = Literal["none", "starttls", "tls"]
Refusals = dict[str, tuple[int, str]]  # recipient -> (SMTP code, reply)


def _text(reply: bytes | str) -> str:
    raw = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(raw.split())


class _Watched:
    """A mixin for smtplib's clients: the socket goes to a deadline as soon as it is opened
    (the greeting is read in the constructor: a trickled one is cut too)."""

    def __init__(self, deadline: ExchangeDeadline, *args: Any, **kwargs: Any) -> None:
        self._deadline = deadline
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        opened: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._deadline.watch(opened)
        return opened


class _WatchedSMTP(_Watched, smtplib.SMTP):
    pass


class _WatchedSMTPSSL(_Watched, smtplib.SMTP_SSL):
    pass


class EmailNotifier:
    """Send each alert as one email to ``recipients`` through one SMTP server.

    ``ssl_context`` defaults to ``ssl.create_default_context()`` (certificate and host name
    checked); pass your own to trust a private CA.
    """

    channel = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        security: Security = "none",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        config: str | None = None,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"security must be none, starttls or tls, not {security!r}")
        if not recipients:
            raise ValueError("at least one recipient is needed")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = list(recipients)
        self.security: Security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self.config = config  # the config file the alerts' suggested commands name

    def __repr__(self) -> str:
        return (
            f"EmailNotifier(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, recipients={self.recipients!r})"
        )

    # -- public ---------------------------------------------------------------------------

    def send(self, payload: AlertPayload, done: frozenset[str] = frozenset()) -> str:
        """Deliver one alert to the recipients not in ``done``; return the server's reply to
        DATA, e.g. ``"250 OK"``, or raise ``EmailError`` (with ``done`` and a confirmation
        when some recipients accepted it and others were deferred)."""
        message = render_email(
            payload, sender=self.sender, recipients=self.recipients, config=self.config
        )
        recipients = [recipient for recipient in self.recipients if recipient not in done]
        if not recipients:
            return "every recipient done in earlier attempts"
        # The whole exchange is bounded too, not each step alone (`ExchangeDeadline`).
        seconds = self.timeout * (SMTP_STEPS + len(recipients))
        deadline = ExchangeDeadline(seconds)
        try:
            confirmation, deferred, settled = self._deliver(message, recipients, deadline)
        except EmailError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            if deadline.expired and isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
                raise self._error(
                    f"timed out after {seconds:g}s (the whole exchange)", transient=True
                ) from exc
            raise self._translated(exc) from exc
        finally:
            deadline.close()
        if deferred:
            raise EmailError(
                f"{self._where()}: deferred: {_describe(deferred)}; sent to the others: "
                f"{confirmation}",
                transient=True,
                status=str(next(iter(deferred.values()))[0]),
                done=settled,
                confirmation=confirmation,
            )
        return confirmation

    # -- the SMTP exchange ----------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _connect(self, deadline: ExchangeDeadline) -> smtplib.SMTP:
        where = {"host": self.host, "port": self.port, "timeout": self.timeout}
        if self.security == "tls":
            return _WatchedSMTPSSL(
                deadline, local_hostname=self._local_hostname, context=self._context(), **where
            )
        return _WatchedSMTP(deadline, local_hostname=self._local_hostname, **where)

    def _deliver(
        self, message: EmailMessage, recipients: list[str], deadline: ExchangeDeadline
    ) -> tuple[str, Refusals, frozenset[str]]:
        smtp = self._connect(deadline)
        try:
            smtp.ehlo()
            if self.security == "starttls":
                # starttls() raises SMTPNotSupportedError when the server does not offer it,
                # so credentials are never sent in the clear by mistake.
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username is not None:
                self._login(smtp)
            outcome = self._transaction(smtp, message, recipients)
        except BaseException:
            smtp.close()  # no QUIT: the peer may be the reason we are here
            raise
        _quit(smtp)
        return outcome

    def _login(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.login(self.username or "", self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise self._reply_error(
                exc.smtp_code, exc.smtp_error, f"login as {self.username!r} failed"
            ) from None  # the chained exception could carry the AUTH exchange

    def _transaction(
        self, smtp: smtplib.SMTP, message: EmailMessage, recipients: list[str]
    ) -> tuple[str, Refusals, frozenset[str]]:
        """The message to ``recipients``: the reply to DATA, the recipients deferred, and
        those settled (accepted, or refused for good)."""
        data, international = _flatten(message)
        options: list[str] = []
        if international:
            if not smtp.has_extn("smtputf8"):
                raise self._error(
                    "an address is not ASCII and the server lacks SMTPUTF8", transient=False
                )
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        code, reply = smtp.mail(self.sender, options)
        if code != 250:
            smtp.rset()
            raise self._reply_error(code, reply, f"sender {self.sender!r} refused")
        accepted: list[str] = []
        deferred: Refusals = {}
        refused: Refusals = {}
        for recipient in recipients:
            code, reply = smtp.rcpt(recipient)
            if code in (250, 251):
                accepted.append(recipient)
            elif 400 <= code < 500:
                deferred[recipient] = (code, _text(reply))
            else:
                refused[recipient] = (code, _text(reply))
        if not accepted:
            smtp.rset()
            first = next(iter((deferred or refused).values()))
            # Nobody received it: nothing is settled, so that `monitor alerts retry` (once the
            # server accepts them) sends it to everyone again.
            raise EmailError(
                f"{self._where()}: every recipient refused: {_describe({**refused, **deferred})}",
                transient=bool(deferred),
                status=str(first[0]),
                channel_works=True,
            )
        code, reply = smtp.data(data)
        if code != 250:
            raise self._reply_error(code, reply, "message refused")
        confirmation = f"{code} {_text(reply)}"
        if refused:
            confirmation += f" (refused: {_describe(refused)})"
        return confirmation, deferred, frozenset(accepted) | frozenset(refused)

    # -- errors ---------------------------------------------------------------------------

    def _translated(self, exc: smtplib.SMTPException | OSError) -> EmailError:
        """What an exception of the SMTP exchange means for the delivery."""
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._reply_error(exc.smtp_code, exc.smtp_error, "the server refused")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return self._error(f"server does not support it: {exc}", transient=False)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return self._error(f"connection lost: {exc}", transient=True)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self._error(f"TLS certificate rejected: {exc}", transient=False)
        if isinstance(exc, TimeoutError):
            return self._error(f"timed out after {self.timeout:g}s", transient=True)
        if isinstance(exc, OSError):  # refused, reset, unreachable, DNS, TLS handshake failure
            return self._error(f"connection failed: {exc}", transient=True)
        return self._error(str(exc), transient=False)  # "No suitable authentication method"

    def _where(self) -> str:
        return f"SMTP {self.host}:{self.port}"

    def _error(self, detail: str, *, transient: bool, status: str | None = None) -> EmailError:
        message = redact(f"{self._where()}: {detail}", self._password)
        return EmailError(message, transient=transient, status=status)

    def _reply_error(self, code: int, reply: bytes | str, what: str) -> EmailError:
        return self._error(
            f"{what}: {code} {_text(reply)}", transient=400 <= code < 500, status=str(code)
        )


def _describe(refused: Refusals) -> str:
    return "; ".join(f"{rcpt} ({code} {reply})" for rcpt, (code, reply) in refused.items())


def _flatten(message: EmailMessage) -> tuple[bytes, bool]:
    """The message as CRLF bytes, and whether it needs SMTPUTF8 (a non-ASCII address)."""
    addresses = " ".join(str(message.get(h, "")) for h in ("From", "To"))
    international = not addresses.isascii()
    policy = email.policy.SMTPUTF8 if international else email.policy.SMTP
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=policy).flatten(message, linesep="\r\n")
    return buffer.getvalue(), international


def _quit(smtp: smtplib.SMTP) -> None:
    """QUIT politely after a delivery; the message is already accepted, so ignore failures."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
