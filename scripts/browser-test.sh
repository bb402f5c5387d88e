#!/usr/bin/env bash
# Headless-Chromium end-to-end check of the demo chat page (web/index.html, demo.js, demo.css) served at GET /.
# Builds nothing: uses an already-built gateway binary ($PAM_GATEWAY_BIN, default
# target/release/pam-gateway, falling back to target/debug/pam-gateway), starts it on a free
# loopback port with dev auth on and a throwaway SQLite database, and runs web/e2e/demo.spec.mjs.
# Exits with the browser script's status; the screenshot lands in target/browser-demo.png.
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

source scripts/lib/gateway.sh
gateway_start "$bin"
say "gateway is live"

status=0
node web/e2e/demo.spec.mjs "http://127.0.0.1:$gateway_port" || status=$?
if [ "$status" -ne 0 ]; then
  say "browser check failed (exit $status); gateway log tail:"
  tail -n 40 "$gateway_log" >&2 || true
fi
exit "$status"
