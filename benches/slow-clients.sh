#!/usr/bin/env bash
# Hostile slow clients against a release proxy: slowhttptest (Debian's
# package) holds 1000 connections for 30 s in each of its slowloris
# (-H: headers trickled), slow-body (-B: a POST body trickled) and
# slow-read (-X: the answer read slowly) modes, then slow readers of a
# 1 MiB answer (X1M), then the two slowloris heads the intake once let past
# its deadline (benches/slow/trickle.py: `empty`, leading empty lines;
# `space`, a space in the target), while a legitimate client sends 20
# requests/s. Prints, per mode, the legitimate success rate and the proxy's
# peak RSS (and its split, anonymous/file-backed, at that peak).
#
#   benches/slow-clients.sh                 # 1000 connections, 30 s per mode
#   CONNS=500 SECS=10 benches/slow-clients.sh
#   MODES="X1M" PROFILE=debug benches/slow-clients.sh   # one mode, a debug build
#   MODES=X1M RESPONSE_BUFFER_BYTES=16384 benches/slow-clients.sh   # another pipe budget
#   MODES=X1M ORIGIN=h2c benches/slow-clients.sh       # the origin reached over h2c (one connection per 100 requests)
#   MODES=X1M ORIGIN=h2c H2_WINDOW_BYTES=1048576 benches/slow-clients.sh  # and a larger h2 window per request
#   MODES=X1M PROXY_ARGS="--send-buffer 65536" benches/slow-clients.sh  # capped client send buffers
#   TARGET=nginx MODES=X1M benches/slow-clients.sh      # a peer instead: nginx or haproxy
#   PROXY_BIN=/tmp/edgesteer-before MODES=X1M benches/slow-clients.sh  # another build of ours
#   MODES=X1MTLS PROXY_ARGS="--send-buffer 65536" benches/slow-clients.sh  # stalled readers of 1 MiB over TLS (ours only)
#   MODES=X1MTLS PROXY_ARGS="--send-buffer 65536 --tls-send-buffer 0" benches/slow-clients.sh  # with rustls's 64 KiB buffer
#
# X1MTLS: benches/slow/tls_readers.py opens CONNS TLS connections (4 KiB
# receive buffers) to ours' TLS listener, each asking for 1 MiB, and reads
# nothing for SECS seconds (slowhttptest has no TLS here); "closed" is what
# the script saw opened.
#
# TARGET=nginx (1 worker, one process) or haproxy (1 thread) runs the same
# modes against that peer in front of the same origin, with its defaults
# but for connection limits that let 1000 clients in (nginx buffers an
# answer the client is slow to take into a temporary file, up to 1 GiB:
# its default, so its RSS is its real cost on this host).
#
# Everything runs on 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
CONNS=${CONNS:-1000}
SECS=${SECS:-30}
command -v slowhttptest >/dev/null || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y -qq --no-install-recommends slowhttptest >/dev/null
}
MODES=${MODES:-"H B X X1M empty space"}
PROFILE=${PROFILE:-release}
# The same set the other bench scripts build, so no script rebuilds for another.
if [ "$PROFILE" = release ]; then cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
else cargo build --locked -p edgesteer -p edgesteer-benches --bins >&2; fi
root=$(pwd); bin=$root/target/$PROFILE; wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT
ulimit -n 65536 2>/dev/null || true

# ours' TLS listener (X1MTLS): a self-signed ECDSA P-256 certificate.
(cd "$wd" && openssl ecparam -name prime256v1 -genkey -noout -out edge.key &&
  openssl req -x509 -new -key edge.key -sha256 -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out edge.pem 2>/dev/null &&
  openssl pkcs8 -topk8 -nocrypt -in edge.key -out edge.pk8)
up=$(port)
"$bin/edgesteer" backend --region us-east --name b1 --listen "127.0.0.1:$up" > "$wd/backend.log" 2>&1 &
pids+=($!)
covergen_table "$wd/table.toml" "127.0.0.1:$up" strip
# The origin shares these two cores with 1000 attackers: while 1000 slow
# readers ramp up, the kernel copies hundreds of MB between origin and proxy
# sockets and a 500 ms probe of the origin times out three times in a row,
# marking every region down (one origin serves them all): 503s that are the
# harness's, not a slow client's doing. Probes get 2 s here (every 3 s).
sed -i 's/^timeout_ms = 500$/timeout_ms = 2000/; s/^interval_ms = 1000$/interval_ms = 3000/' "$wd/table.toml"
grep -q '^timeout_ms = 2000$' "$wd/table.toml"
# RESPONSE_BUFFER_BYTES=N: the table's [limits] response_buffer_bytes (what
# one request may hold of an answer a client reads slowly; 32768 by default).
if [ -n "${RESPONSE_BUFFER_BYTES:-}" ]; then
  printf '\n[limits]\nresponse_buffer_bytes = %s\n' "$RESPONSE_BUFFER_BYTES" >> "$wd/table.toml"
