#!/usr/bin/env bash
# Build the container images the tests use, locally: this machine has no registry.
#
#   scripts/build-test-images.sh [all|busybox|base|worker|celery]     (default: all)
#
# Images (tags are a contract with tests/ and deploy/; keep them stable):
#   gridq-test-base:bookworm          Debian bookworm minbase + python3, python3-venv (debootstrap)
#   gridq-worker:test                 FROM the base: gridq installed offline from host-built wheels
#   gridq-celery:test                 FROM gridq-worker:test: celery[redis] (offline, host-built wheels)
#                                     and tests/celery/gridq_celery_proj.py in /app; CMD gridq celery worker
#   gridq-test-busybox:amd64          FROM scratch + busybox-static (amd64): crash / OOM / sleep tests
#   gridq-test-busybox:arm64          busybox-static for arm64, image config says arm64
#   gridq-test-busybox:arm64-mislabelled  the same binary in an image whose config says amd64
#                                     (what a careless cross-build produces): runs into exec format error
#
# Idempotent: an image whose tag exists is kept. gridq-worker:test carries a label with a
# hash of the gridq sources and is rebuilt when they change (a few seconds once the base exists);
# gridq-celery:test is rebuilt when gridq-worker:test, the test app or the Celery version changes.
# Needs: docker (engine running), debootstrap, busybox-static, dpkg/apt (for the arm64 binary),
# python3 with pip (wheels; GRIDQ_PYTHON selects the interpreter, default: the venv's or python3;
# GRIDQ_IMAGE_PYTHON the one for the Celery wheels, default: a host python3 of the image's version).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
CACHE=${GRIDQ_IMAGE_CACHE:-/var/cache/gridq-test-images}
PY=${GRIDQ_PYTHON:-}
if [ -z "$PY" ]; then
  for cand in "$ROOT/.venv/bin/python" /work/venv/bin/python python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
mkdir -p "$CACHE"
export DOCKER_BUILDKIT=0   # the legacy builder: buildx is not installable here

have() { docker image inspect "$1" >/dev/null 2>&1; }
log() { echo "[build-test-images] $*"; }

build_busybox() {
  if ! have gridq-test-busybox:amd64; then
    local bb
    bb=$(command -v busybox)
    [ -n "$bb" ] || { echo "busybox-static is not installed" >&2; exit 1; }
    local d; d=$(mktemp -d)
    cp "$bb" "$d/busybox"
    # exec-form RUN works in a scratch image once the static binary is there.
    cat >"$d/Dockerfile" <<'EOF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/sbin", "/usr/sbin", "/tmp"]
RUN ["/bin/busybox", "--install", "-s"]
ENV PATH=/bin:/usr/bin:/sbin:/usr/sbin
CMD ["sh"]
EOF
    docker build -q --force-rm -t gridq-test-busybox:amd64 "$d" >/dev/null
    rm -rf "$d"
    log "built gridq-test-busybox:amd64"
  fi
  if ! have gridq-test-busybox:arm64 || ! have gridq-test-busybox:arm64-mislabelled; then
    local bin="$CACHE/busybox-arm64"
    if [ ! -s "$bin" ]; then
      local d; d=$(mktemp -d); chmod 755 "$d"  # apt-get download runs as _apt
      if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        dpkg --add-architecture arm64
      fi
      # Only the arm64 index is needed; an update limited to it is fast.
      apt-get update -qq -o APT::Architectures=arm64 >/dev/null 2>&1 || apt-get update -qq >/dev/null
      (cd "$d" && apt-get download -qq busybox-static:arm64 >/dev/null)
      dpkg-deb -x "$d"/busybox-static_*_arm64.deb "$d/x"
      cp "$d/x/bin/busybox" "$bin"
      rm -rf "$d"
    fi
    local d; d=$(mktemp -d)
    mkdir -p "$d/bin"
    cp "$bin" "$d/bin/busybox"
    tar -C "$d" -c . | docker import \
      -c 'CMD ["/bin/busybox", "echo", "hello from arm64"]' - gridq-test-busybox:arm64-mislabelled >/dev/null
    # docker import records the host's architecture (its --platform is ignored by engine
    # 20.10), which is how a mislabelled image comes about. For the honest arm64 image,
    # rewrite the image config's architecture in a `docker save` archive and load it back.
    docker save gridq-test-busybox:arm64-mislabelled -o "$d/img.tar"
    mkdir "$d/img" && tar -C "$d/img" -xf "$d/img.tar"
    "$PY" - "$d/img" <<'PYEOF'
import hashlib, json, os, sys
root = sys.argv[1]
manifest = json.load(open(os.path.join(root, "manifest.json")))
old = manifest[0]["Config"]
cfg = json.load(open(os.path.join(root, old)))
cfg["architecture"] = "arm64"
cfg["variant"] = "v8"
data = json.dumps(cfg).encode()
new = hashlib.sha256(data).hexdigest() + ".json"
open(os.path.join(root, new), "wb").write(data)
os.remove(os.path.join(root, old))
manifest[0]["Config"] = new
manifest[0]["RepoTags"] = ["gridq-test-busybox:arm64"]
json.dump(manifest, open(os.path.join(root, "manifest.json"), "w"))
for extra in ("repositories", "index.json", "oci-layout"):
    if os.path.exists(os.path.join(root, extra)) and extra == "repositories":
        os.remove(os.path.join(root, extra))
PYEOF
    tar -C "$d/img" -c . | docker load -q >/dev/null
    rm -rf "$d"
    log "built gridq-test-busybox:arm64 and :arm64-mislabelled"
  fi
}

