#!/usr/bin/env bash
# Makes sure a tool the tests or checks need is installed, installing its Debian package when it is
# missing (as root or through sudo; the package's service, if any, is not started).
#   scripts/ensure-tool.sh promtool prometheus    the alert drills and the deploy checks run the rules
#   scripts/ensure-tool.sh pgbouncer pgbouncer    the pooler tests start their own PgBouncer
# Exit 0 when the command is there afterwards (on PATH or in /usr/sbin); otherwise one line says why.
set -euo pipefail
tool=${1:?usage: ensure-tool.sh COMMAND DEBIAN_PACKAGE}
package=${2:?usage: ensure-tool.sh COMMAND DEBIAN_PACKAGE}
found() { command -v "$tool" >/dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]]; }
found && exit 0
sudo=""
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "$tool is missing and this user cannot apt-get install (not root, no sudo): install Debian package $package"
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$tool is missing and apt-get is not available to install Debian package $package"
  exit 1
fi
echo "$tool not found: installing Debian package $package (apt-get)..." >&2
created_policy=""
# Keep the package's maintainer scripts from starting its service here.
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
if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package" >"$log" 2>&1; then
  echo "apt-get install $package failed:"; tail -n 20 "$log"; exit 1
fi
found || { echo "package $package installed but $tool is not on PATH nor in /usr/sbin"; exit 1; }
