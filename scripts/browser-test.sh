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

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
  || node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
workdir=$(mktemp -d)
log="$workdir/gateway.log"
gateway_pid=""

cleanup() {
  if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill "$gateway_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting $bin on 127.0.0.1:$port (dev auth, sqlite in $workdir)"
env -u SUPABASE_JWT_SECRET -u SUPABASE_URL -u PAM_JWKS_URL -u PAM_JWT_ISSUER -u PAM_JWT_AUDIENCE -u PAM_DEV_AUTH \
  -u PAM_ALLOWED_ORIGINS -u REDIS_URL \
  PAM_LISTEN="127.0.0.1:$port" DATABASE_URL="sqlite://$workdir/demo.db" \
  "$bin" >"$log" 2>&1 &
gateway_pid=$!

up=""
for _ in $(seq 1 100); do
  if ! kill -0 "$gateway_pid" 2>/dev/null; then break; fi
  if curl -fsS "http://127.0.0.1:$port/health/live" >/dev/null 2>&1; then up=1; break; fi
  sleep 0.2
done
if [ -z "$up" ]; then
  say "gateway did not answer /health/live; its log:"
  tail -n 40 "$log" >&2 || true
  exit 1
fi
say "gateway is live"

status=0
node web/e2e/demo.spec.mjs "http://127.0.0.1:$port" || status=$?
if [ "$status" -ne 0 ]; then
  say "browser check failed (exit $status); gateway log tail:"
  tail -n 40 "$log" >&2 || true
fi
exit "$status"
