# syntax=docker/dockerfile:1
#
# prismgate's container image: the wheel built from this checkout, installed with the
# extras a fleet uses (PostgreSQL, Redis, S3, OpenTelemetry) into a slim Python runtime.
#
#   docker build -t prismgate:dev .
#   docker run --rm -p 4000:4000 -e PRISMGATE_MASTER_KEY=... \
#     -v "$PWD/config.yaml:/etc/prismgate/config.yaml:ro" prismgate:dev
#
# The config is read from /etc/prismgate/config.yaml (mount it; none is baked in) and
# secrets come from the environment (`os.environ/NAME` in the config). The image holds no
# secret. tests/deploy/test_packaging.py lints this file (no Docker engine in CI).
#
# The base image is pinned to an exact tag. To pin its digest too, pass the tag with the
# digest you have checked (`docker buildx imagetools inspect python:3.12.12-slim-trixie`):
#   docker build --build-arg PYTHON_IMAGE=python:3.12.12-slim-trixie@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.12.12-slim-trixie

# --- build: the wheel, then a virtualenv with it and its extras ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir \
        "$(ls /dist/prismgate-*.whl)[postgres,redis,s3,otel]" \
    && /opt/venv/bin/prismgate --version

# --- runtime: the virtualenv, a non-root user, nothing else ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="prismgate" \
      org.opencontainers.image.description="An OpenAI-compatible gateway for image generation and vision." \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric user, so that Kubernetes' runAsNonRoot can check it. Its home is the
# working directory: the gateway's data_dir (spend-log spool, the embedded SQLite of a
# single instance) and the local image store default to folders under it.
RUN groupadd --system --gid 10001 prismgate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/prismgate \
        --shell /usr/sbin/nologin prismgate \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/prismgate \
    && install -d -m 0755 /etc/prismgate
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/prismgate
USER 10001:10001
EXPOSE 4000
# The gateway drains on SIGTERM (readiness answers 503, in-flight calls finish, the spend
# log is flushed): give it the time (`docker stop -t`, compose's stop_grace_period,
# Kubernetes' terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# Python's urllib, not curl: nothing is installed for the check. Non-2xx raises: unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4000/health/liveliness', timeout=4)"]
ENTRYPOINT ["prismgate"]
CMD ["serve", "--config", "/etc/prismgate/config.yaml", "--host", "0.0.0.0", "--port", "4000"]
