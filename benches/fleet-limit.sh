#!/usr/bin/env bash
# Fleet-wide rate limiting under load: PROXIES release proxies share one
# redis-server and a `global` policy of RATE/s (burst BURST) on one API key;
# PROXIES load generators offer OFFER x RATE in total, split evenly, for DUR
# seconds. Prints what the fleet admitted against the exact GCRA limit
# (RATE x DUR + BURST) and the documented bound
# (+ (PROXIES - 1) x (BURST + RATE x (2 x SYNC_MS + 10 ms rtt))).
#
# Beside it, SPREAD requests/s, each from a new client address (a second,
# per-address global policy), keep many keys dirty: the fleet's sync rounds
# carry about SPREAD x SYNC_MS / 1000 fresh keys between them. The sync
# cost is reported as the proxies' sync round time (`/v1/ratelimit`
# last_round_ms, sampled) and Redis's CPU and commands over the run.
#
# CLUSTER=1 runs it twice, side by side: on one redis-server, then on a
# Redis Cluster of 3 masters and 3 replicas (--redis redis+cluster://...).
#
#   benches/fleet-limit.sh
#   PROXIES=3 RATE=1000 BURST=100 OFFER=3 DUR=10 SYNC_MS=50 benches/fleet-limit.sh
#   CLUSTER=1 SPREAD=3000 benches/fleet-limit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PROXIES=${PROXIES:-3}; RATE=${RATE:-1000}; BURST=${BURST:-100}; OFFER=${OFFER:-3}
DUR=${DUR:-10}; SYNC_MS=${SYNC_MS:-50}; BASE=${BASE:-27300}
CLUSTER=${CLUSTER:-0}; SPREAD=${SPREAD:-2000}
command -v redis-server >/dev/null || { echo "fleet-limit: redis-server missing (scripts/setup.sh)" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "fleet-limit: redis-cli missing (scripts/setup.sh)" >&2; exit 1; }
. benches/lib.sh
bench_setup
# bench_setup's cargo builds into CARGO_TARGET_DIR when that is set.
bin=$(cd "$root" && realpath -m "${CARGO_TARGET_DIR:-target}")/release

up=127.0.0.1:$((BASE + 2))
"$bin/edgesteer" backend --region us-east --name upstream --listen "$up" >/dev/null & pids+=($!)

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# One redis-server on BASE+1; sets store_url, masters and mode_pids.
start_single() {
  local p=$((BASE + 1))
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & mode_pids+=($!)
  wait_port "$p"
  store_url="redis://127.0.0.1:$p"; masters=("$p")
}

# Six cluster nodes on BASE+40..45 (buses on BASE+50..55), 3 masters with
# a replica each; waits for cluster_state:ok everywhere.
start_cluster() {
  local nodes=() i p
  for i in 0 1 2 3 4 5; do
    p=$((BASE + 40 + i)); mkdir -p "$wd/node$i"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 1000 --cluster-port $((BASE + 50 + i)) --cluster-require-full-coverage no \
      --dir "$wd/node$i" --save "" --appendonly no >/dev/null & mode_pids+=($!)
    nodes+=("127.0.0.1:$p")
  done
  for i in 0 1 2 3 4 5; do wait_port $((BASE + 40 + i)); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  for _ in $(seq 100); do
    local ok=1
    for i in 0 1 2 3 4 5; do
      redis-cli -p $((BASE + 40 + i)) cluster info | grep -q cluster_state:ok || ok=0
    done
    [ "$ok" = 1 ] && break; sleep 0.2
  done
  store_url="redis+cluster://${nodes[0]},${nodes[1]},${nodes[2]}"
  mapfile -t masters < <(redis-cli -p $((BASE + 40)) cluster nodes | awk '$3 ~ /master/ && NF > 8 {split($2, a, "[:@]"); print a[2]}')
}

# CPU seconds and commands of the store's masters so far.
redis_usage() {
  local p
  for p in "${masters[@]}"; do redis-cli -p "$p" info all; done |
    awk -F: '/^used_cpu_(sys|user):/ {cpu += $2} /^total_commands_processed:/ {cmd += $2} END {printf "%.3f %d\n", cpu, cmd}'
}

