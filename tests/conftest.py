"""Shared fixtures: real local peers (feed server, SMTP, webhook receiver)."""

pytest_plugins = ["tests.peers", "tests.feedserver"]
