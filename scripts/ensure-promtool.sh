#!/usr/bin/env bash
# Makes sure `promtool` is on PATH, installing Debian's `prometheus` package when it is missing
# (as root or through sudo; the package's service is not started). Used by scripts/test.sh (the
# alert drills evaluate the deployed rules against scraped series) and scripts/check-deploy.sh.
# Exit 0 when promtool is there afterwards; otherwise one line says why.
set -euo pipefail
command -v promtool >/dev/null 2>&1 && exit 0
sudo=""
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "promtool is missing and this user cannot apt-get install (not root, no sudo): install Debian package prometheus"
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool is missing and apt-get is not available to install Debian package prometheus"
  exit 1
fi
echo "promtool not found: installing Debian package prometheus (apt-get)..." >&2
created_policy=""
# Keep the package's maintainer scripts from starting a prometheus service here.
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
if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >"$log" 2>&1; then
  echo "apt-get install prometheus failed:"; tail -n 20 "$log"; exit 1
fi
command -v promtool >/dev/null 2>&1 || { echo "package prometheus installed but promtool is not on PATH"; exit 1; }
