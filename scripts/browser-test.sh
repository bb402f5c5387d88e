#!/usr/bin/env bash
# Headless-Chromium end-to-end checks of the demo chat page (web/index.html, demo.js, demo.css on
# the pam-client SDK) served at GET /. Builds nothing: uses an already-built gateway binary
# ($PAM_GATEWAY_BIN, default target/release/pam-gateway, falling back to target/debug/pam-gateway)
# that web/e2e/demo.spec.mjs runs itself (on a free loopback port, dev auth on, a throwaway SQLite
# database, a fake streaming model) so it can kill and restart it mid-answer.
# Exits with the browser script's status; a screenshot per step lands in target/browser-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[browser-test.sh] %s\n' "$*"; }

# --- Chromium (Debian package; playwright cannot download browsers here) ---
if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# --- playwright-core ---
if ! command -v node >/dev/null 2>&1; then
  say "node is not installed"; exit 1
fi
say "installing web/e2e dependencies"
if [ -f web/e2e/package-lock.json ]; then
  (cd web/e2e && npm ci --no-audit --no-fund --loglevel=error)
else
  (cd web/e2e && npm install --no-audit --no-fund --loglevel=error)
fi

# --- gateway binary ---
bin="${PAM_GATEWAY_BIN:-target/release/pam-gateway}"
if [ ! -x "$bin" ] && [ -z "${PAM_GATEWAY_BIN:-}" ]; then
  bin=target/debug/pam-gateway
fi
if [ ! -x "$bin" ]; then
  say "no gateway binary at $bin (build it first, or set PAM_GATEWAY_BIN)"; exit 1
fi

say "running web/e2e/demo.spec.mjs against $bin"
status=0
node web/e2e/demo.spec.mjs "$bin" || status=$?
say "screenshots: $(pwd)/target/browser-screenshots/"
exit "$status"
