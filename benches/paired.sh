#!/usr/bin/env bash
# The price of one proxy switch, measured with both variants running at
# the same time on the same core: two edgesteer proxies (A and B, the same
# table, B with extra flags) pinned together to CPU 0, each loaded by its
# own wrk (geo-mix: 1000 clients from 40 countries via X-Forwarded-For) on
# CPU 1, against one nginx upstream on CPU 1. Both see the same host at the
# same moment (steal, frequency, cache pressure), so the ratio of their CPU
# per request is far steadier than two peer-bench runs taken one after the
# other on a noisy host.
#
#   benches/paired.sh                                  # edge checks: B turns them off
#   B_ARGS="--no-request-metrics" benches/paired.sh    # any other switch
#   B=bare benches/paired.sh                           # ours against the bare Pingora pass-through
#   B=bare B_ARGS=--no-work-stealing benches/paired.sh  # both on single-threaded runtimes
#   B_ARGS=--work-stealing benches/paired.sh           # the price of work stealing
#   B=nginx benches/paired.sh                          # ours against nginx (1 worker, upstream keep-alive)
#   B_BIN=/tmp/edgesteer-before benches/paired.sh      # this build against another build
#   ROUNDS=9 DUR=10 benches/paired.sh
#
# Prints each round's CPU us/request for A and B and the ratio A/B, then
# the median ratio; also the ratio of user time alone, without the
# kernel's share. That share holds the wake-ups of the load side's core
# (`_raw_spin_unlock_irqrestore` under `sock_def_readable`), which on a
# nested-virtualised host cost microseconds each and rise or fall with how
# a proxy's sends cluster in time, not with its work (BENCHMARKS.md,
# "What the host charges"). Everything runs on 127.0.0.1 and stops on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROUNDS=${ROUNDS:-7}
DUR=${DUR:-10}
CONNS=${CONNS:-32}
A_ARGS=${A_ARGS:-}
B=${B:-ours}
# B defaults to the edge checks off, unless it is another build (then the same flags).
B_ARGS=${B_ARGS-$([ "$B" = ours ] && [ -z "${B_BIN:-}" ] && echo --unsafe-no-edge-checks || true)}
SCRIPT=${WRK_SCRIPT:-$(pwd)/../shared/bench/geo-mix.lua}
for tool in wrk nginx taskset; do
  command -v "$tool" >/dev/null || { echo "paired.sh: needs $tool (benches/peer.sh installs wrk and nginx; or apt-get install wrk nginx-light)" >&2; exit 1; }
done
# The same build as peer.sh (building the proxy alone changes features and rebuilds).
cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
root=$(pwd); bin=$root/target/release; wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT

up=$(port)
mkdir -p "$wd/tmp"
nginx_upstream 1
covergen_table "$wd/table.toml" "127.0.0.1:$up" price

B_BIN=${B_BIN:-$bin/edgesteer}
start() { # binary port admin args...
  local exe=$1 p=$2 a=$3; shift 3
  taskset -c 0 "$exe" proxy --config "$wd/table.toml" --listen "127.0.0.1:$p" \
    --admin "127.0.0.1:$a" --threads 1 --grace-period 0 --trust 127.0.0.1/32 "$@" \
    > "$wd/proxy-$p.log" 2>&1 &
  started=$!
  pids+=($started)
}
pa=$(port); pb=$(port)
# shellcheck disable=SC2086
start "$bin/edgesteer" "$pa" "$(port)" $A_ARGS
ida=$started
case $B in
  ours)
    # shellcheck disable=SC2086
    start "$B_BIN" "$pb" "$(port)" $B_ARGS
    idb=$started ;;
  bare)
    # shellcheck disable=SC2086
    taskset -c 0 "$bin/passthrough" --listen "127.0.0.1:$pb" --upstream "127.0.0.1:$up" \
      --threads 1 $B_ARGS > "$wd/bare.log" 2>&1 &
    idb=$!; pids+=($idb) ;;
  nginx)
    nginx_conf proxy 0 "  upstream up { server 127.0.0.1:$up; keepalive 256; keepalive_requests 100000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:$pb backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
    sleep 0.5
    # The worker does the work (the master only waits).
    idb=$(pgrep -P "$(cat "$wd/proxy.pid")" | head -1) ;;
  *) echo "paired.sh: B is ours, bare or nginx" >&2; exit 1 ;;
esac
# For benches/paired-profile.sh: which process is which (both may be edgesteer).
[ -z "${PAIRED_PIDS:-}" ] || echo "$ida $idb" > "$PAIRED_PIDS"
for p in "$pa" "$pb"; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
uticks() { awk '{print $14}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
echo "A: ours ${A_ARGS:-(defaults)}   B: $B ${B_ARGS:-}   ${ROUNDS} rounds x ${DUR}s, $CONNS connections each"
echo "round  A_req/s  B_req/s  A_us/req  B_us/req  A/B     user_A/B"
ratios=(); uratios=()
for r in $(seq "$ROUNDS"); do
  ta=$(ticks "$ida"); tb=$(ticks "$idb"); uta=$(uticks "$ida"); utb=$(uticks "$idb")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$SCRIPT" "http://127.0.0.1:$pa/" > "$wd/wa" 2>&1 &
  wa=$!
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$SCRIPT" "http://127.0.0.1:$pb/" > "$wd/wb" 2>&1 &
  wb=$!
  wait "$wa" "$wb"
  na=$(awk '/requests in/ {print $1}' "$wd/wa"); nb=$(awk '/requests in/ {print $1}' "$wd/wb")
  ca=$(( $(ticks "$ida") - ta )); cb=$(( $(ticks "$idb") - tb ))
  uca=$(( $(uticks "$ida") - uta )); ucb=$(( $(uticks "$idb") - utb ))
  line=$(python3 -c "
na,nb,ca,cb,uca,ucb,hz,d=$na,$nb,$ca,$cb,$uca,$ucb,$hz,$DUR
ua=ca/hz*1e6/na; ub=cb/hz*1e6/nb
print(f'{na/d:8.0f} {nb/d:8.0f} {ua:9.2f} {ub:9.2f}  {ua/ub:.4f}  {(uca/na)/(ucb/nb):.4f}')")
  echo "$r      $line"
  ratios+=("$(echo "$line" | awk '{print $5}')")
  uratios+=("$(echo "$line" | awk '{print $6}')")
done
python3 -c "
import statistics as s
r=[float(x) for x in '${ratios[*]}'.split()]
u=[float(x) for x in '${uratios[*]}'.split()]
print(f'median A/B {s.median(r):.4f} (min {min(r):.4f}, max {max(r):.4f}); A costs {100*(s.median(r)-1):+.1f}% CPU per request against B')
print(f'user time alone: median A/B {s.median(u):.4f} (min {min(u):.4f}, max {max(u):.4f})')"
