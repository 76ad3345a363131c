# syntax=docker/dockerfile:1
# One image runs every Pulse service and the migrations:
#   docker run pulse:dev run ingest      (any name in services.common.constants.SERVICES)
#   docker run pulse:dev migrate         (needs a superuser PULSE_MIGRATE_DATABASE_URL)
# Build from the repository root: docker build -t pulse:dev .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: resolve and install the runtime dependencies into a venv (no dev extras) ---
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY services/ services/
COPY simulator/ simulator/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c constraints.txt .

# --- runtime: the venv plus the source tree, run as an unprivileged user ---
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="pulse" \
      org.opencontainers.image.description="Pulse edge telemetry platform: every service in one image" \
      org.opencontainers.image.licenses="Apache-2.0"

# The code runs from /app (PYTHONPATH) rather than from site-packages: the migration runner
# finds db/migrations next to the source tree. The installed distribution supplies the
# `pulse` entry point and the dependencies.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --gid 10001 pulse \
 && useradd --uid 10001 --gid 10001 --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin pulse

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Owned by root and read-only to the service user.
COPY pyproject.toml README.md ./
COPY db/ db/
COPY services/ services/
COPY simulator/ simulator/
# Byte-code compiled at build time, since the running user cannot write here.
RUN python -m compileall -q services simulator

USER 10001:10001
EXPOSE 8080

# slim has no curl; the stdlib is enough. PULSE_HTTP_PORT is expanded by /bin/sh at run time.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${PULSE_HTTP_PORT:-8080}/healthz', timeout=3).status == 200 else 1)"

ENTRYPOINT ["pulse"]
CMD ["run", "ui"]