run_mode() {
  local mode=$1 out="$wd/$1" i
  mkdir -p "$out"; mode_pids=()
  if [ "$mode" = cluster ]; then start_cluster; else start_single; fi
  cat > "$out/table.toml" <<TOML
default_region = "us-east"
[regions.us-east]
backends = [{ address = "$up" }]
[[rate_limits]]
name = "fleet"
key = "header:x-api-key"
scope = "global"
path_prefixes = ["/acc"]
tiers = { t = { rate = $RATE, burst = $BURST } }
keys = { "bench-key" = "t" }
[[rate_limits]]
name = "spread"
key = "client_ip"
scope = "global"
path_prefixes = ["/spread"]
tiers = { t = { rate = 10, burst = 10 } }
TOML
  for i in $(seq "$PROXIES"); do
    RUST_LOG=warn "$bin/edgesteer" proxy --config "$out/table.toml" --listen "127.0.0.1:$((BASE + 10 + i))" \
      --admin "127.0.0.1:$((BASE + 30 + i))" --threads 1 --grace-period 0 --trust 127.0.0.0/8 \
      --redis "$store_url" --redis-sync-ms "$SYNC_MS" 2>"$out/proxy$i.log" & mode_pids+=($!)
  done
  for i in $(seq "$PROXIES"); do wait_port $((BASE + 30 + i)); done
  sleep 1.5
  redis_usage > "$out/usage.before"
  local per spread loads=()
  per=$(python3 -c "print($OFFER * $RATE / $PROXIES)")
  spread=$(python3 -c "print(max($SPREAD / $PROXIES, 1))")
  for i in $(seq "$PROXIES"); do
    "$bin/edgesteer-load" --target "127.0.0.1:$((BASE + 10 + i))" --path /acc --rate "$per" --duration "$DUR" \
      --connections 8 --header "x-api-key:bench-key" --json > "$out/load$i.json" & loads+=($!)
    [ "$SPREAD" = 0 ] || "$bin/edgesteer-load" --target "127.0.0.1:$((BASE + 10 + i))" --path /spread \
      --rate "$spread" --duration "$DUR" --connections 8 --distinct-clients --json > "$out/spread$i.json" & loads+=($!)
  done
  # The proxies' sync rounds, sampled while the load runs.
  (
    end=$(( $(date +%s) + ${DUR%.*} ))
    while [ "$(date +%s)" -lt "$end" ]; do
      for i in $(seq "$PROXIES"); do
        curl -s "http://127.0.0.1:$((BASE + 30 + i))/v1/ratelimit" || true; echo
      done
      sleep 0.2
    done
  ) > "$out/rounds.jsonl" & local sampler=$!
  for l in "${loads[@]}"; do wait "$l"; done
  wait "$sampler" || true
  redis_usage > "$out/usage.after"
  curl -s "http://127.0.0.1:$((BASE + 31))/v1/ratelimit" > "$out/final.json" || true
  for p in "${mode_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${mode_pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

modes=(single); [ "$CLUSTER" = 0 ] || modes+=(cluster)
for m in "${modes[@]}"; do run_mode "$m"; done

python3 - "$wd" "$PROXIES" "$RATE" "$BURST" "$DUR" "$SYNC_MS" "$OFFER" "$SPREAD" "${modes[@]}" <<'PY'
import json, sys, glob, statistics
wd, n, rate, burst, dur, sync, offer, spread = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7], float(sys.argv[8])
modes = sys.argv[9:]
exact = rate * dur + burst
bound = exact + (n - 1) * (burst + rate * (2 * sync + 10) / 1000)
print(f"{n} proxies, global {rate}/s burst {burst}, offered {offer}x for {dur:.0f} s, sync {sync} ms, {spread:.0f} new client addresses/s beside")
rows = []
for m in modes:
    out = f"{wd}/{m}"
    reports = [json.load(open(f)) for f in sorted(glob.glob(out + "/load*.json"))]
    ok = sum(r["ok"] for r in reports)
    sent = sum(r["requests"] for r in reports)
    limited = sum(r["errors"].get("status 429", 0) for r in reports)
    other = sum(v for r in reports for k, v in r["errors"].items() if k != "status 429")
    spreads = [json.load(open(f)) for f in sorted(glob.glob(out + "/spread*.json"))]
    spread_sent = sum(r["requests"] for r in spreads)
    spread_bad = sum(v for r in spreads for k, v in r["errors"].items())
    rounds, nodes, errors = [], {}, 0
    for line in open(out + "/rounds.jsonl"):
        try:
            s = json.loads(line)["store"]
        except Exception:
            continue
        rounds.append(s["last_round_ms"])
        errors = max(errors, s["errors"])
        for node in (s.get("cluster") or {}).get("nodes", []):
            if node.get("sync_ms") is not None:
                nodes.setdefault(node["addr"], []).append(node["sync_ms"])
    cpu0, cmd0 = open(out + "/usage.before").read().split()
    cpu1, cmd1 = open(out + "/usage.after").read().split()
    cpu = (float(cpu1) - float(cpu0)) / dur * 100
    cmds = (int(cmd1) - int(cmd0)) / dur
    rows.append((m, ok, ok / exact, ok - exact, statistics.median(rounds) if rounds else 0, max(rounds) if rounds else 0, cpu, cmds, errors))
    print(f"[{m}] sent {sent}, admitted {ok}, refused 429 {limited}, other {other}; spread sent {spread_sent}, not 200: {spread_bad}")
    print(f"[{m}] exact limit {exact:.0f}; admitted {ok / exact:.3f}x of it; overshoot {ok - exact:+.0f} (documented bound +{bound - exact:.0f})")
    for addr, v in sorted(nodes.items()):
        print(f"[{m}]   master {addr}: slowest command per round median {statistics.median(v):.2f} ms, max {max(v):.2f} ms")
print()
print(f"{'store':8} {'admitted':>9} {'of exact':>9} {'overshoot':>10} {'round p50':>10} {'round max':>10} {'redis CPU':>10} {'cmds/s':>8} {'errors':>7}")
for m, ok, frac, over, p50, mx, cpu, cmds, errs in rows:
    print(f"{m:8} {ok:9d} {frac:9.3f} {over:+10.0f} {p50:8.2f}ms {mx:8.2f}ms {cpu:9.1f}% {cmds:8.0f} {errs:7d}")
print(f"(documented overshoot bound +{bound - exact:.0f}; redis CPU summed over masters, % of one core)")
PY
