#!/usr/bin/env bash
# The one test command (README, .ci/run): makes sure Postgres and Redis answer — starting them
# when they are installed but stopped — then runs the whole suite with cargo-nextest (one process
# per test, so each test sees its own Prometheus recorder), then the pam-client SDK tests (web/client).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379
export PAM_TEST_DATABASE_URL="${PAM_TEST_DATABASE_URL:-postgres://postgres@${PG_HOST}:${PG_PORT}/test}"
export PAM_TEST_REDIS_URL="${PAM_TEST_REDIS_URL:-redis://${PG_HOST}:${REDIS_PORT}}"

say() { printf '[test.sh] %s\n' "$*"; }

wait_for() { # name, check command...
  local name=$1; shift
  for _ in $(seq 1 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "$name did not come up"; return 1
}

ensure_postgres() {
  if pg_isready -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; then say "Postgres answers on $PG_HOST:$PG_PORT"; return; fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    local version; version=$(ls /etc/postgresql | sort -V | tail -n1)
    say "starting Postgres $version (pg_ctlcluster)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for Postgres pg_isready -h "$PG_HOST" -p "$PG_PORT" && return
  fi
  say "Postgres is not reachable on $PG_HOST:$PG_PORT and could not be started."
  say "Install it (apt-get install postgresql) or point PAM_TEST_DATABASE_URL at a server with trust auth."
  exit 1
}

ensure_redis() {
  if redis-cli -h "$PG_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1; then say "Redis answers on $PG_HOST:$REDIS_PORT"; return; fi
  if command -v redis-server >/dev/null 2>&1; then
    say "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    wait_for Redis redis-cli -h "$PG_HOST" -p "$REDIS_PORT" ping && return
  fi
  say "Redis is not reachable on $PG_HOST:$REDIS_PORT and could not be started."
  say "Install it (apt-get install redis-server) or point PAM_TEST_REDIS_URL at a server."
  exit 1
}

ensure_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return; fi
  say "cargo-nextest missing: installing it from crates.io (one time)"
  cargo install cargo-nextest --locked
}

ensure_postgres
ensure_redis
ensure_nextest
say "running the suite"
cargo nextest run --workspace --all-targets --no-fail-fast "$@"
say "running the pam-client SDK tests (web/client: unit, then against the gateway binary)"
bash web/client/scripts/test.sh
