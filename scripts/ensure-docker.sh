#!/usr/bin/env bash
# Start a Docker engine if none answers (CI machines have the client only).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null; then
  echo "dockerd not installed (apt-get install docker.io)" >&2; exit 1
fi
nohup dockerd >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 120); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not start; see /var/log/dockerd.log" >&2
exit 1
