#!/usr/bin/env bash
# Makes sure `pgbouncer` (1.18 or later) is installed, installing Debian's `pgbouncer` package when
# it is missing (as root or through sudo; the package's service is not started). Used by
# scripts/test.sh: the pooler tests start their own PgBouncer in front of the test Postgres.
# Exit 0 when pgbouncer is there afterwards (on PATH or in /usr/sbin); otherwise one line says why.
set -euo pipefail
found() { command -v pgbouncer >/dev/null 2>&1 || [[ -x /usr/sbin/pgbouncer ]]; }
found && exit 0
sudo=""
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "pgbouncer is missing and this user cannot apt-get install (not root, no sudo): install Debian package pgbouncer (brew install pgbouncer on macOS)"
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "pgbouncer is missing and apt-get is not available to install Debian package pgbouncer (brew install pgbouncer on macOS)"
  exit 1
fi
echo "pgbouncer not found: installing Debian package pgbouncer (apt-get)..." >&2
created_policy=""
# Keep the package's maintainer scripts from starting a pgbouncer service here.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod 0755 /usr/sbin/policy-rc.d
  created_policy=/usr/sbin/policy-rc.d
fi
log=$(mktemp)
trap '[[ -n "$created_policy" ]] && $sudo rm -f "$created_policy"; rm -f "$log"' EXIT
if ! $sudo apt-get update >"$log" 2>&1; then
  echo "apt-get update failed:"; tail -n 20 "$log"; exit 1
fi
if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pgbouncer >"$log" 2>&1; then
  echo "apt-get install pgbouncer failed:"; tail -n 20 "$log"; exit 1
fi
found || { echo "package pgbouncer installed but pgbouncer is not on PATH nor in /usr/sbin"; exit 1; }
