#!/usr/bin/env bash
# Binary upgrades under load (issue #14): UPGRADES (default 100) times in a
# row, `edgesteer proxy --upgrade` takes the listeners over from the
# running proxy while edgesteer-load sends a steady open-loop rate over
# HTTP/1.1 keep-alive and h2c at once. Prints, per protocol, requests,
# failures (by kind; refused connections are `connect: ConnectionRefused`)
# and latency up to the max (the worst request is the one that met a
# hand-off), plus how long each hand-off took. The goal is 0 failures.
#
#   benches/upgrade-load.sh                   # 100 upgrades, 2 s apart, 1000 req/s per protocol
#   UPGRADES=10 PERIOD=2 RATE=500 benches/upgrade-load.sh
#   PROFILE=debug benches/upgrade-load.sh     # the debug build, for a quick look
#
# Release binaries by default; loopback only; bounded (UPGRADES * PERIOD + 10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
UPGRADES=${UPGRADES:-100}
PERIOD=${PERIOD:-2}
RATE=${RATE:-1000}
GRACE=${GRACE:-2}
PROFILE=${PROFILE:-release}
. benches/lib.sh
root=$(pwd)
# BUILD=0 uses the binaries already built.
if [ "$PROFILE" = release ]; then
  [ "${BUILD:-1}" = 0 ] || cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
  bin=$root/target/release
else
  [ "${BUILD:-1}" = 0 ] || cargo build --locked -p edgesteer -p edgesteer-benches --bins >&2
  bin=$root/target/debug
fi
bin=${BIN_DIR:-$bin}   # BIN_DIR: binaries from elsewhere
wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT
ulimit -n 65536 2>/dev/null || true

up=$(port); listen=$(port); admin=$(port)
"$bin/edgesteer" backend --region us-east --name b1 --listen "127.0.0.1:$up" > "$wd/backend.log" 2>&1 &
pids+=($!)
covergen_table "$wd/table.toml" "127.0.0.1:$up" strip
args=(proxy --config "$wd/table.toml" --listen "127.0.0.1:$listen" --admin "127.0.0.1:$admin"
      --threads 1 --grace-period "$GRACE" --runtime-dir "$wd/rt" --trust 127.0.0.0/8)
RUST_LOG=warn "$bin/edgesteer" "${args[@]}" >> "$wd/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done

secs=$(( UPGRADES * PERIOD + 10 ))
"$bin/edgesteer-load" --target "127.0.0.1:$listen" --rate "$RATE" --duration "$secs" \
  --connections 16 --json > "$wd/h1.json" &
h1=$!
"$bin/edgesteer-load" --target "127.0.0.1:$listen" --rate "$RATE" --duration "$secs" \
  --connections 16 --h2 --json > "$wd/h2.json" &
h2=$!
sleep 3

took=()
for i in $(seq "$UPGRADES"); do
  t0=$(date +%s.%N)
  RUST_LOG=warn,pingora_core::server::transfer_fd=off "$bin/edgesteer" "${args[@]}" --upgrade >> "$wd/proxy.log" 2>&1 &
  new=$!
  pids+=($new)
  until [ "$(cat "$wd/rt/proxy.pid" 2>/dev/null)" = "$new" ]; do
    kill -0 "$new" 2>/dev/null || { echo "upgrade $i: the new process exited; see $wd/proxy.log" >&2; tail -5 "$wd/proxy.log" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s.%N)
  took+=("$(python3 -c "print(round(($t1-$t0)*1000))")")
  sleep "$(python3 -c "print(max(0.0, $PERIOD - ($t1 - $t0)))")"
done
wait "$h1" "$h2"

python3 - "$wd/h1.json" "$wd/h2.json" "${took[@]}" <<'PY'
import json, sys
took = sorted(int(t) for t in sys.argv[3:])
print(f"{len(took)} upgrades; hand-off (start of the new process to it serving) "
      f"p50 {took[len(took)//2]} ms, max {took[-1]} ms")
for name, path in (("HTTP/1.1 keep-alive", sys.argv[1]), ("h2c", sys.argv[2])):
    r = json.load(open(path))
    failed = sum(r["errors"].values())
    refused = sum(n for e, n in r["errors"].items() if "Refused" in e)
    lat = r["latency_us"]
    print(f"{name}: {r['requests']} requests, {r['ok']} ok, {failed} failed "
          f"({refused} refused connections; {r.get('retried_unprocessed', 0)} refused "
          f"unprocessed by GOAWAY and sent again, as clients do); latency p50 {lat['p50']} us, "
          f"p99 {lat['p99']} us, p99.9 {lat['p99.9']} us, max {lat['max']} us")
    for e, n in sorted(r["errors"].items()):
        print(f"    {n} x {e}")
PY
