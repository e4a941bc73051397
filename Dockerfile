# gridq images: one Dockerfile, three targets.
#
#   docker build --target hub    -t gridq-hub .
#   docker build --target node   -t gridq-node .
#   docker build --target worker -t gridq-worker .     # also the default (last) stage
#
# Users build their own workers on top of gridq-worker:
#   FROM gridq-worker
#   COPY myjobs.py /app/
#   CMD ["gridq", "worker", "myjobs:app"]
#
# BASE_IMAGE must be a Debian-like image with python3 >= 3.11 and its venv module.
# The official image is the default; CI, which cannot reach a registry, passes a
# debootstrap-built one (scripts/build-images.sh). Multi-arch:
#   docker buildx build --platform linux/amd64,linux/arm64 --target worker -t REG/gridq-worker --push .
# (see docs/deployment.md: every binary in the image comes from a platform-specific wheel
# installed *inside* the build, never copied from the build host).
#
# Written for the legacy builder too (no BuildKit-only syntax: no --mount, no heredocs).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: the venv
FROM ${BASE_IMAGE} AS build
# .dockerignore admits only the package sources and build/wheels, so this copy is small.
COPY . /src
# If build/wheels holds wheels (scripts/build-images.sh fills it on the host), install
# offline from them only; otherwise fetch from the index as any pip install would.
# dumb-init comes as a manylinux wheel that carries the static binary for the target
# platform: an init for PID 1 without apt, identical on every base image.
RUN set -eu; \
    python3 -m venv /opt/gridq; \
    if ls /src/build/wheels/gridq-*.whl >/dev/null 2>&1; then \
      /opt/gridq/bin/pip install --no-cache-dir --disable-pip-version-check -q \
        --no-index --find-links /src/build/wheels gridq dumb-init; \
    else \
      /opt/gridq/bin/pip install --no-cache-dir --disable-pip-version-check -q /src dumb-init; \
    fi; \
    # pip stays: images built FROM gridq-worker install their handlers' dependencies
    # with it. Test folders some packages ship are dead weight.
    find /opt/gridq -depth -type d -name tests -path '*/site-packages/*/tests' -exec rm -rf {} +; \
    cp /src/deploy/docker/healthcheck.py /opt/gridq/bin/gridq-healthcheck; \
    cp /src/deploy/docker/node-entrypoint.py /opt/gridq/bin/gridq-node-entrypoint; \
    chmod 0755 /opt/gridq/bin/gridq-healthcheck /opt/gridq/bin/gridq-node-entrypoint

# ---------------------------------------------------------------- runtime: common to all
FROM ${BASE_IMAGE} AS runtime
# A fixed uid/gid so that bind mounts and socket permissions can be planned for.
RUN groupadd --system --gid 10001 gridq \
 && useradd --system --uid 10001 --gid gridq --create-home --home-dir /home/gridq \
      --shell /usr/sbin/nologin gridq \
 && mkdir -p /var/lib/gridq /app \
 && chown gridq:gridq /var/lib/gridq /app
COPY --from=build /opt/gridq /opt/gridq
# PATH is spelled out: an image made by `docker import` has no PATH to extend.
ENV PATH=/opt/gridq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8
USER gridq
WORKDIR /app
# dumb-init as PID 1 forwards SIGTERM to gridq (which then drains) and reaps zombies:
# a handler that starts processes must not leave defunct children behind.
ENTRYPOINT ["dumb-init", "--"]

# ---------------------------------------------------------------- hub
FROM runtime AS hub
EXPOSE 8080
# The hub's /health answers 200 only when Redis answers too. gridq-healthcheck is a
# stdlib script (deploy/docker/healthcheck.py): it starts in a fraction of the time the
# full CLI takes, which matters for a probe that runs every few seconds.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["gridq-healthcheck", "hub"]
CMD ["gridq", "hub", "--bind", "0.0.0.0:8080"]

# ---------------------------------------------------------------- node
FROM runtime AS node
# The agent's state (its id, the containers it started) survives a container restart.
ENV GRIDQ_NODE_STATE_DIR=/var/lib/gridq/node
# /metrics and /health of the agent (GRIDQ_NODE_METRICS_BIND, default 0.0.0.0:9101).
EXPOSE 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["gridq-healthcheck", "node"]
# The agent needs the Docker socket's group, which differs from host to host: the
# entrypoint starts as root, reads the socket's gid, joins it and drops to gridq
# (deploy/docker/node-entrypoint.py). `--user`/`user:` skips the drop.
USER root
ENTRYPOINT ["dumb-init", "--", "gridq-node-entrypoint"]
CMD ["gridq", "node", "--runtime", "docker"]

# ---------------------------------------------------------------- worker (default target)
FROM runtime AS worker
# `gridq worker myjobs:app` imports myjobs from /app, where user images copy their code.
# The node sets GRIDQ_METRICS_PORT for the workers it starts; the default makes a plain
# `docker run` serve /metrics and /health too, so the HEALTHCHECK has something to ask.
ENV PYTHONPATH=/app \
    GRIDQ_METRICS_PORT=9100
EXPOSE 9100
# The worker's own probe: GET /health on GRIDQ_METRICS_PORT (200 only while the worker's
# lease heartbeat is fresh), or, without a metrics port, its lease key in Redis.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["gridq", "worker", "--check"]
CMD ["gridq", "worker", "--help"]
