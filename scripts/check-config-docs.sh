#!/usr/bin/env bash
# docs/configuration.md against the settings it documents (CI): the file is generated from clap's
# model of `Settings` (src/settings/mod.rs: each field's env name, flag, default, `///` doc comment
# and `help_heading`) by `settings::docs::markdown`, and the unit tests `settings::docs` fail when
# the committed copy differs or a setting has no description or heading.
#
# usage: scripts/check-config-docs.sh           check (exit 1 when docs/configuration.md is stale)
#        scripts/check-config-docs.sh --write   regenerate docs/configuration.md
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[check-config-docs.sh] %s\n' "$*"; }

case "${1:-}" in
  --write) export PAM_UPDATE_DOCS=1; say "writing docs/configuration.md from the Settings doc comments" ;;
  "") unset PAM_UPDATE_DOCS; say "docs/configuration.md against the Settings doc comments" ;;
  *) say "unknown argument: $1 (usage: $0 [--write])"; exit 2 ;;
esac
if ! cargo test --quiet -p pam-gateway --lib -- settings::docs::; then
  say "docs/configuration.md is stale or a setting lacks a description: run bash scripts/check-config-docs.sh --write"
  exit 1
fi
say "ok"
