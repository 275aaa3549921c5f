# syntax=docker/dockerfile:1
# Specwatch in one image: `specwatch serve` (API + dashboard, the default command),
# `specwatch worker` (outbox delivery, change detection, alerts) and `specwatch db upgrade`.
# compose.yaml runs all three; tests/test_deploy.py lints this file, checks its shape and
# runs the commands it would run, from the wheel, as a non-root user.
#
#   docker build -t specwatch .
#   docker run --rm -e SPECWATCH_DATABASE_URL=postgresql://… specwatch db upgrade

# --- build: the project's wheel and every dependency's, for the final stage -----------------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
# Every dependency of [server] is published as a binary wheel (the deploy test installs with
# --only-binary), so this stage needs no compiler either.
COPY . .
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels ".[server]"

# --- final: wheels only; no source tree, no build tools, no pip cache ------------------------
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="specwatch" \
      org.opencontainers.image.description="Continuous metric verification: API, dashboard, worker"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SPECWATCH_LOG_FORMAT=json
# /wheels holds exactly specwatch[server] and its dependencies: install them all, from there
# only (--no-index). Bind-mounted from the build stage, they never become a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --disable-pip-version-check --no-index --find-links=/wheels \
        /wheels/*.whl
# A fixed, numeric uid (orchestrators can check runAsNonRoot); the code in site-packages stays
# root's and read-only to it, /app (home and working directory: a SQLite file in a quick
# `docker run`) is its own.
RUN useradd --no-log-init --system --uid 10001 --user-group --home-dir /app \
        --shell /usr/sbin/nologin specwatch \
    && install -d -o specwatch -g specwatch -m 0750 /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Liveness of the server (no curl in a slim image); compose's api checks /readyz instead, and
# its worker and migrate services, which serve nothing, disable this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["specwatch"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
