#!/usr/bin/env bash
# Make a Docker engine available for the docker backend's tests: reuse a running one, else (as
# root on Debian/Ubuntu) install docker.io and start dockerd without iptables or a bridge, which
# works inside containers and sandboxes; containers then use host networking. Prints the reason
# and exits 1 when no engine can run here.
set -uo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "no Docker engine running, and not root to start one" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io debootstrap docker-compose >/dev/null 2>&1 || { echo "docker.io cannot be installed" >&2; exit 1; }
fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1
command -v docker-compose >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1
nohup dockerd --iptables=false --bridge=none >/tmp/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not start: $(tail -n 3 /tmp/dockerd.log)" >&2
exit 1
