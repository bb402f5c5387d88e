#!/usr/bin/env bash
# The one test command (README, .ci/run). On a bare Debian with only `apt-get install postgresql
# redis-server` (and Node >= 20 for the SDK part) it:
#   1. makes sure Postgres answers at PAM_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
#      starting a stopped local cluster (pg_ctlcluster), and prepares what the tests need there: the
#      database (created when missing) and a superuser login role (the tests create databases and
#      roles). When it lacks the rights it prints, in one line, the command that would do it; when
#      pg_hba.conf asks a password it says which lines to add.
#   2. makes sure Redis answers at PAM_TEST_REDIS_URL (default redis://127.0.0.1:6379), starting a
#      local redis-server when it is stopped;
#   3. makes sure promtool is installed (Debian's prometheus package; the alert drills run the
#      deployed rules) and pgbouncer (Debian's package; the pooler tests start one), then runs the whole suite with cargo-nextest (one process per test, so each test sees its own
#      Prometheus recorder), then the pam-client SDK tests (web/client, Node >= 20).
#
#   ./scripts/test.sh [--no-sdk] [nextest args…]   everything (the SDK tests unless --no-sdk)
#   ./scripts/test.sh --prepare-only                only step 1 and 2 (services and the database)
#   source scripts/test.sh                          defines the functions only (scripts/check-test-bootstrap.sh)
set -euo pipefail

PAM_TEST_DATABASE_URL="${PAM_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
PAM_TEST_REDIS_URL="${PAM_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export PAM_TEST_DATABASE_URL PAM_TEST_REDIS_URL
# Messages from psql and libpq in English, whatever the locale: they are matched below.
export LC_MESSAGES=C PGCONNECT_TIMEOUT=5

say() { printf '[test.sh] %s\n' "$*"; }
die() { say "$*"; exit 1; }

