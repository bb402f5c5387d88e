#!/usr/bin/env bash
# Two release gateways sharing one Postgres and one Redis, for the scale-out load scenarios
# (`pam-loadtest failover`, `push`, `timers`; see docs/performance.md "Two nodes").
#
# usage: scripts/two-nodes.sh start [a|b]   start both nodes (or one, e.g. node A again after a
#                                           failover run drained it); waits for /health/ready
#        scripts/two-nodes.sh stop          stop both (SIGTERM, then SIGKILL after 15 s)
#        scripts/two-nodes.sh status
#
# Node A listens on 127.0.0.1:${PAM_A_PORT:-8081}, node B on 127.0.0.1:${PAM_B_PORT:-8082}. State
# (pids, logs, outbox journals, and `env` with the shared secret and admin token) lives in
# ${PAM_TWO_NODES_DIR:-/tmp/pam-two-nodes}; `source "$dir/env"` exports SUPABASE_JWT_SECRET,
# PAM_ADMIN_TOKEN, PAM_A_URL, PAM_B_URL and PAM_A_PID for the loadtest. The database
# (${PAM_TWO_NODES_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/pam_two_nodes}) is created when
# missing; Redis is ${PAM_TWO_NODES_REDIS_URL:-redis://127.0.0.1:6379} under the key prefix
# ${PAM_TWO_NODES_PREFIX:-pam-two-nodes} (two clusters on one Redis need different prefixes and
# databases). The binary is ${PAM_GATEWAY_BIN:-target/release/pam-gateway} (build it first:
# cargo build --release -p pam-gateway -p pam-loadtest).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${PAM_TWO_NODES_DIR:-/tmp/pam-two-nodes}
bin=${PAM_GATEWAY_BIN:-target/release/pam-gateway}
database_url=${PAM_TWO_NODES_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/pam_two_nodes}
redis_url=${PAM_TWO_NODES_REDIS_URL:-redis://127.0.0.1:6379}
prefix=${PAM_TWO_NODES_PREFIX:-pam-two-nodes}
declare -A port=([a]=${PAM_A_PORT:-8081} [b]=${PAM_B_PORT:-8082})

say() { printf '[two-nodes.sh] %s\n' "$*"; }

write_env() {
  mkdir -p "$dir"
  if [[ ! -f "$dir/env" ]]; then
    secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    admin=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    cat >"$dir/env" <<EOF
export SUPABASE_JWT_SECRET=$secret
export PAM_ADMIN_TOKEN=$admin
export PAM_A_URL=ws://127.0.0.1:${port[a]}
export PAM_B_URL=ws://127.0.0.1:${port[b]}
EOF
  fi
}

ensure_database() {
  local name=${database_url##*/} server=${database_url%/*}
  name=${name%%\?*}
  if ! psql "$server/postgres" -tAc "select 1 from pg_database where datname = '$name'" | grep -q 1; then
    say "creating database $name"
    psql "$server/postgres" -qc "create database \"$name\""
  fi
}

start_node() {
  local node=$1 pidfile="$dir/node-$1.pid"
  if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    say "node $node already runs (pid $(cat "$pidfile"))"; return 0
  fi
  # shellcheck disable=SC1091
  source "$dir/env"
  # The load runner opens thousands of sockets per node.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  env PAM_LISTEN="127.0.0.1:${port[$node]}" DATABASE_URL="$database_url" REDIS_URL="$redis_url" \
    PAM_NODE_ID="node-$node" PAM_CACHE_PREFIX="$prefix" PAM_OUTBOX_JOURNAL="$dir/node-$node-outbox.jsonl" \
    SUPABASE_JWT_SECRET="$SUPABASE_JWT_SECRET" PAM_ADMIN_TOKEN="$PAM_ADMIN_TOKEN" PAM_DEV_AUTH=false \
    PAM_RATE_LIMIT_PER_MINUTE=1000000 PAM_MAX_CONNECTIONS_PER_USER=8 PAM_SHUTDOWN_GRACE_MS=5000 \
    RUST_LOG="${RUST_LOG:-warn,pam_gateway=info}" \
    "$bin" >>"$dir/node-$node.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      say "node $node exited; its log:"; tail -n 30 "$dir/node-$node.log" >&2; return 1
    fi
    if curl -fsS -o /dev/null "http://127.0.0.1:${port[$node]}/health/ready" 2>/dev/null; then
      say "node $node ready on 127.0.0.1:${port[$node]} (pid $(cat "$pidfile"), log $dir/node-$node.log)"
      return 0
    fi
    sleep 0.2
  done
  say "node $node not ready within 30 s; its log:"; tail -n 30 "$dir/node-$node.log" >&2; return 1
}

stop_node() {
  local pidfile="$dir/node-$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    say "node $1 stopped"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start)
    [[ -x "$bin" ]] || { say "no $bin; build it first (cargo build --release -p pam-gateway -p pam-loadtest)"; exit 1; }
    write_env
    ensure_database
    nodes=${2:-a b}
    for node in $nodes; do start_node "$node"; done
    sed -i '/^export PAM_A_PID=/d' "$dir/env"
    echo "export PAM_A_PID=$(cat "$dir/node-a.pid" 2>/dev/null || echo)" >>"$dir/env"
    say "now: source $dir/env   (then see docs/performance.md \"Two nodes\")"
    ;;
  stop) for node in a b; do stop_node "$node"; done ;;
  status)
    for node in a b; do
      if [[ -f "$dir/node-$node.pid" ]] && kill -0 "$(cat "$dir/node-$node.pid")" 2>/dev/null; then
        say "node $node runs (pid $(cat "$dir/node-$node.pid"), 127.0.0.1:${port[$node]})"
      else
        say "node $node is not running"
      fi
    done
    ;;
  *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
