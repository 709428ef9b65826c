#!/usr/bin/env bash
# Profiles ours and the bare Pingora pass-through under the headline load
# (wrk + ../shared/bench/geo-mix.lua: 1000 clients from 40 countries via
# X-Forwarded-For; ours trusts 127.0.0.1 and prices the per-IP limit), one
# after the other, with `perf record -g` on the proxy (pinned to CPU 0;
# upstream nginx and wrk on CPU 1). Prints each one's CPU per request and
# its top symbols (self time), and keeps the perf data.
#
#   benches/profile.sh                  # 10 s each, top 25
#   SECS=20 TOP=40 benches/profile.sh
#   TARGETS=ours OURS_ARGS='--read-buffer 65536' benches/profile.sh
#
# Output: target/profile-<target>.data and .txt. Everything runs on
# 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${SECS:-10}
TOP=${TOP:-25}
TARGETS=${TARGETS:-"pingora ours"}
OURS_ARGS=${OURS_ARGS:-}
root=$(pwd); bin=$root/target/release; wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT
command -v perf >/dev/null && command -v wrk >/dev/null && command -v nginx >/dev/null || {
  echo "profile.sh needs perf, wrk and nginx (benches/peer.sh installs wrk and nginx)" >&2; exit 1; }
cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2

up=$(port)
body=$(printf 'peer-bench upstream body %.0s' 1 2 3 4); body=${body:0:100}
cat > "$wd/upstream.conf" <<EOF
worker_processes 1; daemon off; pid $wd/nginx.pid; error_log $wd/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$up; location / { default_type text/plain; return 200 "$body"; } } }
EOF
taskset -c 1 nginx -p "$wd" -c "$wd/upstream.conf" > "$wd/upstream.log" 2>&1 &
pids+=($!)
covergen_table "$wd/table.toml" "127.0.0.1:$up" price
sleep 0.5

for target in $TARGETS; do
  listen=$(port)
  case $target in
    ours) taskset -c 0 "$bin/edgesteer" proxy --config "$wd/table.toml" --listen "127.0.0.1:$listen" \
            --admin 127.0.0.1:0 --threads 1 --grace-period 0 --trust 127.0.0.1/32 $OURS_ARGS \
            > "$wd/ours.log" 2>&1 & ;;
    pingora) taskset -c 0 "$bin/passthrough" --listen "127.0.0.1:$listen" --upstream "127.0.0.1:$up" \
            --threads 1 > "$wd/pingora.log" 2>&1 & ;;
    *) echo "unknown target $target" >&2; exit 1 ;;
  esac
  pid=$!; pids+=($pid)
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$listen/" && break; sleep 0.1; done
  # Warm up, then profile a fixed window while wrk runs.
  taskset -c 1 wrk -t1 -c64 -d2s -s ../shared/bench/geo-mix.lua "http://127.0.0.1:$listen/" > /dev/null
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  taskset -c 1 wrk -t1 -c64 -d"$((SECS + 1))s" -s ../shared/bench/geo-mix.lua "http://127.0.0.1:$listen/" > "$wd/wrk-$target.txt" &
  wrk=$!
  sleep 0.5
  perf record -q -g -p "$pid" -o "$root/target/profile-$target.data" -- sleep "$SECS" 2>/dev/null
  wait "$wrk"
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  reqs=$(awk '/requests in/ {print $1}' "$wd/wrk-$target.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$wd/wrk-$target.txt")
  us=$(python3 -c "print(round(($t1-$t0)*1e6/$(getconf CLK_TCK)/max($reqs,1),2))")
  { perf report -i "$root/target/profile-$target.data" --no-children --sort symbol --percent-limit 0.2 \
      --stdio -g none 2>/dev/null || true; } | grep -E '^ +[0-9]' | sed -E 's/ +- +- *$//; s/ +$//' \
    | cut -c1-160 | head -"$TOP" > "$root/target/profile-$target.txt" || true
  echo "== $target: $rps req/s, $us us CPU per request (wrk window incl. warm-up edge), top $TOP symbols (self):"
  cat "$root/target/profile-$target.txt"
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
done
