#!/usr/bin/env bash
# The SDK's tests (called by scripts/test.sh): installs the dev dependencies from the lockfile
# (from the npm cache when it has them), then runs the unit tests (fake clock, fake WebSocket)
# and the integration tests against the real gateway binary, built here if needed.
#   web/client/scripts/test.sh             unit + integration
#   web/client/scripts/test.sh --unit      unit only
set -euo pipefail
client_dir="$(cd "$(dirname "$0")/.." && pwd)"
repo_dir="$(cd "$client_dir/../.." && pwd)"
say() { printf '[sdk-test] %s\n' "$*"; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "node and npm are required for the pam-client SDK tests (Node >= 20), but were not found."
  say "Install Node 20 (e.g. apt-get install nodejs npm) and run this again."
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  say "Node $(node --version) is too old: the SDK tests need Node >= 20."; exit 1
fi

cd "$client_dir"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  say "installing dev dependencies (npm ci)"
  npm ci --prefer-offline --no-audit --no-fund --loglevel=error
fi

say "unit tests"
npm run --silent test

if [ "${1:-}" = "--unit" ]; then exit 0; fi

if [ -z "${PAM_GATEWAY_BIN:-}" ]; then
  say "building the gateway (cargo build -p pam-gateway)"
  (cd "$repo_dir" && cargo build -p pam-gateway --quiet)
  export PAM_GATEWAY_BIN="$repo_dir/target/debug/pam-gateway"
fi
say "integration tests against $PAM_GATEWAY_BIN"
npm run --silent test:integration
