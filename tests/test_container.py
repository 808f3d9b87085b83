"""The container set-up, checked statically (no Docker engine is needed).

docker-compose.yml is parsed and validated against the Compose specification's JSON
schema (the copy that the `check-jsonschema` package ships; skipped, saying so, when that
package is not installed). The Dockerfile is parsed instruction by instruction.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the exec (JSON) form: {arguments}"
    return [str(item) for item in value]


# -- docker-compose.yml -----------------------------------------------------------------------


def test_compose_services_and_shared_volume() -> None:
    data = compose()
    services = data["services"]
    assert {"monitor", "mailpit", "datasette"} <= set(services)
    assert "monitor-data" in data["volumes"]

    monitor = services["monitor"]
    assert monitor["build"] == "."
    assert "monitor-data:/data" in monitor["volumes"]
    assert monitor["environment"]["MONITOR_DB"] == "/data/monitor.db"
    # `environment` wins over `env_file`: the config .env may name must be substituted in
    config = re.fullmatch(
        r"\$\{MONITOR_CONFIG:-(/app/config/[\w.-]+)\}", monitor["environment"]["MONITOR_CONFIG"]
    )
    assert config, monitor["environment"]["MONITOR_CONFIG"]
    assert (ROOT / "config" / Path(config.group(1)).name).is_file()
    env_files = monitor["env_file"]
    assert any(
        (item == ".env") or (isinstance(item, dict) and item.get("path") == ".env")
        for item in env_files
    )

    mailpit = services["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit")
    assert any(str(port).endswith(":8025") for port in mailpit["ports"])

    datasette = services["datasette"]
    # read-write: a WAL database's -shm file may have to be created to read it (Datasette
    # opens it read-only itself)
    assert "monitor-data:/data" in datasette["volumes"]
    command = datasette["command"]
    assert "/data/monitor.db" in command
    metadata = command[command.index("--metadata") + 1]
    assert metadata == "/app/config/datasette.yml"
    assert (ROOT / "config" / "datasette.yml").is_file()
    assert "-i" not in command and "--immutable" not in command
    assert datasette["depends_on"]["monitor"]["condition"] == "service_healthy"
    assert "healthcheck" in datasette, "the image's own health check is for the daemon"


def test_compose_monitor_command_is_a_monitor_command() -> None:
    from monitor.cli import main

    command = compose()["services"]["monitor"].get("command", ["run"])
    assert command[0] in main.commands


def test_compose_validates_against_the_compose_specification() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    try:
        from importlib.resources import files

        schema_file = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        pytest.skip(
            "the Compose specification schema comes from the check-jsonschema package "
            "(pip install check-jsonschema), which is not installed"
        )
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


# -- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_base_and_locked_install() -> None:
    steps = dockerfile()
    bases = [args for keyword, args in steps if keyword == "FROM"]
    assert bases and all(re.match(r"python:3\.1[1-3]-slim", base) for base in bases)
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert "--require-hashes -r /src/requirements.lock" in runs
    for keyword, args in steps:
        if keyword == "COPY" and not args.startswith("--from"):
            for source in shlex.split(args)[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerfile_runs_as_non_root_with_a_data_volume() -> None:
    stage = final_stage()
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    volumes = [args for keyword, args in stage if keyword == "VOLUME"]
    assert any("/data" in volume for volume in volumes)
    env = " ".join(args for keyword, args in stage if keyword == "ENV")
    assert "MONITOR_DB=/data/monitor.db" in env
    match = re.search(r"MONITOR_CONFIG=(\S+)", env)
    assert match
    assert (ROOT / "config" / Path(match.group(1)).name).is_file()


def test_dockerfile_healthcheck_probes_healthz_on_the_configured_port() -> None:
    stage = final_stage()
    checks = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD")
    assert "--interval" in options and "--timeout" in options
    argv = exec_form(command.strip())
    assert argv[:3] == ["python", "-m", "monitor.healthcheck"]
    url = argv[3]
    assert url.endswith("/healthz")
    settings = load_settings(ROOT / "config" / "docker.toml")
    assert settings.service.listen is not None
    port = settings.service.listen.rpartition(":")[2]
    assert f":{port}/" in url
    exposed = [args for keyword, args in stage if keyword == "EXPOSE"]
    assert any(port in args.split() for args in exposed)


def test_dockerfile_command_is_a_real_monitor_command() -> None:
    from monitor.cli import main

    stage = final_stage()
    entrypoint = exec_form(next(args for keyword, args in stage if keyword == "ENTRYPOINT"))
    cmd = exec_form(next(args for keyword, args in stage if keyword == "CMD"))
    assert entrypoint == ["monitor"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["monitor"] == "monitor.cli:entry"  # runs main
    assert cmd == ["run"]
    assert cmd[0] in main.commands


# -- the container's config and secrets ------------------------------------------------------


def test_docker_config_mirrors_the_default_config() -> None:
    default = load_settings(ROOT / "config" / "monitor.toml")
    docker = load_settings(ROOT / "config" / "docker.toml")
    assert docker.topics == default.topics
    assert docker.feeds == default.feeds
    assert docker.polling == default.polling
    assert docker.alerts.email is not None
    assert docker.alerts.email.host == "mailpit"
    assert "mailpit" in compose()["services"]
    assert docker.alerts.email.port == 1025
    assert docker.service.listen is not None
    assert docker.service.listen.startswith("0.0.0.0:")


def test_secrets_stay_out_of_git_and_the_image() -> None:
    assert (ROOT / ".env.example").is_file()
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in gitignore
    dockerignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".git", ".venv"} <= set(dockerignore)
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert not value.strip(), f".env.example: {name} must not carry a value"
