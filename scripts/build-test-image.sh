#!/usr/bin/env bash
# Build the Docker images the docker backend runs servers (and drills) in, without any registry:
# a minimal Debian made with debootstrap from the machine's own apt source.
#
#   scripts/build-test-image.sh              # bookworm: PostgreSQL 15, Redis 7.0, python3 3.11
#   scripts/build-test-image.sh trixie       # trixie: PostgreSQL 17, Redis 8.0, python3 3.13
#                                            # (and pgBackRest, for benchmarks/incremental.py)
#   scripts/build-test-image.sh all          # both
#
# The bookworm image runs the host's virtualenv (the same Debian python3 minor version), mounted.
# The trixie image cannot: it carries its own virtualenv, /opt/restore-drill, with this
# project's dependencies for its Python; `backup-engine drill --pg-version 17` runs the drill
# inside it with the checkout mounted. An image is reused when it exists (the trixie one while
# pyproject.toml and its package list are unchanged); pass --rebuild to make it again.
set -euo pipefail
cd "$(dirname "$0")/.."

release="bookworm"
rebuild=""
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=1 ;;
    bookworm|trixie|all) release="$arg" ;;
    *) echo "usage: $0 [bookworm|trixie|all] [--rebuild]" >&2; exit 2 ;;
  esac
done
if [ "$release" = all ]; then
  "$0" bookworm ${rebuild:+--rebuild}
  exec "$0" trixie ${rebuild:+--rebuild}
fi

case "$release" in
  bookworm)
    image="${DRILL_POSTGRES_IMAGE:-restore-drill/servers:bookworm}"
    packages="postgresql-15,redis-server,python3,procps" ;;
  trixie)
    image="${DRILL_PG17_IMAGE:-restore-drill/servers:trixie}"
    packages="postgresql-17,redis-server,python3,python3-venv,procps,ca-certificates,pgbackrest,time" ;;
esac
deps=$( (cat pyproject.toml; echo "$packages") | sha256sum | cut -c1-16)  # what the image holds

if [ -z "$rebuild" ] && docker image inspect "$image" >/dev/null 2>&1; then
  built_for=$(docker image inspect -f '{{ index .Config.Labels "restore-drill.deps" }}' "$image" 2>/dev/null || true)
  if [ "$release" = bookworm ] || [ "$built_for" = "$deps" ]; then
    echo "image $image already exists"
    exit 0
  fi
  echo "image $image is out of date (pyproject.toml or its packages changed): building it again"
fi
for program in docker debootstrap; do
  command -v "$program" >/dev/null || { echo "missing $program (apt-get install docker.io debootstrap)" >&2; exit 1; }
done

mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | awk '{print $2}')
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -n 1 | awk '{print $2}')
fi
mirror="${mirror:-http://deb.debian.org/debian}"

work=$(mktemp -d /var/tmp/restore-drill-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "building $image from $mirror (a minute or two)"
debootstrap --variant=minbase --include="$packages" "$release" "$work/rootfs" "$mirror" >/dev/null
if [ "$release" = bookworm ]; then
  tar -C "$work/rootfs" -c . | docker import - "$image" >/dev/null
  echo "built $image"
  exit 0
fi

# trixie: the project's dependencies in /opt/restore-drill, installed from this checkout's wheel
# (then the project itself removed again: the drill runs the mounted checkout's code).
base="$image-base"
tar -C "$work/rootfs" -c . | docker import - "$base" >/dev/null
python="${PYTHON:-$(command -v python3)}"
"$python" -m pip wheel --quiet --no-deps --disable-pip-version-check -w "$work/wheel" . >/dev/null
ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
container="restore-drill-build-$$"
docker run --name "$container" --network host \
  -v "$work/wheel:/wheel:ro" -v "$ca:/etc/ssl/certs/host-ca.crt:ro" \
  -e PIP_CERT=/etc/ssl/certs/host-ca.crt -e PIP_DISABLE_PIP_VERSION_CHECK=1 \
  -e PIP_INDEX_URL="${PIP_INDEX_URL:-https://pypi.org/simple}" \
  "$base" sh -c 'python3 -m venv /opt/restore-drill \
    && /opt/restore-drill/bin/pip install --quiet "$(ls /wheel/*.whl)[drill]" hypothesis \
    && /opt/restore-drill/bin/pip uninstall --quiet --yes restore-drill' >/dev/null
docker commit --change "LABEL restore-drill.deps=$deps" "$container" "$image" >/dev/null
docker rm "$container" >/dev/null
docker rmi "$base" >/dev/null 2>&1 || true
echo "built $image"
