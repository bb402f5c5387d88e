#!/usr/bin/env bash
# Headless-Chromium end-to-end checks of the demo chat page (web/index.html, demo.js, demo.css on
# the pam-client SDK) served at GET /. Builds nothing: uses an already-built gateway binary
# ($PAM_GATEWAY_BIN, default target/release/pam-gateway, falling back to target/debug/pam-gateway)
# that web/e2e/demo.spec.mjs runs itself (on a free loopback port, dev auth on, a throwaway SQLite
# database, a fake streaming model) so it can kill and restart it mid-answer.
# Besides chatting it checks the demo's first hour: text contrast >= 4.5:1 (computed styles, light and
# dark), at most three toasts that never cover the status line or the input, the conversation shown
# again after a reload (client.history), and a clean restart (SIGTERM) shown on the status line
# rather than as an error bubble.
# Exits with the browser script's status; a screenshot per step (first load, a streamed answer, a
# timer toast, the clean restart, the reload with history, …) lands in target/browser-screenshots/,
# which CI keeps.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[browser-test.sh] %s\n' "$*"; }

# --- Chromium (Debian package; playwright cannot download browsers here) ---
if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# An emoji font, so the screenshots show the page's emoji (⏰, 🔔, 🚐) rather than empty boxes.
if ! fc-list 2>/dev/null | grep -qi 'color emoji'; then
  say "installing fonts-noto-color-emoji (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji >/dev/null; } \
    || say "could not install an emoji font; screenshots show boxes for emoji"
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
say "screenshots (kept by CI with target/): $(pwd)/target/browser-screenshots/"
ls target/browser-screenshots/ 2>/dev/null | sed 's/^/[browser-test.sh]   /' || true
exit "$status"
