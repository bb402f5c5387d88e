#!/usr/bin/env bash
# RFC 6455 conformance (CI): runs the Autobahn testsuite's fuzzingclient (cases 1–7, 9, 10) against
# the gateway's /conformance/echo (PAM_CONFORMANCE_ECHO=true: the production upgrade, buffer sizes
# and WebSocket config, with its violations → 1002/1007/1009 mapping) and, for comparison, against
# a bare tokio-tungstenite echo (`pam-loadtest echo-server --raw`). Prints OK / NON-STRICT /
# INFORMATIONAL / UNIMPLEMENTED / FAILED counts for both, writes them as markdown to
# target/autobahn/summary.md (docs/autobahn-summary.md is a committed copy), and exits non-zero
# when the gateway has any FAILED case (behaviour or close behaviour) or more NON-STRICT cases
# than scripts/autobahn-baseline.json allows. The bare server's figures are informational only.
#
# scripts/lib/autobahn-setup.sh installs wstest (Python 2 + autobahntestsuite, no Docker) into
# ~/.cache/wstest once.
#
# usage: scripts/autobahn.sh      env: AUTOBAHN_PROFILE=release|debug (default release),
#                                      AUTOBAHN_SKIP_BUILD=1 (use the binaries already built),
#                                      AUTOBAHN_CASES='["5.*"]' (a subset, for local runs)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { printf '[autobahn.sh] %s\n' "$*"; }

setup="$repo/scripts/lib/autobahn-setup.sh"
say "installing wstest (first run only)"
wstest=$(bash "$setup" | tail -n 1)
wstest_home=$(dirname "$(dirname "$(dirname "$wstest")")")
export LD_LIBRARY_PATH="$wstest_home/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

profile=${AUTOBAHN_PROFILE:-release}
case "$profile" in
  release) build_flags=(--release) ;;
  debug) build_flags=() ;;
  *) say "AUTOBAHN_PROFILE must be release or debug, not $profile"; exit 2 ;;
esac
if [[ "${AUTOBAHN_SKIP_BUILD:-}" != 1 ]]; then
  say "cargo build ${build_flags[*]} -p pam-gateway -p pam-loadtest"
  cargo build "${build_flags[@]}" --locked -p pam-gateway -p pam-loadtest
fi
bin_dir="target/$profile"

source scripts/lib/gateway.sh
out="$repo/target/autobahn"
rm -rf "$out" && mkdir -p "$out"

# Case 9 sends messages of up to 16 MiB (9.1.6, 9.2.6): the echo gets a frame and message limit
# that fits them. The limit itself is enforced and tested with the production default
# (tests/suite/hostile_edge.rs); everything else is the production configuration.
gateway_start "$bin_dir/pam-gateway" PAM_CONFORMANCE_ECHO=true PAM_MAX_FRAME_BYTES=16777216 PAM_LOG_FORMAT=json RUST_LOG=warn

echo_log="$out/echo-server.log"
"$bin_dir/pam-loadtest" echo-server --raw --listen 127.0.0.1:0 2>"$echo_log" &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true; gateway_stop' EXIT
echo_addr=""
for _ in $(seq 1 100); do
  echo_addr=$(sed -n 's/^echo-server listening on //p' "$echo_log")
  [ -n "$echo_addr" ] && break
  sleep 0.1
done
[ -n "$echo_addr" ] || { say "the bare echo server did not start"; cat "$echo_log" >&2; exit 1; }

# Every case runs, the slow 9.x (messages of up to 16 MiB, 4 MiB in fragments or chunks) too: on
# this 2-core machine 9.* takes about 25 s per server and the whole run about 40 s per server
# (debug build; less in release), well inside CI's budget, so nothing is excluded.
cases=${AUTOBAHN_CASES:-'["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]'}

run_suite() { # agent url
  local agent=$1 url=$2
  cat >"$out/$agent.json" <<JSON
{"outdir": "$out/$agent", "servers": [{"agent": "$agent", "url": "$url"}], "cases": $cases, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
  say "wstest -m fuzzingclient against $agent ($url)"
  local started=$SECONDS
  (cd "$out" && "$wstest" -m fuzzingclient -s "$out/$agent.json" >"$out/$agent.log" 2>&1) || {
    say "wstest failed against $agent; its log:"; tail -n 40 "$out/$agent.log" >&2; return 1
  }
  say "$agent took $((SECONDS - started)) s"
}

run_suite pam-gateway "ws://127.0.0.1:$gateway_port/conformance/echo"
run_suite tokio-tungstenite "ws://$echo_addr"

python3 - "$out" scripts/autobahn-baseline.json <<'PY'
import json, sys
out, baseline_path = sys.argv[1], sys.argv[2]
baseline = json.load(open(baseline_path))
kinds = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]

def key(case):
    return [int(part) for part in case.split(".")]

def summary(agent):
    index = json.load(open(f"{out}/{agent}/index.json"))[agent]
    counts = {k: 0 for k in kinds}
    close_failed, odd = [], []
    for case, result in sorted(index.items(), key=lambda item: key(item[0])):
        counts[result["behavior"]] = counts.get(result["behavior"], 0) + 1
        if result["behavior"] in ("NON-STRICT", "FAILED", "UNIMPLEMENTED"):
            odd.append(f"{case} {result['behavior']}")
        if result.get("behaviorClose") == "FAILED":
            close_failed.append(case)
    return len(index), counts, close_failed, odd

rows, failed = [], False
lines = ["| server | cases | " + " | ".join(kinds) + " | close FAILED |", "|---" * (len(kinds) + 3) + "|"]
details = []
for agent in ["pam-gateway", "tokio-tungstenite"]:
    total, counts, close_failed, odd = summary(agent)
    print(f"{agent}: {total} cases: " + ", ".join(f"{k} {counts[k]}" for k in kinds) + f", close FAILED {len(close_failed)}")
    lines.append(f"| {agent} | {total} | " + " | ".join(str(counts[k]) for k in kinds) + f" | {len(close_failed)} |")
    details.append(f"- {agent}: " + (", ".join(odd + [f'{c} close FAILED' for c in close_failed]) or "every case OK or INFORMATIONAL"))
    if agent == "pam-gateway":
        allowed = baseline["pam-gateway"]["max_non_strict"]
        if counts["FAILED"] or close_failed:
            print(f"FAILED: the gateway failed {counts['FAILED']} case(s) and {len(close_failed)} close behaviour(s)")
            failed = True
        if counts["NON-STRICT"] > allowed:
            print(f"FAILED: {counts['NON-STRICT']} NON-STRICT cases, the baseline allows {allowed}")
            failed = True
with open(f"{out}/summary.md", "w") as f:
    f.write("\n".join(lines) + "\n\nCases not OK:\n" + "\n".join(details) + "\n")
print(open(f"{out}/summary.md").read())
sys.exit(1 if failed else 0)
PY
