#!/usr/bin/env bash
# Validates the deployment files under deploy/ (Prometheus config, alert rules and their unit
# tests, Kubernetes manifests, docker-compose file, Render blueprint, Grafana dashboard and
# provisioning, Dockerfile)
# and checks that every metric the dashboard and the alerts query is one the gateway exports.
#
# usage: scripts/check-deploy.sh [--metrics-url URL]
#   --metrics-url URL  (or env PAM_METRICS_URL) fetch a running gateway's /metrics and require
#                      every referenced pam_* metric to appear there; without it the names are
#                      checked against the fixed list from design.md ("Metrics").
# Needs bash, python3 with PyYAML, curl (for --metrics-url) and promtool; promtool is installed
# from Debian's `prometheus` package when missing. kubectl (kustomize build) is used when present.
# Prints one OK/FAIL/SKIP line per check; exits non-zero if any check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

METRICS_URL="${PAM_METRICS_URL:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --metrics-url) [[ $# -ge 2 ]] || { echo "--metrics-url needs a URL" >&2; exit 2; }
                   METRICS_URL="$2"; shift 2 ;;
    --metrics-url=*) METRICS_URL="${1#*=}"; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

DEPLOY=deploy
PROM_CONFIG="$DEPLOY/prometheus/prometheus.yml"
PROM_RULES="$DEPLOY/prometheus/alerts.yml"
PROM_RULE_TESTS="$DEPLOY/prometheus/alerts.test.yml"
DASHBOARD="$DEPLOY/grafana/dashboards/pam-gateway.json"
COMPOSE="$DEPLOY/docker-compose.yml"
K8S_DIR="$DEPLOY/k8s"

FAILURES=0
WORK="$(mktemp -d)"
cleanup() {
  rm -rf "$WORK"
}
trap cleanup EXIT

ok()   { printf 'OK    %s\n' "$1"; }
skip() { printf 'SKIP  %s\n' "$1"; }
fail() { printf 'FAIL  %s\n' "$1"; FAILURES=$((FAILURES + 1)); }
indent() { sed 's/^/      /'; }

# check NAME CMD...: runs CMD; OK when it exits 0, otherwise FAIL followed by its output.
# check_show prints the output on success too.
check() { SHOW=0 run_check "$@"; }
check_show() { SHOW=1 run_check "$@"; }
run_check() {
  local name="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then
    ok "$name"
    if [[ "$SHOW" == 1 && -n "$out" ]]; then printf '%s\n' "$out" | indent; fi
  else
    fail "$name"
    printf '%s\n' "$out" | indent
  fi
}

# ---------------------------------------------------------------------------------------------
# Python helper: parsing and cross-file consistency checks.
HELPER="$WORK/check_deploy.py"
cat > "$HELPER" <<'PY'
import json, os, re, sys

# design.md "Metrics" plus pam_orchestrators_active, the Redis and model-breaker metrics and the
# "nothing lost" storage metrics: the names the gateway exports. Left out: the per-process
# pam_turns_abandoned_total, still exported but neither charted nor alerted on (it moves moments
# before the process exits); pam_turns_abandoned_recent is the count that outlives it.
KNOWN_METRICS = {
    "pam_ws_connections", "pam_ws_connections_opened_total", "pam_ws_closed_total",
    "pam_ws_frames_total", "pam_auth_failures_total", "pam_chat_seconds",
    "pam_chat_first_token_seconds", "pam_llm_requests_total", "pam_llm_tokens_total", "pam_context_load_seconds",
    "pam_cache_requests_total", "pam_db_query_seconds", "pam_rate_limited_total",
    "pam_orchestrators_active", "pam_cache_errors_total", "pam_llm_circuit_open",
    "pam_storage_degraded", "pam_turns_pending", "pam_turns_dropped_total",
    "pam_turns_abandoned_recent", "pam_outbox_journaled_total", "pam_outbox_replayed_total",
    # scale-out (README "Running several nodes")
    "pam_node_up", "pam_redis_shared_state_degraded", "pam_redis_shared_errors_total",
    "pam_push_bus_published_total", "pam_push_bus_received_total", "pam_push_bus_delivered_total",
    "pam_push_catch_up_sockets_total",
    # proof of receipt (docs/protocol.md "Server push")
    "pam_push_proven_total", "pam_push_unproven_total",
}
# The gateway's defaults (src/settings/mod.rs) for the shutdown budget, in ms.
DEFAULT_SHUTDOWN_GRACE_MS = 10000
DEFAULT_LLM_TIMEOUT_MS = 30000
SUFFIXES = ("_bucket", "_sum", "_count")
NAME_RE = re.compile(r"(?<![A-Za-z0-9_:])pam_[A-Za-z0-9_:]*")


def yaml_mod():
    try:
        import yaml
    except ImportError:
        sys.exit("PyYAML is not installed (pip install pyyaml or apt-get install python3-yaml)")
    return yaml


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml_mod().safe_load_all(f) if d is not None]


def base_name(name):
    for s in SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def problems_exit(problems):
    if problems:
        print("\n".join(problems))
        sys.exit(1)


