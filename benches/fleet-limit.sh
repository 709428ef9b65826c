#!/usr/bin/env bash
# Fleet-wide rate limiting under load: PROXIES release proxies share one
# redis-server and a `global` policy of RATE/s (burst BURST) on one API key;
# PROXIES load generators offer OFFER x RATE in total, split evenly, for DUR
# seconds. Prints what the fleet admitted against the exact GCRA limit
# (RATE x DUR + BURST) and the documented bound
# (+ (PROXIES - 1) x (BURST + RATE x (2 x SYNC_MS + 10 ms rtt))).
#
#   benches/fleet-limit.sh
#   PROXIES=3 RATE=1000 BURST=100 OFFER=3 DUR=10 SYNC_MS=50 benches/fleet-limit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PROXIES=${PROXIES:-3}; RATE=${RATE:-1000}; BURST=${BURST:-100}; OFFER=${OFFER:-3}
DUR=${DUR:-10}; SYNC_MS=${SYNC_MS:-50}; BASE=${BASE:-27300}
command -v redis-server >/dev/null || { echo "fleet-limit: redis-server missing (scripts/setup.sh)" >&2; exit 1; }
. benches/lib.sh
bench_setup

redis_port=$((BASE + 1)); up=127.0.0.1:$((BASE + 2))
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$redis_port) 2>/dev/null && break; sleep 0.1; done
"$bin/edgesteer" backend --region us-east --name upstream --listen "$up" >/dev/null & pids+=($!)
cat > "$wd/table.toml" <<TOML
default_region = "us-east"
[regions.us-east]
backends = [{ address = "$up" }]
[[rate_limits]]
name = "fleet"
key = "header:x-api-key"
scope = "global"
tiers = { t = { rate = $RATE, burst = $BURST } }
keys = { "bench-key" = "t" }
TOML
for i in $(seq "$PROXIES"); do
  RUST_LOG=warn "$bin/edgesteer" proxy --config "$wd/table.toml" --listen "127.0.0.1:$((BASE + 10 + i))" \
    --admin "127.0.0.1:$((BASE + 30 + i))" --threads 1 --grace-period 0 \
    --redis "redis://127.0.0.1:$redis_port" --redis-sync-ms "$SYNC_MS" & pids+=($!)
done
sleep 1.5
per=$(python3 -c "print($OFFER * $RATE / $PROXIES)")
loads=()
for i in $(seq "$PROXIES"); do
  "$bin/edgesteer-load" --target "127.0.0.1:$((BASE + 10 + i))" --rate "$per" --duration "$DUR" \
    --connections 8 --header "x-api-key:bench-key" --json > "$wd/load$i.json" & loads+=($!)
done
for l in "${loads[@]}"; do wait "$l"; done
python3 - "$wd" "$PROXIES" "$RATE" "$BURST" "$DUR" "$SYNC_MS" "$OFFER" <<'PY'
import json, sys, glob
wd, n, rate, burst, dur, sync, offer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
reports = [json.load(open(f)) for f in sorted(glob.glob(wd + "/load*.json"))]
ok = sum(r["ok"] for r in reports)
sent = sum(r["requests"] for r in reports)
limited = sum(r["errors"].get("status 429", 0) for r in reports)
other = sum(v for r in reports for k, v in r["errors"].items() if k != "status 429")
exact = rate * dur + burst
bound = exact + (n - 1) * (burst + rate * (2 * sync + 10) / 1000)
print(f"{n} proxies, global {rate}/s burst {burst}, offered {offer}x for {dur:.0f} s, sync {sync} ms")
print(f"sent {sent}, admitted {ok}, refused 429 {limited}, other {other}")
print(f"exact limit {exact:.0f}; admitted {ok / exact:.3f}x of it; overshoot {ok - exact:+.0f} (documented bound +{bound - exact:.0f})")
PY
