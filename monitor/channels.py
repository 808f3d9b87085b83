"""Build the configured notifiers from `[alerts]` and the environment.

Secrets never sit in the config file: `*_env` keys name environment variables, read here,
once, when the channels are built. A named variable that is not set (or is empty) is a
`ConfigError` naming the key and the variable; every secret read is registered with
`monitor.log` so that it is replaced by ``***`` should it ever reach a log line.

Channel names key the `deliveries` rows, so they are stable across restarts and never hold
a secret: ``email``, ``webhook:<host>[:<port>]`` (``webhook:<host>[:<port>]/<n>`` when two
webhooks share a host; n is the position in `[[alerts.webhooks]]`) and ``apprise:<n>``.

This module only builds objects; it sends nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .config import AlertSettings
from .errors import ConfigError
from .log import register_secret

if TYPE_CHECKING:
    from .notify.base import Notifier


def build_channels(
    alerts: AlertSettings,
    environ: Mapping[str, str] | None = None,
    *,
    source: Path | None = None,
) -> list[Notifier]:
    """Every configured channel, in config order: email, then webhooks, then Apprise."""
    env = os.environ if environ is None else environ
    where = f"{source}: " if source else ""
    # named in the commands an alert suggests (`monitor --config ... feedback`), whatever
    # folder the reader runs them from
    config = str(source.resolve()) if source else None
    channels: list[Notifier] = []

    if alerts.email is not None:
        from .notify.email import EmailNotifier

        email = alerts.email
        username = _secret(env, "alerts.email.username_env", email.username_env, where)
        password = _secret(env, "alerts.email.password_env", email.password_env, where)
        if password is not None and username is None:
            raise ConfigError(f"{where}alerts.email.password_env: set username_env as well")
        try:
            channels.append(
                EmailNotifier(
                    email.host,
                    email.port,
                    email.sender,
                    list(email.recipients),
                    security=email.security,
                    username=username,
                    password=password,
                    timeout=email.timeout,
                    config=config,
                )
            )
        except ValueError as error:
            raise ConfigError(f"{where}alerts.email: {error}") from None

    if alerts.webhooks:
        from .notify.webhook import WebhookNotifier

        hooks: list[WebhookNotifier] = []
        for index, hook in enumerate(alerts.webhooks):
            key = f"alerts.webhooks[{index}]"
            secret = _secret(env, f"{key}.secret_env", hook.secret_env, where)
            if secret is None:
                raise ConfigError(
                    f"{where}{key}.secret_env: missing (webhooks are signed; name the "
                    "environment variable that holds the signing secret)"
                )
            shared = any(
                _same_host(hook.url, other.url)
                for position, other in enumerate(alerts.webhooks)
                if position != index
            )
            try:
                notifier = WebhookNotifier(hook.url, secret, hook.timeout)
                if shared:  # two webhooks on one host: tell them apart by position
                    name = f"{notifier.channel.removeprefix('webhook:')}/{index}"
                    notifier.close()
                    notifier = WebhookNotifier(hook.url, secret, hook.timeout, name=name)
            except ValueError as error:
                raise ConfigError(f"{where}{key}: {error}") from None
            hooks.append(notifier)
        channels.extend(hooks)

    if alerts.apprise:
        from .notify.apprise import AppriseNotifier

        for index, group in enumerate(alerts.apprise):
            key = f"alerts.apprise[{index}]"
            urls = list(group.urls)
            extra = _secret(env, f"{key}.urls_env", group.urls_env, where)
            if extra:
                urls += extra.split()
            for url in urls:
                register_secret(url)  # tokens live in the URLs themselves
            try:
                channels.append(AppriseNotifier(urls, index, config))
            except ValueError as error:
                raise ConfigError(f"{where}{key}: {error}") from None

    return channels


def _secret(env: Mapping[str, str], key: str, variable: str | None, where: str) -> str | None:
    """The value of the environment variable a `*_env` key names (None when no key)."""
    if variable is None:
        return None
    value = env.get(variable)
    if not value:
        raise ConfigError(
            f"{where}{key}: the environment variable {variable} is not set "
            f'(the config names it in {key} = "{variable}")'
        )
    register_secret(value)
    return value


def _same_host(one: str, other: str) -> bool:
    a, b = urlsplit(one), urlsplit(other)
    return (a.hostname, a.port) == (b.hostname, b.port)
