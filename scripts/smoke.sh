#!/usr/bin/env bash
# Release smoke (CI): builds the release gateway and load runner, starts the gateway on a free
# loopback port (HS256 secret, throwaway SQLite), runs the `legacy-chat` scenario (20 users, 20 s;
# thresholds chat_latency p95 < 2 s, ≥ 95 % connects and answers), provokes one rejected token so
# every metric has been recorded, checks deploy/ against the live /metrics
# (scripts/check-deploy.sh --metrics-url), stops the gateway and exits non-zero if any step failed.
#
# usage: scripts/smoke.sh [--users N] [--duration S]      (env SMOKE_SKIP_BUILD=1 skips cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."

users=20 duration=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --users) users="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

say() { printf '[smoke.sh] %s\n' "$*"; }

if [[ "${SMOKE_SKIP_BUILD:-}" != 1 ]]; then
  say "cargo build --release -p pam-gateway -p pam-loadtest"
  started=$SECONDS
  cargo build --release --locked -p pam-gateway -p pam-loadtest
  say "release build took $((SECONDS - started)) s"
fi

source scripts/lib/gateway.sh
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
gateway_start target/release/pam-gateway SUPABASE_JWT_SECRET="$secret" PAM_LOG_FORMAT=json RUST_LOG=warn

status=0
say "legacy-chat: $users users, $duration s"
SUPABASE_JWT_SECRET="$secret" target/release/pam-loadtest legacy-chat --url "ws://127.0.0.1:$gateway_port" \
  --users "$users" --duration "$duration" || status=$?

# One upgrade with a forged token: pam_auth_failures_total is only exported once recorded.
curl -s -o /dev/null --max-time 2 --http1.1 -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
  -H 'Sec-WebSocket-Key: c21va2Utc21va2Utc21va2U=' "http://127.0.0.1:$gateway_port/api/v1/pam/ws/00000000-0000-4000-8000-000000000000?token=forged" || true

say "deploy/ against the live /metrics"
bash scripts/check-deploy.sh --metrics-url "http://127.0.0.1:$gateway_port/metrics" || status=$?

if [[ $status -ne 0 ]]; then
  say "FAILED (exit $status); gateway log tail:"
  tail -n 20 "$gateway_log"
fi
exit "$status"
