# syntax=docker/dockerfile:1
# monitor: the daemon, with the default topic, feeds and seeds, as a non-root service.
#   docker compose up            (see docker-compose.yml: monitor + Mailpit + Datasette)
#   docker build -t monitor . && docker run -v monitor-data:/data monitor

# -- build: locked dependencies (hash-checked) into a virtual environment, then the package
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.lock /src/requirements.lock
RUN /opt/venv/bin/pip install --require-hashes -r /src/requirements.lock
COPY pyproject.toml README.md /src/
COPY monitor /src/monitor
RUN /opt/venv/bin/pip install --no-deps /src

# -- run
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin monitor \
 && mkdir -p /data /app \
 && chown monitor:monitor /data
COPY --from=build /opt/venv /opt/venv
COPY config /app/config
COPY seeds /app/seeds
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MONITOR_CONFIG=/app/config/docker.toml \
    MONITOR_DB=/data/monitor.db
VOLUME ["/data"]
USER monitor:monitor
# /healthz and /metrics ([service] listen in config/docker.toml)
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 \
    CMD ["python", "-m", "monitor.healthcheck", "http://127.0.0.1:8080/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["monitor"]
CMD ["run"]
