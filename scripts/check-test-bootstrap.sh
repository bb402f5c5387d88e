#!/usr/bin/env bash
# Proves that ./scripts/test.sh prepares a bare Postgres by itself: makes a fresh cluster with
# initdb in a temp dir on a free port (trust auth, as a fresh test server), then runs only the
# database preparation of test.sh (sourced: prepare_postgres) against it and checks that
#   1. the missing `test` database is created;
#   2. a missing login role is created as a superuser (when this user can act as the OS user postgres);
#   3. with password auth in pg_hba.conf it stops and names the exact pg_hba.conf lines to add;
#   4. with the server stopped it stops and says nothing listens on that port.
# Needs the Postgres server binaries (apt-get install postgresql); runs in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[check-test-bootstrap] %s\n' "$*"; }
fail() { say "FAIL: $*"; exit 1; }

bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1)")
[ -x "$bin/initdb" ] || bin=$(dirname "$(command -v initdb || true)")
[ -x "$bin/initdb" ] || fail "initdb not found: apt-get install postgresql"

# initdb refuses root: as root, the cluster belongs to the OS user postgres.
run_as_owner() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

port=${PAM_BOOTSTRAP_PORT:-55432}
while [ -e "/tmp/.s.PGSQL.$port" ] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
dir=$(mktemp -d "${TMPDIR:-/tmp}/pam-pgfresh.XXXXXX")
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
cleanup() {
  run_as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

say "fresh cluster: initdb in $dir/data, port $port, trust auth"
run_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; fail "initdb failed"; }
run_as_owner "$bin/pg_ctl" -D "$dir/data" -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" -l "$dir/data/server.log" -w start >/dev/null ||
  fail "the fresh cluster did not start ($dir/data/server.log)"

# Runs test.sh's database preparation against $1; its output, and its exit code in $prepared.
prepare() {
  prepared=0
  output=$(PAM_TEST_DATABASE_URL=$1 bash -c 'source scripts/test.sh && prepare_postgres' 2>&1) || prepared=$?
  printf '%s\n' "$output" | sed 's/^/    /'
}
has_database() { psql -X -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$1'"; }

say "1. PAM_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/test: the database is missing"
[ "$(has_database test)" = 0 ] || fail "the fresh cluster already has a test database"
prepare "postgres://postgres@127.0.0.1:$port/test"
[ "$prepared" = 0 ] || fail "the preparation failed (exit $prepared)"
[ "$(has_database test)" = 1 ] || fail "the test database was not created"
prepare "postgres://postgres@127.0.0.1:$port/test"
[ "$prepared" = 0 ] && [[ "$output" != *creating* ]] || fail "a second run should find everything ready"
say "   ok: created, and a second run finds it ready"

if [ "$(id -u)" = 0 ] || [ "$(id -un)" = postgres ]; then
  say "2. a login role that does not exist (pam_boot)"
  prepare "postgres://pam_boot@127.0.0.1:$port/pam_boot_db"
  [ "$prepared" = 0 ] || fail "the preparation failed (exit $prepared)"
  super=$(psql -X -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc "SELECT rolsuper FROM pg_roles WHERE rolname = 'pam_boot'")
  [ "$super" = t ] && [ "$(has_database pam_boot_db)" = 1 ] || fail "role pam_boot (superuser: $super) or database pam_boot_db missing"
  say "   ok: role pam_boot created as a superuser, database pam_boot_db created"
else
  say "2. skipped (the missing-role case needs root or the OS user postgres)"
fi

say "3. pg_hba.conf asks a password over TCP"
hba="$dir/data/pg_hba.conf"
run_as_owner sed -i 's/^\(host.*\)trust$/\1scram-sha-256/' "$hba"
run_as_owner "$bin/pg_ctl" -D "$dir/data" reload >/dev/null
sleep 0.5
prepare "postgres://postgres@127.0.0.1:$port/test"
[ "$prepared" = 1 ] || fail "expected exit 1, got $prepared"
grep -q "host    all    postgres    127.0.0.1/32    trust" <<<"$output" || fail "the pg_hba.conf line to add is not named"
if [ "$(id -u)" = 0 ]; then grep -qF "$hba" <<<"$output" || fail "the cluster's own pg_hba.conf ($hba) is not named"; fi
say "   ok: exit 1 naming the lines to add"

say "4. the server is stopped"
run_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
prepare "postgres://postgres@127.0.0.1:$port/test"
[ "$prepared" = 1 ] && grep -q "port $port" <<<"$output" || fail "expected exit 1 naming port $port"
say "   ok: exit 1 naming the port"
say "all good"