fi
origin_protocol "$wd/table.toml"
"$bin/edgesteer" validate "$wd/table.toml" >&2
# A fresh proxy per mode, so each mode's peak is its own (an allocator
# keeps what the previous mode freed).
TARGET=${TARGET:-ours}
start_proxy() {
  listen=$(port); admin=$(port); tls=$(port)
  # a TLS listener only for the TLS mode, so the others' figures stay comparable
  local tls_args=()
  [ "$mode" = X1MTLS ] && tls_args=(--tls-listen "127.0.0.1:$tls" --tls-cert "$wd/edge.pem:$wd/edge.pk8")
  case $TARGET in
    ours)
      "${PROXY_BIN:-$bin/edgesteer}" proxy --config "$wd/table.toml" --listen "127.0.0.1:$listen" \
        "${tls_args[@]}" \
        --admin "127.0.0.1:$admin" --threads 1 --grace-period 0 ${PROXY_ARGS:-} > "$wd/proxy.log" 2>&1 & ;;
    nginx)
      mkdir -p "$wd/nginx"
      cat > "$wd/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $wd/nginx/error.log warn;
pid $wd/nginx/nginx.pid;
events { worker_connections 10000; }
http {
  access_log off;
  client_body_temp_path $wd/nginx/body;
  proxy_temp_path $wd/nginx/proxy;
  fastcgi_temp_path $wd/nginx/fastcgi;
  uwsgi_temp_path $wd/nginx/uwsgi;
  scgi_temp_path $wd/nginx/scgi;
  upstream origin { server 127.0.0.1:$up; keepalive 32; }
  server {
    listen 127.0.0.1:$listen;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
      nginx -p "$wd/nginx" -e "$wd/nginx/error.log" -c "$wd/nginx.conf" > "$wd/proxy.log" 2>&1 & ;;
    haproxy)
      cat > "$wd/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 5000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
frontend edge
  bind 127.0.0.1:$listen
  default_backend origin
backend origin
  http-reuse safe
  server o 127.0.0.1:$up
EOF
      haproxy -db -f "$wd/haproxy.cfg" > "$wd/proxy.log" 2>&1 & ;;
    *) echo "slow-clients.sh: TARGET is ours, nginx or haproxy" >&2; exit 2 ;;
  esac
  proxy=$!
  pids+=($proxy)
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$listen/v1/covers" >/dev/null && break; sleep 0.1; done
  url="http://127.0.0.1:$listen/v1/covers"
}
# An edgesteer counter (ours only).
metric() {
  if [ "$TARGET" != ours ]; then echo -; return; fi
  curl -s "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$proxy/status"; }