def cmd_yaml(paths):
    for p in paths:
        docs = load_yaml_docs(p)
        if not docs:
            sys.exit(f"{p}: no YAML documents")
        print(f"{p}: {len(docs)} document(s)")


def cmd_json(paths):
    for p in paths:
        with open(p) as f:
            json.load(f)


def dashboard_queries(path):
    """Every PromQL string of the dashboard: panel target exprs and templating queries."""
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if isinstance(q, str):
            out.append(q)
    return dash, out


def alert_exprs(path):
    exprs = []
    for doc in load_yaml_docs(path):
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                exprs.append(str(rule.get("expr", "")))
    return exprs


def referenced(exprs):
    return {base_name(m) for e in exprs for m in NAME_RE.findall(e)}


def exported_names(path):
    """Metric names in Prometheus text exposition, with histogram/summary suffixes stripped."""
    names = set()
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split()
                if len(parts) >= 3 and parts[1] in ("TYPE", "HELP"):
                    names.add(parts[2])
                continue
            m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
            if m:
                names.add(m.group(0))
    return names | {base_name(n) for n in names}


def cmd_dashboard(path, ds_file):
    dash, queries = dashboard_queries(path)
    problems = []
    if dash.get("schemaVersion") != 39:
        problems.append(f"schemaVersion is {dash.get('schemaVersion')}, expected 39")
    ds_uid = None
    for doc in load_yaml_docs(ds_file):
        for ds in doc.get("datasources", []):
            if ds.get("type") == "prometheus":
                ds_uid = ds.get("uid")
    if ds_uid is None:
        problems.append(f"{ds_file}: no prometheus datasource with a uid")
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            continue
        uids = [p.get("datasource", {}).get("uid")] + [
            t.get("datasource", {}).get("uid") for t in p.get("targets", [])]
        for uid in uids:
            if uid != ds_uid:
                problems.append(f"panel {p.get('title')!r}: datasource uid {uid!r} != {ds_uid!r}")
        if not p.get("targets"):
            problems.append(f"panel {p.get('title')!r}: no targets")
    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("duplicate panel ids")
    missing = sorted(KNOWN_METRICS - referenced(queries))
    if missing:
        problems.append("no panel queries " + ", ".join(missing))
    problems_exit(problems)


# Series a gateway only records once an optional dependency is configured: a live gateway without
# it (the smoke run: no Redis, no model keys) cannot show them, so their absence there is fine.
NEEDS_OPTIONAL_DEPENDENCY = {
    "pam_cache_errors_total": "REDIS_URL",
    "pam_llm_circuit_open": "a model provider key",
    # Labelled by the configured model names: the builtin assistant alone has none.
    "pam_llm_tokens_total": "a model provider key",
    # Counted only on a node with REDIS_URL, and only once a shared-state operation failed.
    "pam_redis_shared_errors_total": "REDIS_URL (and a failed shared-state operation)",
}


def cmd_metrics(dash_path, rules_path, exposition=None):
    _, queries = dashboard_queries(dash_path)
    refs = {"dashboard": referenced(queries), "alerts": referenced(alert_exprs(rules_path))}
    if exposition:
        have, where = exported_names(exposition), "the live /metrics text"
        for name, needs in NEEDS_OPTIONAL_DEPENDENCY.items():
            if name not in have:
                print(f"{name} not in the live /metrics text: it is recorded only with {needs}")
                have = have | {name}
    else:
        have, where = KNOWN_METRICS, "the fixed list from design.md"
    problems = []
    for source, names in refs.items():
        for n in sorted(names - have):
            problems.append(f"{source} references {n}, which is not in {where}")
    all_refs = set().union(*refs.values())
    if not all_refs:
        problems.append("no pam_* metric referenced at all (extraction broken?)")
    problems_exit(problems)
    print(f"{len(all_refs)} metric names checked against {where}: " + ", ".join(sorted(all_refs)))


def cmd_buckets(dash_path, rules_path, exposition):
    """A histogram without configured buckets is rendered as a summary (quantile series and no
    _bucket), which leaves every histogram_quantile() on _bucket empty."""
    _, queries = dashboard_queries(dash_path)
    exprs = queries + alert_exprs(rules_path)
    wanted = {m for e in exprs for m in NAME_RE.findall(e) if m.endswith("_bucket")}
    samples, quantiles = set(), set()
    with open(exposition, errors="replace") as f:
        for line in f:
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?", line)
            if m and not line.startswith("#"):
                samples.add(m.group(1))
                if m.group(2) and 'quantile="' in m.group(2):
                    quantiles.add(m.group(1))
    problems = []
    for w in sorted(wanted):
        base = w[: -len("_bucket")]
        if w in samples:
            continue
        if base in quantiles:
            problems.append(f"{base} is exported as a summary (quantile=...), not a histogram: "
                            "configure buckets for it in the exporter (set_buckets_for_metric)")
        elif base in samples or base + "_count" in samples:
            problems.append(f"{base} has no {w} series")
    problems_exit(problems)


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def budget_problems(env, where):
    """PAM_SHUTDOWN_GRACE_MS must exceed PAM_LLM_TIMEOUT_MS, or a turn that started just before
    the stop is cut off by the drain instead of by its own model deadline."""
    grace_ms = int(env.get("PAM_SHUTDOWN_GRACE_MS") or DEFAULT_SHUTDOWN_GRACE_MS)
    llm_ms = int(env.get("PAM_LLM_TIMEOUT_MS") or DEFAULT_LLM_TIMEOUT_MS)
    problems = []
    if not grace_ms > llm_ms:
        problems.append(f"{where}: PAM_SHUTDOWN_GRACE_MS {grace_ms} <= PAM_LLM_TIMEOUT_MS {llm_ms}: "
                        "turns still waiting for the model when the grace ends are abandoned")
    return grace_ms, problems