wait_for() { # check command...; true once it succeeds (within 10 s)
  for _ in $(seq 1 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

pct_decode() { local s=${1//%/\\x}; printf '%b' "$s"; }

# $1 quoted for a command line shown to a person: in double quotes when nothing in it is special there.
shell_quote() {
  local q="'\\''"
  case "$1" in *[\"\$\`\\!]*) printf "'%s'" "${1//\'/$q}" ;; *) printf '"%s"' "$1" ;; esac
}

# $1 as an SQL identifier: bare when it is a plain lower-case name, else in double quotes.
sql_ident() {
  if [[ "$1" =~ ^[a-z_][a-z0-9_]*$ ]]; then printf '%s' "$1"; else local q='""'; printf '"%s"' "${1//\"/$q}"; fi
}

# --- The URLs, taken apart -----------------------------------------------------------------------

# Sets PG_USER PG_HOST PG_PORT PG_DB PG_HAS_PASSWORD PG_SHOWN (the URL, password redacted) and
# PG_ADMIN_URL (the same server and login, database `postgres`).
parse_database_url() {
  local url=$PAM_TEST_DATABASE_URL scheme rest authority tail query="" userinfo="" hostport
  scheme=${url%%://*}
  case "$scheme" in postgres | postgresql) ;; *) die "PAM_TEST_DATABASE_URL must start with postgres:// (got ${url%%://*}://…)" ;; esac
  rest=${url#*://}
  authority=${rest%%[/?]*}
  tail=${rest#"$authority"}
  case "$tail" in *\?*) query="?${tail#*\?}"; tail=${tail%%\?*} ;; esac
  PG_DB=$(pct_decode "${tail#/}")
  hostport=$authority
  case "$authority" in *@*) userinfo=${authority%@*}; hostport=${authority##*@} ;; esac
  PG_HAS_PASSWORD=false PG_PASSWORD=
  case "$userinfo" in *:*) PG_HAS_PASSWORD=true PG_PASSWORD=$(pct_decode "${userinfo#*:}") ;; esac
  PG_USER=$(pct_decode "${userinfo%%:*}")
  PG_USER=${PG_USER:-$(id -un)}
  case "$hostport" in
    \[*\]:*) PG_HOST=${hostport%%]:*}; PG_HOST=${PG_HOST#[}; PG_PORT=${hostport##*]:} ;;
    \[*\]) PG_HOST=${hostport#[}; PG_HOST=${PG_HOST%]}; PG_PORT= ;;
    *:*) PG_HOST=${hostport%%:*}; PG_PORT=${hostport##*:} ;;
    *) PG_HOST=$hostport; PG_PORT= ;;
  esac
  PG_HOST=${PG_HOST:-localhost} PG_PORT=${PG_PORT:-5432}
  [ -n "$PG_DB" ] || die "PAM_TEST_DATABASE_URL names no database (…/test at its end, for example)"
  PG_SHOWN=$url
  if $PG_HAS_PASSWORD; then PG_SHOWN="$scheme://${userinfo%%:*}:***@$hostport$tail$query"; fi
  PG_ADMIN_URL="${url%%://*}://$authority/postgres$query"
}

# Sets REDIS_HOST REDIS_PORT from PAM_TEST_REDIS_URL.
parse_redis_url() {
  local hostport=${PAM_TEST_REDIS_URL#*://}
  hostport=${hostport%%/*}
  hostport=${hostport##*@}
  case "$hostport" in
    \[*\]:*) REDIS_HOST=${hostport%%]:*}; REDIS_HOST=${REDIS_HOST#[}; REDIS_PORT=${hostport##*]:} ;;
    *:*) REDIS_HOST=${hostport%%:*}; REDIS_PORT=${hostport##*:} ;;
    *) REDIS_HOST=$hostport; REDIS_PORT= ;;
  esac
  REDIS_HOST=${REDIS_HOST:-127.0.0.1} REDIS_PORT=${REDIS_PORT:-6379}
}

is_local_host() { case "$1" in 127.* | localhost | ::1 | /*) return 0 ;; *) return 1 ;; esac; }

# --- Acting as the OS user `postgres` (peer auth on the local socket) ------------------------------

# The command prefix that runs as the OS user `postgres` here, or failure when we may not.
as_postgres_prefix() {
  if [ "$(id -un)" = postgres ]; then echo ""; return 0; fi
  if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1 && id postgres >/dev/null 2>&1; then
    echo "runuser -u postgres --"; return 0
  fi
  if command -v sudo >/dev/null 2>&1 && sudo -n -u postgres true >/dev/null 2>&1; then echo "sudo -n -u postgres"; return 0; fi
  return 1
}

# The directory holding this server's Unix socket (Debian: /var/run/postgresql; pg_ctl -k: another).
socket_dir() {
  local dir
  for dir in /var/run/postgresql /run/postgresql /tmp; do
    if [ -S "$dir/.s.PGSQL.$PG_PORT" ]; then echo "$dir"; return 0; fi
  done
  return 1
}

# Runs psql as the OS user `postgres` on the local socket (database `postgres`): SQL in $1.
psql_as_postgres() {
  local prefix dir
  prefix=$(as_postgres_prefix) || return 1
  dir=$(socket_dir) || return 1
  # shellcheck disable=SC2086 # the prefix is words
  (cd / && $prefix psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$PG_PORT" -d postgres -Atc "$1")
}

# What a person with the rights would type, in one line, to run SQL $1 as the OS user `postgres`.
psql_as_postgres_hint() {
  local who="sudo -u postgres" dir
  if [ "$(id -u)" = 0 ]; then who="runuser -u postgres --"; fi
  dir=$(socket_dir 2>/dev/null) || dir=/var/run/postgresql
  printf '%s psql -h %s -p %s -d postgres -c %s' "$who" "$dir" "$PG_PORT" "$(shell_quote "$1")"
}

# Runs SQL $1 (explained as $2) as the OS user `postgres`, or stops with the one-line command.
fix_as_postgres() {
  local sql=$1 what=$2 out
  if ! is_local_host "$PG_HOST"; then
    die "$what is needed on $PG_HOST:$PG_PORT, which is not this machine: run there, as a superuser: $sql"
  fi
  if ! as_postgres_prefix >/dev/null || ! socket_dir >/dev/null; then
    # The password of PAM_TEST_DATABASE_URL is not printed: the command shows where it goes.
    local shown=$sql
    if $PG_HAS_PASSWORD; then shown=${sql/"PASSWORD '"*"'"/"PASSWORD '<the password of PAM_TEST_DATABASE_URL>'"}; fi
    die "$what needs the OS user postgres, which this user ($(id -un)) cannot become here; run: $(psql_as_postgres_hint "$shown")"
  fi
  say "$what (as the OS user postgres)"
  out=$(psql_as_postgres "$sql" 2>&1) || die "$what failed: $out"
}

# --- Postgres ---------------------------------------------------------------------------------

# The Debian cluster (`version name status`) set to listen on PG_PORT, if any.
cluster_on_port() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 1
  pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2, $4; found = 1; exit } END { exit !found }'
}

pg_answers() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1; }

start_postgres() {
  local cluster version name latest prefix=""
  if ! is_local_host "$PG_HOST"; then
    die "Postgres does not answer at $PG_HOST:$PG_PORT (PAM_TEST_DATABASE_URL=$PG_SHOWN); start it there or point PAM_TEST_DATABASE_URL at a running server"
  fi
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    die "Postgres does not answer on $PG_HOST:$PG_PORT and no Debian cluster tools are here: apt-get install postgresql, or start your server and point PAM_TEST_DATABASE_URL at it"
  fi
  [ "$(id -u)" = 0 ] || prefix="sudo "
  if cluster=$(cluster_on_port); then
    read -r version name _ <<<"$cluster"
    say "starting Postgres $version/$name on port $PG_PORT (pg_ctlcluster)"
    if ! pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >/dev/null 2>&1 && ! pg_answers; then
      die "Postgres $version/$name is stopped and this user ($(id -un)) cannot start it; run: ${prefix}pg_ctlcluster $version $name start"
    fi
  elif [ -z "$(pg_lsclusters -h 2>/dev/null)" ] && latest=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1) && [ -n "$latest" ]; then
    # No cluster at all (createcluster.conf said not to make one): make a test cluster that
    # trusts local TCP logins, as the tests expect; ours, so its pg_hba.conf is ours to set.
    if [ "$(id -u)" != 0 ]; then
      die "Postgres $latest is installed but has no cluster; run: sudo pg_createcluster --start -p $PG_PORT $latest main -- --auth-host=trust --auth-local=peer"
    fi
    say "creating and starting Postgres cluster $latest/main on port $PG_PORT (trusts logins from this machine over TCP)"
    pg_createcluster --start -p "$PG_PORT" "$latest" main -- --auth-host=trust --auth-local=peer >/dev/null
  else
    die "no Postgres cluster here listens on port $PG_PORT (pg_lsclusters: $(pg_lsclusters -h | awk '{printf "%s%s/%s port %s %s", sep, $1, $2, $3, $4; sep="; "}')); start one there or set PAM_TEST_DATABASE_URL to the port of yours"
  fi
  wait_for pg_answers || die "Postgres was started but does not answer on $PG_HOST:$PG_PORT within 10 s; see the log in /var/log/postgresql/"
}

# Says which pg_hba.conf lines would let PG_USER log in without a password, and stops.
explain_password_auth() {
  local why=$1 hba="" reload="" version name sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo "
  if $PG_HAS_PASSWORD; then
    die "Postgres at $PG_HOST:$PG_PORT refused the login of $PG_USER with the password in PAM_TEST_DATABASE_URL ($why); fix that password (ALTER ROLE \"$PG_USER\" PASSWORD '…' as a superuser)"
  fi
  hba=$(psql_as_postgres "SHOW hba_file" 2>/dev/null) || hba=""
  if read -r version name _ <<<"$(cluster_on_port)" && [ -n "${version:-}" ]; then
    hba=${hba:-/etc/postgresql/$version/$name/pg_hba.conf}
    reload="${sudo}pg_ctlcluster $version $name reload"
  fi
  reload=${reload:-"$(psql_as_postgres_hint 'SELECT pg_reload_conf()')"}
  say "Postgres at $PG_HOST:$PG_PORT asks $PG_USER for a password ($why), and PAM_TEST_DATABASE_URL has none."
  local where=${hba:-"the server's pg_hba.conf (SHOW hba_file)"}
  say "The tests log in over TCP without one: add these two lines at the top of $where, then reload:"
  say "  host    all    $PG_USER    127.0.0.1/32    trust"
  say "  host    all    $PG_USER    ::1/128         trust"
  if [ -n "$hba" ]; then
    say "in one line: ${sudo}sed -i '1i host    all    $PG_USER    127.0.0.1/32    trust\\nhost    all    $PG_USER    ::1/128         trust' $hba && $reload"
  fi
  say "(or put a password in PAM_TEST_DATABASE_URL: postgres://$PG_USER:PASSWORD@$PG_HOST:$PG_PORT/$PG_DB)"
  exit 1
}

# One login attempt as the URL says; prints whether the role is a superuser (t/f), or the error.
probe_login() { psql -X -q "$PAM_TEST_DATABASE_URL" -Atc "SELECT rolsuper FROM pg_roles WHERE rolname = current_user" 2>&1; }

# The test database and a superuser login role, on a server that answers.
prepare_postgres_database() {
  local out quoted_user quoted_db
  quoted_user=$(sql_ident "$PG_USER") quoted_db=$(sql_ident "$PG_DB")
  for _ in 1 2 3 4; do
    out=$(probe_login) && case "$out" in
      t) say "Postgres answers at $PG_HOST:$PG_PORT; database $PG_DB is ready for $PG_USER"; return 0 ;;
      f) fix_as_postgres "ALTER ROLE $quoted_user SUPERUSER" "making $PG_USER a superuser (the tests create databases and roles)"; continue ;;
    esac
    case "$out" in
      *"database \"$PG_DB\" does not exist"*)
        say "creating database $PG_DB on $PG_HOST:$PG_PORT"
        psql -X -q "$PG_ADMIN_URL" -c "CREATE DATABASE $quoted_db" >/dev/null 2>&1 ||
          fix_as_postgres "CREATE DATABASE $quoted_db OWNER $quoted_user" "creating database $PG_DB"
        ;;
      *"role \"$PG_USER\" does not exist"*)
        local password=""
        if $PG_HAS_PASSWORD; then password=" PASSWORD '${PG_PASSWORD//\'/\'\'}'"; fi
        fix_as_postgres "CREATE ROLE $quoted_user LOGIN SUPERUSER$password" "creating the login role $PG_USER (a superuser: the tests create databases and roles)"
        ;;
      *"password authentication failed"* | *"no password supplied"* | *"Peer authentication failed"* | *"Ident authentication failed"*)
        explain_password_auth "$(printf '%s' "$out" | grep -m1 -o 'FATAL: .*\|fe_sendauth: .*' || echo "$out")"
        ;;
      *"no pg_hba.conf entry"*)
        die "Postgres at $PG_HOST:$PG_PORT has no pg_hba.conf line for $PG_USER from here ($(printf '%s' "$out" | grep -m1 -o 'no pg_hba.conf entry.*')); add: host all $PG_USER 127.0.0.1/32 trust (and reload)"
        ;;
      *) die "Postgres at $PG_HOST:$PG_PORT answers, but logging in with PAM_TEST_DATABASE_URL=$PG_SHOWN failed: $(printf '%s' "$out" | tr '\n' ' ')" ;;
    esac
  done
  die "could not prepare database $PG_DB on $PG_HOST:$PG_PORT (last answer: $out)"
}

prepare_postgres() {
  parse_database_url
  command -v pg_isready >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 ||
    die "psql and pg_isready are needed to check and prepare the test database: apt-get install postgresql (or postgresql-client for a server elsewhere)"
  pg_answers || start_postgres
  prepare_postgres_database
}

# --- Redis ------------------------------------------------------------------------------------

redis_answers() { [ "$(redis-cli -u "$PAM_TEST_REDIS_URL" ping 2>/dev/null)" = PONG ]; }

prepare_redis() {
  parse_redis_url
  command -v redis-cli >/dev/null 2>&1 || die "redis-cli is needed to check Redis: apt-get install redis-server (or redis-tools for a server elsewhere)"
  if redis_answers; then say "Redis answers at $REDIS_HOST:$REDIS_PORT"; return; fi
  is_local_host "$REDIS_HOST" ||
    die "Redis does not answer at $REDIS_HOST:$REDIS_PORT (PAM_TEST_REDIS_URL); start it there or point PAM_TEST_REDIS_URL at a running server"
  command -v redis-server >/dev/null 2>&1 ||
    die "Redis does not answer at $REDIS_HOST:$REDIS_PORT and is not installed: apt-get install redis-server (or set PAM_TEST_REDIS_URL)"
  local dir=/var/lib/redis logdir=/var/log/redis
  mkdir -p "$dir" "$logdir" 2>/dev/null || true
  if [ ! -w "$dir" ] || [ ! -w "$logdir" ]; then dir=${TMPDIR:-/tmp}/pam-test-redis logdir=$dir; mkdir -p "$dir"; fi
  say "starting Redis on port $REDIS_PORT (redis-server --daemonize yes, log in $logdir/ci.log)"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$dir" --logfile "$logdir/ci.log" >/dev/null || true
  wait_for redis_answers || die "redis-server was started but does not answer on port $REDIS_PORT within 10 s; see $logdir/ci.log"
}

# --- The suite --------------------------------------------------------------------------------

ensure_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then return; fi
  say "cargo-nextest missing: installing it from crates.io (one time)"
  cargo install cargo-nextest --locked
}

# Node >= 20 and npm, for the SDK tests: checked before anything long runs.
check_node() {
  local major
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    die "the pam-client SDK tests (web/client) need Node >= 20 with npm, and $(command -v node >/dev/null 2>&1 && echo "npm" || echo "node") is not installed: install Node 20 (Debian 13: apt-get install nodejs npm; Debian 12: Node 20 from https://deb.nodesource.com), or skip the SDK tests with ./scripts/test.sh --no-sdk"
  fi
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    die "the pam-client SDK tests (web/client) need Node >= 20, and node is $(node --version): install Node 20 (Debian 12 ships 18: take it from https://deb.nodesource.com), or skip the SDK tests with ./scripts/test.sh --no-sdk"
  fi
}

main() {
  local prepare_only=false sdk=true
  local args=()
  for arg in "$@"; do
    case "$arg" in
      --prepare-only) prepare_only=true ;;
      --no-sdk) sdk=false ;;
      *) args+=("$arg") ;;
    esac
  done
  cd "$(dirname "$0")/.."
  if ! $prepare_only && $sdk; then check_node; fi
  prepare_postgres
  prepare_redis
  if $prepare_only; then return 0; fi
  ensure_nextest
  # The alert drills evaluate the deployed rules against series scraped from real nodes.
  bash scripts/ensure-tool.sh promtool prometheus || die "promtool is needed by the alert drills (see the line above)"
  # The pooler tests start a PgBouncer in transaction mode in front of the test Postgres.
  bash scripts/ensure-tool.sh pgbouncer pgbouncer || die "pgbouncer is needed by the pooler tests (see the line above)"
  say "running the suite"
  cargo nextest run --workspace --all-targets --no-fail-fast ${args[@]+"${args[@]}"}
  if $sdk; then
    say "running the pam-client SDK tests (web/client: unit, then against the gateway binary)"
    bash web/client/scripts/test.sh
  fi
}

# Sourced (scripts/check-test-bootstrap.sh): the functions only.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
