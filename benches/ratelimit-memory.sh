#!/usr/bin/env bash
# The rate limiter's memory under a flood of distinct client addresses:
# a release proxy with the covergen table (per-IP 10,000/s and the API-key
# policy, both local) gets CLIENTS requests, each from a new address
# (X-Forwarded-For from loopback, trusted), closed loop. Prints the proxy's
# RSS before, its peak while the flood runs, and the keys each policy
# tracked at the end.
#
#   benches/ratelimit-memory.sh                 # 1,000,000 addresses
#   CLIENTS=200000 benches/ratelimit-memory.sh
#   MAX_KEYS=100000 benches/ratelimit-memory.sh # also exercise the key cap
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
CLIENTS=${CLIENTS:-1000000}
BASE=${BASE:-27100}
. benches/lib.sh
bench_setup

up=127.0.0.1:$((BASE + 1)); proxy=127.0.0.1:$((BASE + 2)); admin=127.0.0.1:$((BASE + 3))
"$bin/edgesteer" backend --region any --name upstream --listen "$up" >/dev/null & pids+=($!)
covergen_table "$wd/table.toml" "$up" keep "${MAX_KEYS:-}"
RUST_LOG=warn "$bin/edgesteer" proxy --config "$wd/table.toml" --listen "$proxy" --admin "$admin" --threads 1 --trust 127.0.0.0/8 --grace-period 0 & pid=$!; pids+=($pid)
sleep 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
before=$(rss)
# Closed loop until CLIENTS requests went out (duration is an upper bound).
"$bin/edgesteer-load" --target "$proxy" --connections 32 --duration 600 --distinct-clients --json > "$wd/load.json" & load=$!; pids+=($load)
peak=$before
while kill -0 "$load" 2>/dev/null; do
  sleep 1
  now=$(rss); [ "$now" -gt "$peak" ] && peak=$now
  sent=$(curl -s "http://$admin/metrics" | awk '/^http_requests_total/ {s+=$2} /^edgesteer_rate_limited_total/ {s+=$2} END {print s+0}')
  if [ "${sent%.*}" -ge "$CLIENTS" ]; then kill "$load" 2>/dev/null || true; break; fi
done
wait "$load" 2>/dev/null || true
keys=$(curl -s "http://$admin/metrics" | grep -E '^edgesteer_ratelimit_(keys|overflow_total)' || true)
echo "clients sent:   $sent distinct addresses"
echo "proxy RSS:      before $((before / 1024)) MB, peak $((peak / 1024)) MB (+$(((peak - before) / 1024)) MB)"
echo "$keys"