# The same RSS split: anonymous (heap, stacks) / file-backed (the binary, libc), MB.
rss_split() { awk '/RssAnon/ {a = $2} /RssFile/ {f = $2} END {printf "%.1f/%.1f", a / 1024, f / 1024}' "/proc/$proxy/status"; }
# The kernel's TCP buffer memory, whole host (MB): what slow readers hold
# outside the proxy's RSS.
tcp_mem_mb() { awk -v pg="$(getconf PAGESIZE)" '$1 == "TCP:" {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) * pg / 1048576}' /proc/net/sockstat; }
# The proxy's CPU time so far (user + system, clock ticks).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$proxy/stat"; }
echo "mode       legit_ok  legit_sent  legit_%   rss_before_MB  rss_peak_MB  peak_anon/file  head_timeouts  closed  legit_ms_p50/p99/max  cpu_s  kernel_tcp_MB"
for mode in $MODES; do
  if [ "$mode" = X1MTLS ] && [ "$TARGET" != ours ]; then echo "X1MTLS: ours only (skipped for $TARGET)" >&2; continue; fi
  start_proxy
  before=$(rss_kb)
  peak=$before
  split=$(rss_split)
  cpu_before=$(cpu_ticks)
  kpeak=0
  ok=0; sent=0
  case $mode in
    # slowloris sends a header line every 2 s (every read is quick; only a
    # whole-head deadline closes it); the others follow up every 10 s.
    H|B|X)
      slowhttptest -$mode -c "$CONNS" -r 500 -l "$SECS" -i "$([ $mode = H ] && echo 2 || echo 10)" -s 8192 -g -o "$wd/stats-$mode" -k 1 -n 5 -z 32 -w 1 -y 1 \
        -t "$([ $mode = B ] && echo POST || echo GET)" -u "$url" -p 3 > "$wd/slow-$mode.log" 2>&1 & ;;
    # Slow readers of a 1 MiB answer: a 512-1024 byte receive window, 32
    # bytes read every 3 s (the audit's run).
    X1M)
      slowhttptest -X -c "$CONNS" -r 500 -l "$SECS" -g -o "$wd/stats-$mode" -k 1 -n 5 -z 32 -w 512 -y 1024 \
        -u "http://127.0.0.1:$listen/bytes?n=1048576" -p 3 > "$wd/slow-$mode.log" 2>&1 & ;;
    # Stalled readers of 1 MiB over TLS (ours' TLS listener).
    X1MTLS)
      python3 benches/slow/tls_readers.py 127.0.0.1 "$tls" "$CONNS" "$SECS" "/bytes?n=1048576" > "$wd/slow-$mode.log" 2>&1 & ;;
    # The two heads that once slipped past the deadline: leading empty
    # lines, and a space in the target; a header line every 2 s.
    empty|space)
      python3 benches/slow/trickle.py 127.0.0.1 "$listen" "$mode" "$CONNS" "$SECS" 2 > "$wd/slow-$mode.log" 2>&1 & ;;
  esac
  slow=$!
  end=$(( $(date +%s) + SECS ))
  while [ "$(date +%s)" -lt "$end" ]; do
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}' "$url" || true)
    sent=$((sent + 1)); echo "${code#* }" >> "$wd/legit-$mode.times"
    if [ "${code%% *}" = 200 ]; then ok=$((ok + 1))
    else echo "$mode: legitimate request $sent at +$((SECS - end + $(date +%s)))s: HTTP ${code:-none} (000 = no answer within 5 s)" >&2; fi
    r=$(rss_kb); [ "$r" -gt "$peak" ] && { peak=$r; split=$(rss_split); }
    k=$(tcp_mem_mb); kpeak=$(python3 -c "print(max($kpeak, $k))")
    sleep 0.05
  done
  case $mode in
    empty|space|X1MTLS) wait "$slow" 2>/dev/null || true ;;  # it ends by itself after SECS
    *) kill "$slow" 2>/dev/null || true; wait "$slow" 2>/dev/null || true ;;
  esac
  case $mode in
    # trickle.py: variant, opened, closed by the proxy, slowest close (s).
    empty|space) closed=$(awk '{print $3 "/" $2 " by " $4 "s"}' "$wd/slow-$mode.log") ;;
    X1MTLS) closed="opened:$(awk '{print $1}' "$wd/slow-$mode.log")" ;;
    # slowhttptest's CSV (-g): connections the server closed by the end.
    *) closed=$(tail -1 "$wd/stats-$mode.csv" 2>/dev/null | cut -d, -f2) ;;
  esac
  # The proxy's CPU over the mode, in seconds (of SECS on one thread).
  cpu=$(python3 -c "print('%.1f' % (($(cpu_ticks) - $cpu_before) / $(getconf CLK_TCK)))")
  # Legitimate requests' time (curl's time_total): median, p99, slowest.
  lat=$(python3 -c "
import sys
t = sorted(float(x) for x in open(sys.argv[1]).read().split() if x.replace('.', '', 1).isdigit())
q = lambda p: t[min(len(t) - 1, int(p * len(t)))] * 1000 if t else 0
print('%.1f/%.0f/%.0f' % (q(0.5), q(0.99), t[-1] * 1000 if t else 0))" "$wd/legit-$mode.times")
  printf "%-10s %8d  %10d  %7.1f   %13.1f  %11.1f  %14s  %13s  %6s  %20s  %7s  %14.0f\n" "$mode" "$ok" "$sent" \
    "$(python3 -c "print(100*$ok/max($sent,1))")" "$(python3 -c "print($before/1024)")" "$(python3 -c "print($peak/1024)")" "$split" \
    "$(metric edgesteer_head_timeouts_total)" "${closed:--}" "$lat" "$cpu" "$kpeak"
  kill "$proxy" 2>/dev/null || true; wait "$proxy" 2>/dev/null || true
  sleep 2
done
