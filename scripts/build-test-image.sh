#!/usr/bin/env bash
# Build the Docker image the docker backend runs servers in, without any registry: a minimal
# Debian bookworm made with debootstrap from the machine's own apt source, with PostgreSQL 15,
# Redis and python3 (archive/restore commands run this tool inside the server's container).
# Reused when it exists; pass --rebuild to make it again.
set -euo pipefail

image="${DRILL_POSTGRES_IMAGE:-restore-drill/servers:bookworm}"
if [ "${1:-}" != "--rebuild" ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "image $image already exists"
  exit 0
fi
for program in docker debootstrap; do
  command -v "$program" >/dev/null || { echo "missing $program (apt-get install docker.io debootstrap)" >&2; exit 1; }
done

mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | awk '{print $2}')
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}')
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs=$(mktemp -d /tmp/restore-drill-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "building $image from $mirror (about a minute)"
debootstrap --variant=minbase --include=postgresql-15,redis-server,python3,procps \
  bookworm "$rootfs" "$mirror" >/dev/null
tar -C "$rootfs" -c . | docker import - "$image" >/dev/null
echo "built $image"