def journal_problems(path, mounts, where):
    """PAM_OUTBOX_JOURNAL must be set and lie on a writable mounted volume."""
    if not path:
        return [f"{where}: PAM_OUTBOX_JOURNAL is not set"]
    if not path.startswith("/"):
        return [f"{where}: PAM_OUTBOX_JOURNAL {path!r} is not an absolute path"]
    parent = os.path.dirname(path)
    for mount, read_only in mounts:
        if (parent + "/").startswith(mount.rstrip("/") + "/"):
            return [f"{where}: PAM_OUTBOX_JOURNAL {path} is on the read-only mount {mount}"] if read_only else []
    return [f"{where}: PAM_OUTBOX_JOURNAL {path} is not on a mounted volume "
            f"(mounts: {sorted(m for m, _ in mounts)})"]


def duration_s(text):
    """Seconds in a compose duration such as 45s, 1m30s or 1m."""
    total, matched = 0.0, False
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text)):
        matched = True
        total += float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}[unit]
    if not matched:
        raise ValueError(f"not a duration: {text!r}")
    return total


def cmd_k8s(k8s_dir):
    problems = []
    by_kind = {}
    files = sorted(f for f in os.listdir(k8s_dir) if f.endswith((".yaml", ".yml")))
    for f in files:
        for doc in load_yaml_docs(os.path.join(k8s_dir, f)):
            by_kind.setdefault(doc.get("kind"), []).append((f, doc))

    kust = [d for _, d in by_kind.get("Kustomization", [])]
    listed = set(kust[0].get("resources", [])) if kust else set()
    if not kust:
        problems.append("no kustomization.yaml")
    for f in files:
        if f != "kustomization.yaml" and f not in listed:
            problems.append(f"kustomization.yaml does not list {f}")
    for r in listed:
        if not os.path.exists(os.path.join(k8s_dir, r)):
            problems.append(f"kustomization.yaml lists missing {r}")

    deps = by_kind.get("Deployment", [])
    if len(deps) != 1:
        problems_exit(problems + [f"expected one Deployment, found {len(deps)}"])
    dep = deps[0][1]
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    c = pod["containers"][0]
    env = env_map(c)
    if spec.get("replicas") != 3:
        problems.append(f"replicas {spec.get('replicas')} != 3")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        problems.append("runAsNonRoot not set")
    if (csc.get("runAsUser") or psc.get("runAsUser")) != 10001:
        problems.append("runAsUser is not 10001 (the image's pam user)")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    res = c.get("resources", {})
    if not res.get("requests") or not res.get("limits"):
        problems.append("resources.requests/limits missing")
    for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
        got = c.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            problems.append(f"{probe} path {got!r} != {path!r}")
    listen = env.get("PAM_LISTEN", {}).get("value", "")
    port = listen.rsplit(":", 1)[-1] if listen else None
    container_ports = {str(p["containerPort"]) for p in c.get("ports", [])}
    if listen != "0.0.0.0:8080":
        problems.append(f"PAM_LISTEN {listen!r} != '0.0.0.0:8080'")
    if port not in container_ports:
        problems.append(f"PAM_LISTEN port {port} is not a containerPort {sorted(container_ports)}")
    if annotations.get("prometheus.io/scrape") != "true" or \
            annotations.get("prometheus.io/port") != port or \
            annotations.get("prometheus.io/path") != "/metrics":
        problems.append(f"prometheus.io annotations wrong: {annotations}")
    # Scale-out: every pod shares one Redis (a Secret or ConfigMap reference, never a literal
    # that could differ between rollouts) and is its own node, named after the pod.
    redis = env.get("REDIS_URL", {}).get("valueFrom", {})
    if not (redis.get("secretKeyRef") or redis.get("configMapKeyRef")):
        problems.append("env REDIS_URL is not taken from a Secret or ConfigMap")
    elif (redis.get("secretKeyRef") or redis.get("configMapKeyRef")).get("optional"):
        problems.append("env REDIS_URL is optional: a pod without it would run as a lone node")
    node = env.get("PAM_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {})
    if node.get("fieldPath") != "metadata.name":
        problems.append("env PAM_NODE_ID is not the pod name (valueFrom.fieldRef.fieldPath: metadata.name)")
    for name in ("DATABASE_URL", "SUPABASE_JWT_SECRET", "SUPABASE_URL",
                 "ANTHROPIC_API_KEY", "PAM_ADMIN_TOKEN"):
        ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef", {})
        if ref.get("name") != "pam-gateway" or ref.get("key") != name:
            problems.append(f"env {name} is not taken from Secret pam-gateway key {name}")
    # shutdown budget: model timeout < drain grace; preStop sleep + drain grace must fit in
    # terminationGracePeriodSeconds
    values = {k: e.get("value") for k, e in env.items()}
    grace_ms, budget = budget_problems(values, "k8s")
    problems += budget
    mounts = [(m["mountPath"], m.get("readOnly", False)) for m in c.get("volumeMounts", [])]
    problems += journal_problems(values.get("PAM_OUTBOX_JOURNAL"), mounts, "k8s")
    cmdline = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep_s = 0
    if cmdline[:1] == ["sleep"] and len(cmdline) == 2:
        sleep_s = int(cmdline[1])
    else:
        problems.append(f"preStop is not `sleep N`: {cmdline}")
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if not tgps > sleep_s + grace_ms / 1000:
        problems.append(f"terminationGracePeriodSeconds {tgps} <= preStop {sleep_s}s + "
                        f"PAM_SHUTDOWN_GRACE_MS {grace_ms}ms")

    def selects(selector):
        return selector and all(pod_labels.get(k) == v for k, v in selector.items())

    for f, svc in by_kind.get("Service", []):
        if not selects(svc["spec"].get("selector")):
            problems.append(f"{f}: Service selector does not match the pod labels")
        named = {p["name"] for p in c.get("ports", [])}
        for p in svc["spec"].get("ports", []):
            t = p.get("targetPort")
            if str(t) not in container_ports and t not in named:
                problems.append(f"{f}: targetPort {t} is not a container port")
    for f, pdb in by_kind.get("PodDisruptionBudget", []):
        if pdb["spec"].get("minAvailable") != 2:
            problems.append(f"{f}: minAvailable != 2")
        if not selects(pdb["spec"].get("selector", {}).get("matchLabels")):
            problems.append(f"{f}: selector does not match the pod labels")
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if not hpas:
        problems.append("no HorizontalPodAutoscaler")
    for f, hpa in hpas:
        if hpa.get("apiVersion") != "autoscaling/v2":
            problems.append(f"{f}: apiVersion is not autoscaling/v2")
        if hpa["spec"]["scaleTargetRef"].get("name") != dep["metadata"]["name"]:
            problems.append(f"{f}: scaleTargetRef is not the Deployment")
        if hpa["spec"].get("minReplicas", 1) < 3:
            problems.append(f"{f}: minReplicas below the PDB's 2 + 1")
        kinds = {m["type"] for m in hpa["spec"].get("metrics", [])}
        for m in hpa["spec"].get("metrics", []):
            if m["type"] == "Pods" and m["pods"]["metric"]["name"] not in KNOWN_METRICS:
                problems.append(f"{f}: Pods metric {m['pods']['metric']['name']} not exported")
        if kinds != {"Pods", "Resource"}:
            problems.append(f"{f}: expected a Pods and a Resource metric, got {sorted(kinds)}")
    problems_exit(problems)


def gateway_services(services):
    """The services running the gateway: built from deploy/Dockerfile or from its image."""
    return {name: svc for name, svc in services.items()
            if "Dockerfile" in str((svc.get("build") or {}).get("dockerfile", ""))
            or str(svc.get("image", "")).startswith("pam-gateway")}


def compose_env(svc):
    env = svc.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return env


def compose_volumes(svc):
    """(source, target, read_only) of each volume entry."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            if len(parts) >= 2:
                out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            out.append((v.get("source", ""), v.get("target", ""), bool(v.get("read_only"))))
    return out


def proxy_problems(base, services, gateways, networks):
    """An nginx or HAProxy service in front of the gateways, configured for WebSockets."""
    import ipaddress
    problems = []
    proxies = {n: s for n, s in services.items()
               if re.match(r"(docker\.io/)?(library/)?(nginx|haproxy)(:|$)", str(s.get("image", "")))}
    if not proxies:
        return ["no proxy service (official nginx or haproxy image) in front of the gateways"]
    for name, svc in proxies.items():
        kind = "nginx" if "nginx" in svc["image"] else "haproxy"
        confs = [os.path.join(base, src) for src, _, _ in compose_volumes(svc)
                 if src.startswith(".") and os.path.isfile(os.path.join(base, src))]
        if not confs:
            problems.append(f"{name}: no config file mounted from deploy/")
            continue
        text = "\n".join(open(c).read() for c in confs)
        for g in gateways:
            if not re.search(rf"(?m)^\s*server\s+\S*\b{re.escape(g)}:8080\b", text):
                problems.append(f"{name}: gateway {g}:8080 is not a backend server in {confs}")
        if kind == "nginx":
            need = {
                "Upgrade header": r"proxy_set_header\s+Upgrade\s+\$http_upgrade",
                "Connection header": r"proxy_set_header\s+Connection\s+\S+",
                "HTTP/1.1 upstream": r"proxy_http_version\s+1\.1",
                "X-Forwarded-For": r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for",
            }
            timeouts = re.findall(r"proxy_read_timeout\s+(\d+)(s|m|h)?", text)
        else:
            need = {"X-Forwarded-For": r"option\s+forwardfor", "HTTP mode": r"mode\s+http"}
            timeouts = re.findall(r"timeout\s+tunnel\s+(\d+)(s|m|h)?", text)
        for what, rx in need.items():
            if not re.search(rx, text):
                problems.append(f"{name}: {what} not set in {confs}")
        secs = [int(v) * {"": 1, "s": 1, "m": 60, "h": 3600}[u] for v, u in timeouts]
        if not secs or min(secs) < 600:
            problems.append(f"{name}: WebSocket read/tunnel timeout missing or under 10 min: {timeouts}")
        deps = svc.get("depends_on") or {}
        for g in gateways:
            if g not in deps:
                problems.append(f"{name}: does not depend on {g}")
    # PAM_TRUSTED_PROXIES must cover the network the proxy reaches the gateways from.
    subnets = []
    for net in (networks or {}).values():
        for cfg in ((net or {}).get("ipam") or {}).get("config", []) or []:
            if cfg.get("subnet"):
                subnets.append(ipaddress.ip_network(cfg["subnet"]))
    if not subnets:
        problems.append("no compose network with a fixed ipam subnet for PAM_TRUSTED_PROXIES to name")
    for g, svc in gateways.items():
        trusted = compose_env(svc).get("PAM_TRUSTED_PROXIES") or ""
        cidrs = []
        for part in re.split(r"[,\s]+", str(trusted).strip()):
            if part:
                try:
                    cidrs.append(ipaddress.ip_network(part, strict=False))
                except ValueError:
                    problems.append(f"{g}: PAM_TRUSTED_PROXIES entry {part!r} is not a CIDR")
        for net in subnets:
            if not any(net.version == c.version and net.subnet_of(c) for c in cidrs):
                problems.append(f"{g}: PAM_TRUSTED_PROXIES {trusted!r} does not cover the compose network {net}")
    return problems


def cmd_compose(path):
    problems = []
    base = os.path.dirname(path)
    raw = open(path).read()
    doc = load_yaml_docs(path)[0]
    services = doc.get("services", {})
    for s in ("postgres", "redis", "prometheus", "grafana"):
        if s not in services:
            problems.append(f"service {s} missing")
    gateways = gateway_services(services)
    if len(gateways) < 2:
        problems.append(f"{len(gateways)} gateway service(s) ({sorted(gateways)}): scale-out needs at least 2")
    node_ids, journals = {}, {}
    for name, gw in gateways.items():
        where = f"compose {name}"
        build = gw.get("build", {})
        ctx = os.path.normpath(os.path.join(base, build.get("context", ".")))
        if build and not os.path.isfile(os.path.join(ctx, build.get("dockerfile", "Dockerfile"))):
            problems.append(f"{name} build: {build.get('dockerfile')} not found in context {ctx}")
        if build and not os.path.isfile(os.path.join(ctx, "Cargo.toml")) and os.path.isdir(os.path.join(ctx, "src")):
            problems.append(f"{name} build context {ctx} has src/ but no Cargo.toml")
        env = compose_env(gw)
        for k in ("DATABASE_URL", "REDIS_URL", "SUPABASE_JWT_SECRET", "PAM_ALLOWED_ORIGINS", "PAM_NODE_ID"):
            if k not in env:
                problems.append(f"{name} env {k} missing")
        if "REDIS_URL" in env and not env["REDIS_URL"]:
            problems.append(f"{name}: REDIS_URL is empty (the replicas must share one Redis)")
        if env.get("PAM_NODE_ID"):
            node_ids.setdefault(env["PAM_NODE_ID"], []).append(name)
        grace_ms, budget = budget_problems(env, where)
        problems += budget
        stop_s = duration_s(gw.get("stop_grace_period", "10s"))
        if not stop_s > grace_ms / 1000:
            problems.append(f"{where}: stop_grace_period {stop_s:g}s <= PAM_SHUTDOWN_GRACE_MS "
                            f"{grace_ms}ms: Docker would SIGKILL the drain")
        vols = compose_volumes(gw)
        mounts = [(t, ro) for _, t, ro in vols]
        journal = env.get("PAM_OUTBOX_JOURNAL")
        problems += journal_problems(journal, mounts, where)
        if journal:
            # The volume holding the journal: it must be a named volume of this replica alone.
            parent = os.path.dirname(journal)
            for src, target, _ in vols:
                if (parent + "/").startswith(target.rstrip("/") + "/"):
                    if src.startswith((".", "/")):
                        problems.append(f"{where}: outbox journal on a bind mount {src}, not a named volume")
                    elif src not in (doc.get("volumes") or {}):
                        problems.append(f"{where}: volume {src} is not declared under volumes:")
                    journals.setdefault(src, []).append(name)
        for dep, cond in (gw.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy" and "healthcheck" not in services.get(dep, {}):
                problems.append(f"{name} waits for {dep} healthy but {dep} has no healthcheck")
        for s in ("postgres", "redis"):
            if (gw.get("depends_on") or {}).get(s, {}).get("condition") != "service_healthy":
                problems.append(f"{name} does not wait for {s} to be healthy")
    for node, names in node_ids.items():
        if len(names) > 1:
            problems.append(f"PAM_NODE_ID {node!r} is shared by {names}: every replica needs its own")
    for vol, names in journals.items():
        if len(names) > 1:
            problems.append(f"outbox journal volume {vol} is shared by {names}: each replica needs its own")
    redis_urls = {compose_env(g).get("REDIS_URL") for g in gateways.values()}
    db_urls = {compose_env(g).get("DATABASE_URL") for g in gateways.values()}
    if len(redis_urls) > 1 or len(db_urls) > 1:
        problems.append(f"the replicas do not share one REDIS_URL and DATABASE_URL: {redis_urls} {db_urls}")
    if "${SUPABASE_JWT_SECRET:?" not in raw:
        problems.append("SUPABASE_JWT_SECRET must be required with ${SUPABASE_JWT_SECRET:?...}")
    problems += proxy_problems(base, services, gateways, doc.get("networks"))
    # A service waiting for another to be healthy: that one needs a healthcheck (the gateway
    # image has its own HEALTHCHECK, checked with the Dockerfile).
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, dict):
            for dep, cond in deps.items():
                if ((cond or {}).get("condition") == "service_healthy" and dep not in gateways
                        and "healthcheck" not in services.get(dep, {})):
                    problems.append(f"{name} waits for {dep} healthy but {dep} has no healthcheck")
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith("."):
                if not os.path.exists(os.path.join(base, src)):
                    problems.append(f"{name}: mounted path {src} does not exist")
    # Prometheus scrapes every replica.
    prom = os.path.join(base, "prometheus", "prometheus.yml")
    if os.path.isfile(prom):
        targets = {t for d in load_yaml_docs(prom) for job in d.get("scrape_configs", [])
                   for sc in job.get("static_configs", []) for t in sc.get("targets", [])}
        for g in gateways:
            if f"{g}:8080" not in targets:
                problems.append(f"{prom}: gateway {g}:8080 is not scraped")
    problems_exit(problems)


def cmd_grafana(provider_file, compose_file, dashboard):
    problems = []
    compose = load_yaml_docs(compose_file)[0]
    mounts = {}
    for v in compose.get("services", {}).get("grafana", {}).get("volumes", []):
        if isinstance(v, str) and v.startswith("."):
            src, dst = v.split(":")[:2]
            mounts[dst] = os.path.normpath(os.path.join(os.path.dirname(compose_file), src))
    for doc in load_yaml_docs(provider_file):
        for prov in doc.get("providers", []):
            path = prov.get("options", {}).get("path")
            host = mounts.get(path)
            if host is None:
                problems.append(f"provider path {path} is not mounted into grafana")
            elif not os.path.isfile(os.path.join(host, os.path.basename(dashboard))):
                problems.append(f"{dashboard} is not under the provider path mount {host}")
    problems_exit(problems)


def cmd_dockerfile(path):
    text = open(path).read()
    need = {
        "builder FROM rust:1-bookworm": r"(?m)^FROM\s+\$\{RUST_IMAGE\}|^FROM\s+rust:1-bookworm",
        "runtime debian:bookworm-slim": r"debian:bookworm-slim",
        "cargo build --release --locked -p pam-gateway": r"cargo build --release --locked -p pam-gateway",
        "user 10001": r"(?m)^USER\s+10001",
        "PORT=8080": r"(?m)^ENV\s+PORT=8080\b",
        "EXPOSE 8080": r"(?m)^EXPOSE\s+8080",
        "HEALTHCHECK /health/live": r'HEALTHCHECK[\s\S]*curl -fsS "http://127\.0\.0\.1:\$\{PORT:-8080\}/health/live"',
        "STOPSIGNAL SIGTERM": r"(?m)^STOPSIGNAL\s+SIGTERM",
        "ENV PAM_OUTBOX_JOURNAL under /var/lib/pam": r"PAM_OUTBOX_JOURNAL=/var/lib/pam/",
        "/var/lib/pam created for user pam": r"install -d -o pam -g pam[^\n]*/var/lib/pam",
        "ENTRYPOINT the binary": r'(?m)^ENTRYPOINT\s+\["/usr/local/bin/pam-gateway"\]',
    }
    missing = [k for k, rx in need.items() if not re.search(rx, text)]
    # An image-wide PAM_LISTEN would win over the PORT a platform assigns.
    if re.search(r"(?m)^\s*(ENV\s+)?PAM_LISTEN=", text):
        missing.append("no ENV PAM_LISTEN (it would override the PORT a platform sets)")
    if not re.search(r"(?m)^ARG RUST_IMAGE=rust:1-bookworm", text) and "rust:1-bookworm" not in text:
        missing.append("rust:1-bookworm")
    ignore = os.path.join(os.path.dirname(path), os.path.basename(path) + ".dockerignore")
    if not os.path.isfile(ignore):
        missing.append(f"{ignore} (BuildKit's per-Dockerfile ignore file)")
    elif "target" not in open(ignore).read():
        missing.append(f"{ignore} does not exclude target/")
    problems_exit([f"missing: {m}" for m in missing])


# What the blueprint must set: the stack PAM's users run (Supabase, a managed Redis).
RENDER_REQUIRED_ENV = ("DATABASE_URL", "DATABASE_DIRECT_URL", "REDIS_URL", "SUPABASE_URL")
SECRET_RE = re.compile(r"(_URL|_KEY|_SECRET|_TOKEN)$")
# Non-secret URLs the blueprint may give a literal value.
PUBLIC_URLS = {"SUPABASE_URL", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL", "PAM_JWKS_URL"}
MIN_RENDER_GRACE_MS = 30000


def documented_settings(config_md):
    """The env names docs/configuration.md (generated from Settings) lists, plus RUST_LOG."""
    with open(config_md) as f:
        return set(re.findall(r"(?m)^\| `([A-Z][A-Z0-9_]*)` \|", f.read())) | {"RUST_LOG"}


def cmd_render(path, config_md, routes_rs):
    problems = []
    docs = load_yaml_docs(path)
    services = [s for d in docs for s in d.get("services", [])]
    webs = [s for s in services if s.get("type") == "web"]
    if len(webs) != 1:
        problems_exit([f"expected one web service, found {len(webs)}"])
    web = webs[0]
    if web.get("runtime") != "docker":
        problems.append(f"runtime {web.get('runtime')!r} != 'docker'")
    dockerfile = str(web.get("dockerfilePath", ""))
    if not os.path.isfile(dockerfile):
        problems.append(f"dockerfilePath {dockerfile!r} is not a file of the repository")
    if web.get("dockerContext") not in (".", "./"):
        problems.append(f"dockerContext {web.get('dockerContext')!r}: deploy/Dockerfile builds from the repository root")
    health = web.get("healthCheckPath")
    with open(routes_rs) as f:
        routes = set(re.findall(r'\.route\("([^"]+)"', f.read()))
    if not str(health).startswith(("/health", "/api/v1/pam/health")) or health not in routes:
        problems.append(f"healthCheckPath {health!r} is not a health route of {routes_rs}")
    env = {}
    for e in web.get("envVars", []):
        if "key" not in e:
            problems.append(f"envVars entry without a key: {e}")
            continue
        if e["key"] in env:
            problems.append(f"env {e['key']} is named twice")
        env[e["key"]] = e
    known = documented_settings(config_md)
    for name in sorted(set(env) - known):
        problems.append(f"env {name} is not a setting ({config_md} does not list it)")
    for name in RENDER_REQUIRED_ENV:
        if name not in env:
            problems.append(f"env {name} is missing")
    if "PAM_LISTEN" in env:
        problems.append("env PAM_LISTEN is set: the gateway must listen on the PORT Render assigns")
    for name, e in env.items():
        literal = "value" in e
        if SECRET_RE.search(name) and name not in PUBLIC_URLS and literal:
            problems.append(f"env {name} has a literal value: a secret is `sync: false` or `generateValue: true`")
        if name in RENDER_REQUIRED_ENV and e.get("sync") is not False:
            problems.append(f"env {name} is not `sync: false` (each deployment sets its own)")
        if not literal and e.get("sync") is not False and e.get("generateValue") is not True and "fromGroup" not in e:
            problems.append(f"env {name} has no value, `sync: false` or `generateValue: true`")
    values = {k: str(e["value"]) for k, e in env.items() if "value" in e}
    grace_ms, budget = budget_problems(values, "render")
    problems += budget
    if grace_ms < MIN_RENDER_GRACE_MS:
        problems.append(f"PAM_SHUTDOWN_GRACE_MS {grace_ms} < {MIN_RENDER_GRACE_MS}")
    shutdown_s = int(web.get("maxShutdownDelaySeconds", 30))
    if not shutdown_s > grace_ms / 1000:
        problems.append(f"maxShutdownDelaySeconds {shutdown_s} <= PAM_SHUTDOWN_GRACE_MS {grace_ms}ms: "
                        "Render would SIGKILL the drain")
    problems_exit(problems)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "yaml":
        cmd_yaml(args)
    elif cmd == "json":
        cmd_json(args)
    elif cmd == "dashboard":
        cmd_dashboard(*args)
    elif cmd == "metrics":
        cmd_metrics(*args)
    elif cmd == "buckets":
        cmd_buckets(*args)
    elif cmd == "k8s":
        cmd_k8s(*args)
    elif cmd == "compose":
        cmd_compose(*args)
    elif cmd == "grafana":
        cmd_grafana(*args)
    elif cmd == "dockerfile":
        cmd_dockerfile(*args)
    elif cmd == "render":
        cmd_render(*args)
    else:
        sys.exit(f"unknown helper command {cmd}")


main()
PY
helper() { python3 "$HELPER" "$@"; }

# ---------------------------------------------------------------------------------------------
# promtool: installed by scripts/ensure-tool.sh when it is missing.
ensure_promtool() { bash "$ROOT/scripts/ensure-tool.sh" promtool prometheus; }

echo "== pam-gateway deploy checks ($ROOT)"

# (a) Prometheus config, rules and rule unit tests
if ensure_promtool >"$WORK/promtool.log" 2>&1; then
  if [[ -s "$WORK/promtool.log" ]]; then indent <"$WORK/promtool.log"; fi
  check "promtool check config $PROM_CONFIG" promtool check config "$PROM_CONFIG"
  check "promtool check rules $PROM_RULES" promtool check rules "$PROM_RULES"
  check "promtool test rules $PROM_RULE_TESTS" promtool test rules "$PROM_RULE_TESTS"
else
  fail "promtool unavailable, Prometheus config and rules NOT checked"
  indent <"$WORK/promtool.log"
fi

# (b) every YAML parses, the dashboard JSON parses, and the files agree with each other
command -v python3 >/dev/null 2>&1 || { fail "python3 not found"; exit 1; }
if ! python3 -c 'import yaml' 2>/dev/null; then
  fail "PyYAML missing (pip install pyyaml, or apt-get install python3-yaml)"
  exit 1
fi
shopt -s nullglob
yaml_files=("$K8S_DIR"/*.yaml "$K8S_DIR"/*.yml "$COMPOSE" "$DEPLOY/render.yaml" "$PROM_CONFIG" "$PROM_RULES" \
            "$PROM_RULE_TESTS" "$DEPLOY"/grafana/provisioning/*/*.yml \
            "$DEPLOY"/grafana/provisioning/*/*.yaml)
shopt -u nullglob
for f in "${yaml_files[@]}"; do
  check "YAML parses: $f" helper yaml "$f"
done
check "JSON parses: $DASHBOARD" helper json "$DASHBOARD"
check "dashboard: schemaVersion 39, datasource uid matches provisioning, every metric has a panel" \
  helper dashboard "$DASHBOARD" "$DEPLOY/grafana/provisioning/datasources/prometheus.yml"
check "grafana: dashboard provider path is mounted and holds the dashboard" \
  helper grafana "$DEPLOY/grafana/provisioning/dashboards/pam.yml" "$COMPOSE" "$DASHBOARD"
check "k8s: replicas, securityContext, probes, secrets, REDIS_URL from a Secret/ConfigMap, PAM_NODE_ID from the pod name, shutdown budget, outbox journal, service/pdb/hpa/kustomization" \
  helper k8s "$K8S_DIR"
check "compose: >= 2 gateways (distinct PAM_NODE_ID, shared REDIS_URL/DATABASE_URL, own journal volume), WebSocket proxy, trusted proxies, services, required secret, healthy depends_on, mounted paths, shutdown budget, scrape targets" \
  helper compose "$COMPOSE"
check "Dockerfile: stages, user 10001, port, healthcheck, stop signal, entrypoint, dockerignore" \
  helper dockerfile "$DEPLOY/Dockerfile"
check_show "render.yaml: one Docker web service from deploy/Dockerfile, a health route, only real settings, secrets not literal, no PAM_LISTEN, shutdown grace >= 30000 within Render's stop delay" \
  helper render "$DEPLOY/render.yaml" docs/configuration.md src/http/mod.rs
if command -v kubectl >/dev/null 2>&1; then
  check "kubectl kustomize $K8S_DIR builds" kubectl kustomize "$K8S_DIR"
else
  skip "kubectl not installed: kustomize build of $K8S_DIR not run"
fi

# (c) metric names used by the dashboard and the alerts exist
if [[ -n "$METRICS_URL" ]]; then
  if curl -fsS --max-time 10 -o "$WORK/metrics.txt" "$METRICS_URL" 2>"$WORK/curl.err"; then
    before="$FAILURES"
    check_show "metric names in dashboard + alerts are exported by $METRICS_URL" \
      helper metrics "$DASHBOARD" "$PROM_RULES" "$WORK/metrics.txt"
    if [[ "$FAILURES" -gt "$before" ]]; then
      echo "      (metrics-exporter-prometheus lists a metric only once it was recorded:" \
           "exercise the gateway, e.g. a chat turn, before checking)"
    fi
    check "histograms queried as _bucket are exported with buckets (not as summaries)" \
      helper buckets "$DASHBOARD" "$PROM_RULES" "$WORK/metrics.txt"
  else
    fail "could not fetch $METRICS_URL: $(cat "$WORK/curl.err")"
  fi
else
  echo "      no --metrics-url / PAM_METRICS_URL given: checking names against the fixed list" \
       "from design.md, not a live gateway"
  check_show "metric names in dashboard + alerts are in the fixed list (design.md Metrics)" \
    helper metrics "$DASHBOARD" "$PROM_RULES"
fi

echo
if [[ "$FAILURES" -gt 0 ]]; then
  echo "FAIL: $FAILURES check(s) failed"
  exit 1
fi
echo "OK: all deploy checks passed"
