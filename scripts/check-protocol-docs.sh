#!/usr/bin/env bash
# The protocol documents against the types and third-party validators (CI): `pam-schema --check`
# (docs/asyncapi.json and docs/schema/ are what the pam-protocol types generate), then the official
# AsyncAPI parser on docs/asyncapi.json and ajv on every message example (against its group's JSON
# Schema) and on frames the schemas must refuse. Needs node + npm (the packages are pinned in
# scripts/protocol-check/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[check-protocol-docs.sh] %s\n' "$*"; }

say "pam-schema --check docs/"
cargo run --quiet -p pam-protocol --features schema --bin pam-schema -- --check docs/
if ! command -v node >/dev/null 2>&1; then
  say "node is not installed"; exit 1
fi
say "installing scripts/protocol-check dependencies"
(cd scripts/protocol-check && npm ci --no-audit --no-fund --loglevel=error)
say "AsyncAPI parser + JSON Schema validation"
node scripts/protocol-check/check.mjs docs