build_base() {
  have gridq-test-base:bookworm && return 0
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
  local rootfs="$CACHE/rootfs-bookworm"
  if [ ! -f "$rootfs/.complete" ]; then
    rm -rf "$rootfs"
    log "debootstrap bookworm (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" >"$CACHE/debootstrap.log" 2>&1 || {
      tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # Shrink the layer: apt lists and caches are not needed at run time.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$rootfs/.complete"
  fi
  tar -C "$rootfs" --exclude=./.complete -c . |
    docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - gridq-test-base:bookworm >/dev/null
  log "built gridq-test-base:bookworm"
}

src_hash() {
  find gridq hub node worker -name '*.py' -o -name 'py.typed' | LC_ALL=C sort |
    xargs sha256sum pyproject.toml | sha256sum | cut -c1-16
}

build_worker() {
  build_base
  local h; h=$(src_hash)
  if have gridq-worker:test; then
    local cur
    cur=$(docker image inspect -f '{{ index .Config.Labels "gridq.src-hash" }}' gridq-worker:test)
    [ "$cur" = "$h" ] && return 0
  fi
  local d; d=$(mktemp -d)
  # Build from a copy so that no build/ or egg-info appears in the working tree.
  mkdir -p "$d/src"
  cp -r pyproject.toml README.md gridq hub node worker "$d/src/"
  find "$d/src" -name __pycache__ -prune -exec rm -rf {} +
  log "building wheels"
  "$PY" -m pip wheel -q --disable-pip-version-check "$d/src" -w "$d/wheels" 2>&1 >/dev/null |
    grep -v 'is ignored: it is neither' >&2 || true
  [ -n "$(ls "$d"/wheels/gridq-*.whl 2>/dev/null)" ] || { echo "building the gridq wheel failed" >&2; exit 1; }
  # Dependencies behind environment markers the host does not meet but the image does:
  # Debian bookworm's python is 3.11.2, and redis needs async-timeout before 3.11.3.
  "$PY" -m pip wheel -q --disable-pip-version-check "async-timeout>=4.0.3" -w "$d/wheels" 2>&1 >/dev/null |
    grep -v 'is ignored: it is neither' >&2 || true
  cat >"$d/Dockerfile" <<'EOF'
ARG BASE_IMAGE=gridq-test-base:bookworm
FROM ${BASE_IMAGE}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/gridq \
 && /opt/gridq/bin/pip install -q --no-index --find-links /tmp/wheels gridq \
 && rm -rf /tmp/wheels /root/.cache
ENV PATH=/opt/gridq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1
ARG SRC_HASH=unknown
LABEL gridq.src-hash=${SRC_HASH}
CMD ["gridq", "--help"]
EOF
  docker build -q --force-rm --build-arg SRC_HASH="$h" -t gridq-worker:test "$d" >/dev/null
  rm -rf "$d"
  log "built gridq-worker:test ($h)"
}

# The Celery version the tests' producers use (the venv's), else the dev extra's floor.
celery_req() {
  local v
  v=$("$PY" -c 'import celery; print(celery.__version__)' 2>/dev/null) || v=
  if [ -n "$v" ]; then echo "celery[redis]==$v"; else echo "celery[redis]>=5.4"; fi
}

# An interpreter of the image's own python version (Debian bookworm: 3.11.2), so that the
# environment markers of Celery's dependencies resolve for the image, not for the host.
image_python() {
  if [ -n "${GRIDQ_IMAGE_PYTHON:-}" ]; then echo "$GRIDQ_IMAGE_PYTHON"; return; fi
  local want cand
  want=$(docker run --rm --network none gridq-worker:test python3 -c \
    'import platform; print(platform.python_version())')
  for cand in /usr/bin/python3 python3 "$PY"; do
    if command -v "$cand" >/dev/null 2>&1 &&
      [ "$("$cand" -c 'import platform; print(platform.python_version())')" = "$want" ] &&
      "$cand" -m pip --version >/dev/null 2>&1; then
      echo "$cand"; return
    fi
  done
  log "no host python $want with pip: Celery wheels from $PY (GRIDQ_IMAGE_PYTHON selects one)" >&2
  echo "$PY"
}

build_celery() {
  build_worker
  local req h
  req=$(celery_req)
  h=$({
    docker image inspect -f '{{ .Id }}' gridq-worker:test
    echo "$req"
    sha256sum tests/celery/gridq_celery_proj.py
  } | sha256sum | cut -c1-16)
  if have gridq-celery:test; then
    local cur
    cur=$(docker image inspect -f '{{ index .Config.Labels "gridq.celery-hash" }}' gridq-celery:test)
    [ "$cur" = "$h" ] && return 0
  fi
  local ipy; ipy=$(image_python)
  # The wheels do not change with gridq's sources: kept in the cache per requirement and
  # interpreter, so a rebuild after a source change takes seconds.
  local wheels
  wheels="$CACHE/celery-wheels-$(printf '%s %s' "$req" "$("$ipy" -V 2>&1)" | sha256sum | cut -c1-12)"
  if [ ! -f "$wheels/.complete" ]; then
    rm -rf "$wheels"
    log "building Celery wheels ($req, $("$ipy" -V 2>&1))"
    "$ipy" -m pip wheel -q --disable-pip-version-check "$req" -w "$wheels" 2>&1 >/dev/null |
      grep -v 'is ignored: it is neither' >&2 || true
    [ -n "$(ls "$wheels"/celery-*.whl 2>/dev/null)" ] || { echo "building the Celery wheels failed" >&2; exit 1; }
    touch "$wheels/.complete"
  fi
  local d; d=$(mktemp -d)
  cp -r "$wheels" "$d/wheels"
  cp tests/celery/gridq_celery_proj.py "$d/"
  # What docs/celery.md tells users to do for their own app, with the wheels offline.
  cat >"$d/Dockerfile" <<'EOF'
FROM gridq-worker:test
COPY wheels /tmp/wheels
ARG CELERY_REQ
RUN /opt/gridq/bin/pip install -q --no-index --find-links /tmp/wheels "${CELERY_REQ}" \
 && rm -rf /tmp/wheels /root/.cache
COPY gridq_celery_proj.py /app/
ENV PYTHONPATH=/app
WORKDIR /app
ARG CELERY_HASH=unknown
LABEL gridq.celery-hash=${CELERY_HASH}
# For a task of kind celery with an image the node runs the image's CMD: gridq celery
# reads the app (GRIDQ_CELERY_APP), the queues (INPUT_QUEUE) and the broker URL
# (INPUT_REDIS_URL) from the environment the hub gives every worker.
CMD ["gridq", "celery", "worker"]
EOF
  docker build -q --force-rm --build-arg CELERY_REQ="$req" --build-arg CELERY_HASH="$h" \
    -t gridq-celery:test "$d" >/dev/null
  rm -rf "$d"
  log "built gridq-celery:test ($req, $h)"
}

case "$WHAT" in
  busybox) build_busybox ;;
  base) build_base ;;
  worker) build_worker ;;
  celery) build_celery ;;
  all) build_busybox; build_worker; build_celery ;;
  *) echo "usage: $0 [all|busybox|base|worker|celery]" >&2; exit 2 ;;
esac
