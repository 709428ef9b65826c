#!/usr/bin/env bash
# Load run for table pushes (issue #4): p99 latency through one proxy at a
# fixed open-loop rate, quiet vs. while the config service pushes 10 new
# table versions per second. Release binaries; loopback only; bounded.
# The proxy is pinned to CPU 0; upstream, config service, load and pusher
# share CPU 1 (as peer-bench.sh does), so the figure is the proxy's own.
#
#   benches/swap-load.sh                 # RATE=2000 DUR=10 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
RATE=${RATE:-2000}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
BASE=${BASE:-19400}
. benches/lib.sh
bench_setup

up=127.0.0.1:$((BASE + 1)); control=127.0.0.1:$((BASE + 2)); proxy=127.0.0.1:$((BASE + 3)); admin=127.0.0.1:$((BASE + 4))
taskset -c 1 "$bin/edgesteer" backend --region any --name upstream --listen "$up" >/dev/null & pids+=($!)
covergen_table "$wd/table.toml" "$up" "$([ "${LIMITS:-0}" = 1 ] && echo price || echo strip)"
export EDGESTEER_TOKEN=bench-token-123
RUST_LOG=warn taskset -c 1 "$bin/edgesteer" control --listen "$control" --data "$wd/data" --token "bench=$EDGESTEER_TOKEN" --seed "$wd/table.toml" & pids+=($!)
sleep 0.5
RUST_LOG=warn taskset -c 0 "$bin/edgesteer" proxy --control "http://$control" --cache "$wd/cache.json" --listen "$proxy" --admin "$admin" --threads 1 --trust 127.0.0.0/8 --grace-period 0 & pids+=($!)
sleep 1

run() { taskset -c 1 "$bin/edgesteer-load" --target "$proxy" --rate "$RATE" --duration "$DUR" --connections 16 --json; }
p99() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["latency_us"]["p99"], r["requests"], r["ok"], sum(r["errors"].values()))'; }

push() { # 10 pushes per second for DUR seconds from one keep-alive client,
  # alternating a weight, on the load side's core.
  taskset -c 1 python3 - "$control" "$up" "$DUR" <<'PY'
import http.client, json, os, sys, time
control, up, dur = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection(control)
hdr = {"authorization": "Bearer " + os.environ["EDGESTEER_TOKEN"], "content-type": "application/json"}
start = time.monotonic()
for i in range(dur * 10):
    body = json.dumps({"weights": {up: i % 2 + 1}, "reason": "swap %d" % i})
    conn.request("PATCH", "/v1/regions/us-east", body, hdr)
    conn.getresponse().read()
    time.sleep(max(0, start + (i + 1) * 0.1 - time.monotonic()))
PY
}

echo "rate $RATE/s for ${DUR}s per run, open loop, 16 connections, one proxy thread; $ROUNDS rounds"
changes=()
for r in $(seq 1 "$ROUNDS"); do
  read -r q99 qn qok qerr <<<"$(run | p99)"
  push & pusher=$!
  read -r b99 bn bok berr <<<"$(run | p99)"
  wait $pusher || true
  c=$(python3 -c "print(f'{($b99-$q99)/$q99*100:+.1f}')")
  changes+=("$c")
  echo "round $r: quiet p99 ${q99} us ($qok/$qn ok, $qerr errors) | 10 swaps/s p99 ${b99} us ($bok/$bn ok, $berr errors) | change ${c}%"
done
versions=$(curl -s "http://$admin/v1/table" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
echo "proxy ended on table version $versions"
python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'p99 change: median {statistics.median(v):+.1f}% over {len(v)} rounds ({\", \".join(sys.argv[1:])})')" "${changes[@]}"
