#!/usr/bin/env bash
# The price of a large answer: proxy CPU per request for answers of SIZE
# bytes (1 MiB by default) from the demo backend, read at full speed by
# wrk (1 thread, 8 connections, DUR seconds) on CPU 1, the proxy alone on
# CPU 0. Targets, one after the other, ROUNDS times in turn:
#   ours    the release build, default table limits (response_buffer_bytes
#           32 KiB unless RESPONSE_BUFFER_BYTES is set)
#   before  another build of ours (B_BIN=/path), the same table
#   bare    the bare Pingora pass-through (64 KiB reads, no budget)
#   nginx   1 worker, upstream keep-alive, its default proxy buffers
#
#   benches/large-answers.sh                           # ours, bare, nginx; 1 MiB
#   SIZE=65536 ROUNDS=3 benches/large-answers.sh
#   B_BIN=/tmp/edgesteer-before TARGETS="before ours" benches/large-answers.sh
#   RESPONSE_BUFFER_BYTES=65536 TARGETS=ours benches/large-answers.sh
#   ORIGIN=h2c B_BIN=/tmp/edgesteer-before TARGETS="before ours" benches/large-answers.sh  # over h2c
#   EDGE=tls B_BIN=/tmp/edgesteer-before TARGETS="before ours" benches/large-answers.sh  # clients over TLS
#   EDGE=tls OURS_ARGS="--tls-send-buffer 0" TARGETS=ours benches/large-answers.sh   # flags for ours (B_ARGS: before)
#
# EDGE=tls: wrk reads over TLS 1.3 from ours' TLS listener (a self-signed
# ECDSA P-256 certificate); ours and before only.
#
# Prints one row per target and round: requests, MB/s, proxy CPU us per
# request, wrk's mean latency; then each target's median. CPU is the
# proxy's user + system time from /proc over the run, so the price of
# loopback (the kernel delivers each send to wrk's socket inline, on the
# proxy's CPU) is in it, for every target alike. Everything runs on
# 127.0.0.1 and stops on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SIZE=${SIZE:-1048576}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-"ours bare nginx"}
for tool in wrk nginx taskset; do
  command -v "$tool" >/dev/null || { echo "large-answers.sh: needs $tool (benches/peer.sh installs wrk and nginx)" >&2; exit 1; }
done
case " $TARGETS " in *" before "*) [ -n "${B_BIN:-}" ] || { echo "large-answers.sh: target 'before' needs B_BIN=/path/to/edgesteer" >&2; exit 1; } ;; esac
bench_setup
hz=$(getconf CLK_TCK)
EDGE=${EDGE:-plain}
scheme=http
if [ "$EDGE" = tls ]; then
  case " $TARGETS " in *" bare "*|*" nginx "*) echo "large-answers.sh: EDGE=tls is for ours and before only" >&2; exit 1 ;; esac
  scheme=https
  (cd "$wd" && openssl ecparam -name prime256v1 -genkey -noout -out edge.key &&
    openssl req -x509 -new -key edge.key -sha256 -days 2 -subj "/CN=localhost" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out edge.pem 2>/dev/null &&
    openssl pkcs8 -topk8 -nocrypt -in edge.key -out edge.pk8)
fi

up=$(port)
taskset -c 1 "$bin/edgesteer" backend --region us-east --name b1 --listen "127.0.0.1:$up" > "$wd/backend.log" 2>&1 &
pids+=($!)
covergen_table "$wd/table.toml" "127.0.0.1:$up" strip
if [ -n "${RESPONSE_BUFFER_BYTES:-}" ]; then
  printf '\n[limits]\nresponse_buffer_bytes = %s\n' "$RESPONSE_BUFFER_BYTES" >> "$wd/table.toml"
fi
origin_protocol "$wd/table.toml"
"$bin/edgesteer" validate "$wd/table.toml" >&2

# start TARGET LISTEN: the target on CPU 0; sets pid.
start() {
  case $1 in
    ours|before)
      local exe=$bin/edgesteer extra=${OURS_ARGS:-}
      [ "$1" = before ] && { exe=$B_BIN; extra=${B_ARGS:-}; }
      local listen=(--listen "127.0.0.1:$2")
      [ "$EDGE" = tls ] && listen=(--listen "127.0.0.1:$(port)" --tls-listen "127.0.0.1:$2" --tls-cert "$wd/edge.pem:$wd/edge.pk8")
      # shellcheck disable=SC2086
      taskset -c 0 "$exe" proxy --config "$wd/table.toml" "${listen[@]}" \
        --admin "127.0.0.1:$(port)" --threads 1 --grace-period 0 $extra > "$wd/$1.log" 2>&1 & ;;
    bare)
      taskset -c 0 "$bin/passthrough" --listen "127.0.0.1:$2" --upstream "127.0.0.1:$up" \
        --threads 1 > "$wd/bare.log" 2>&1 & ;;
    nginx)
      mkdir -p "$wd/nginx"
      cat > "$wd/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $wd/nginx/error.log warn;
pid $wd/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  upstream up { server 127.0.0.1:$up; keepalive 64; }
  server {
    listen 127.0.0.1:$2;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
      taskset -c 0 nginx -c "$wd/nginx.conf" -p "$wd/nginx" > /dev/null 2>&1 & ;;
    *) echo "large-answers.sh: unknown target $1" >&2; exit 1 ;;
  esac
  pid=$!; pids+=($pid)
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf '%-7s %5s %9s %9s %12s %10s\n' target round requests MB/s cpu_us/req latency
for round in $(seq "$ROUNDS"); do
  for t in $TARGETS; do
    listen=$(port)
    start "$t" "$listen"
    ok=""
    for _ in $(seq 100); do
      curl -skf -o /dev/null "$scheme://127.0.0.1:$listen/bytes?n=16" && { ok=1; break; }
      sleep 0.1
    done
    [ -n "$ok" ] || { echo "large-answers.sh: $t did not answer; its log:" >&2; cat "$wd/$t.log" >&2 2>/dev/null || true; exit 1; }
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c 1 wrk -t1 -c8 -d"${DUR}s" "$scheme://127.0.0.1:$listen/bytes?n=$SIZE")
    t1=$(cpu_ticks "$pid")
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    lat=$(awk '/Latency/ {print $2}' <<<"$out")
    python3 - "$t" "$round" "$reqs" "$t0" "$t1" "$hz" "$SIZE" "$DUR" "$lat" >> "$wd/rows" <<'PY'
import sys
t, rnd, reqs, t0, t1, hz, size, dur, lat = sys.argv[1:]
reqs = int(reqs)
us = (float(t1) - float(t0)) / float(hz) * 1e6 / max(reqs, 1)
print(f"{t:<7} {rnd:>5} {reqs:>9} {reqs * int(size) / float(dur) / 1e6:>9.0f} {us:>12.1f} {lat:>10}")
PY
    tail -1 "$wd/rows"
  done
done
echo "median cpu_us/req per target (SIZE=$SIZE, $ROUNDS rounds):"
python3 - "$wd/rows" <<'PY'
import collections, statistics, sys
by = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    by[f[0]].append(float(f[4]))
for t, v in by.items():
    print(f"  {t:<7} {statistics.median(v):8.1f}  (min {min(v):.1f}, max {max(v):.1f})")
PY
