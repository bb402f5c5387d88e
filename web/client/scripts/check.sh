#!/usr/bin/env bash
# CI checks of the pam-client SDK (called by .ci/run): the generated frame types match
# docs/schema, the sources type-check (tsc --noEmit), and the committed dist/ is what the sources build.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[sdk-check] %s\n' "$*"; }
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "node and npm are required (Node >= 20) but were not found."; exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --prefer-offline --no-audit --no-fund --loglevel=error
fi
say "generated types against docs/schema"
npm run --silent gen:check
say "type check (tsc --noEmit)"
npm run --silent typecheck
say "dist/ is built from src/"
npm run --silent build
if ! git diff --quiet -- dist; then
  git --no-pager diff --stat -- dist
  say "dist/ is stale: run \`npm run build\` in web/client and commit it"; exit 1
fi
if [ -n "$(git ls-files --others --exclude-standard -- dist)" ]; then
  say "dist/ has files not committed: $(git ls-files --others --exclude-standard -- dist | tr '\n' ' ')"; exit 1
fi
npm run --silent size
