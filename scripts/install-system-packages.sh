#!/usr/bin/env bash
# Install the programs the drills and tests need, only when missing: PostgreSQL, Redis,
# Chromium (for the report test), promtool (alert rule tests) and Python's venv module. As
# root on Debian/Ubuntu this uses apt-get; otherwise it says what to install and fails.
set -euo pipefail

need=()
if ! ls /usr/lib/postgresql/*/bin/pg_basebackup >/dev/null 2>&1 \
    && ! command -v pg_basebackup >/dev/null 2>&1; then
  need+=(postgresql)
fi
if ! command -v redis-server >/dev/null 2>&1 \
    && ! [ -x /usr/bin/redis-server ]; then
  need+=(redis-server)
fi
# Headless Chromium checks the drill's HTML report in the test suite.
if ! command -v chromium >/dev/null 2>&1; then
  need+=(chromium)
fi
if ! command -v chromedriver >/dev/null 2>&1; then
  need+=(chromium-driver)
fi
# promtool (Debian's prometheus package) runs the alert rules' unit tests.
if ! command -v promtool >/dev/null 2>&1; then
  need+=(prometheus)
fi
python=$(test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv)
fi

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${need[*]}" >&2
  echo "install them (Debian/Ubuntu: sudo apt-get install -y ${need[*]}) and run make again" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
