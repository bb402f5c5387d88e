# Sourced by scripts/browser-test.sh and scripts/smoke.sh (each defines `say` first): runs a
# pam-gateway binary on a free loopback port with a throwaway SQLite database and none of the
# caller's auth, origin or Redis settings, waits until /health/live answers, and stops it (and
# removes its directory) when the calling script exits.
# After `gateway_start`: $gateway_port, $gateway_workdir, $gateway_log.

gateway_pid=""
gateway_port=""
gateway_workdir=$(mktemp -d)
gateway_log="$gateway_workdir/gateway.log"

gateway_stop() {
  if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill "$gateway_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$gateway_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  rm -rf "$gateway_workdir"
}
trap gateway_stop EXIT
trap 'exit 130' INT TERM

gateway_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
    || node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# gateway_start BIN [NAME=value ...]: the extra settings go into the gateway's environment.
gateway_start() {
  local bin=$1; shift
  gateway_port=$(gateway_free_port)
  say "starting $bin on 127.0.0.1:$gateway_port (sqlite in $gateway_workdir)"
  env -u SUPABASE_JWT_SECRET -u SUPABASE_URL -u PAM_JWKS_URL -u PAM_JWT_ISSUER -u PAM_JWT_AUDIENCE -u PAM_DEV_AUTH \
    -u PAM_ALLOWED_ORIGINS -u REDIS_URL \
    PAM_LISTEN="127.0.0.1:$gateway_port" DATABASE_URL="sqlite://$gateway_workdir/gateway.db" "$@" \
    "$bin" >"$gateway_log" 2>&1 &
  gateway_pid=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$gateway_pid" 2>/dev/null; then
      say "the gateway exited; its log:"; tail -n 40 "$gateway_log" >&2 || true; return 1
    fi
    if curl -fsS -o /dev/null "http://127.0.0.1:$gateway_port/health/live" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  say "the gateway did not answer /health/live within 20 s; its log:"; tail -n 40 "$gateway_log" >&2 || true
  return 1
}
