#!/usr/bin/env bash
# The production-shaped run (issue 30): TLS at the edge, TLS to the origin,
# clients that keep their connection and clients that come and go; nginx,
# HAProxy, a bare Pingora pass-through and edgesteer side by side.
#
# - Same for every target: one worker/thread pinned to CPU $PROXY_CPU; ECDSA
#   P-256 certificates from one CA, TLS 1.3 at both hops; the origin is nginx
#   (1 worker, `return 200` with a 100-byte body) over TLS on CPU $LOAD_CPU
#   with the load; every target verifies it and keeps connections to it.
#   - nginx: `ssl_session_tickets on`, upstream `keepalive 64`,
#     `proxy_ssl_verify on` + `proxy_ssl_session_reuse on`;
#   - HAProxy: `bind ... ssl alpn h2,http/1.1`, `server ... ssl verify
#     required`, `http-reuse always`;
#   - pingora: `passthrough --tls-cert ... --upstream-tls localhost`
#     (benches/src/bin/passthrough.rs: Pingora as it comes, plus the same
#     session tickets as ours);
#   - ours: the covergen table (geo, zones, the per-IP policy at a limit no
#     run reaches: limits on) with `[upstream] tls = true`, `--tls-listen`.
# - Shapes, each target run in turn, a fresh process per run:
#   keepalive  wrk -t1 -c$CONNS over https, geo mix (X-Forwarded-For);
#   churn      edgesteer-churn (benches/src/bin/churn.rs, a Rust/rustls
#              driver): each connection makes $PER_CONN requests then
#              closes; every other reconnect resumes with a ticket, the
#              others are full handshakes; geo mix;
#   h2         h2load -c$H2_CONNS -m$H2_STREAMS (h2 by ALPN), one fixed
#              X-Forwarded-For (h2load cannot rotate it).
# - Per run: req/s, CPU µs per request (the target's user+system time over
#   the run / requests answered), handshakes/s (per core: one core each),
#   p50/p99 latency, peak RSS (VmHWM). CSV ($CSV, default
#   target/peer-tls.csv): target,shape,round,rps,cpu_us_per_req,
#   handshakes_per_s,p50_us,p99_us,rss_mb; a summary (medians) on stdout.
#
#   benches/peer-tls.sh                          # DUR=10 ROUNDS=3
#   SHAPES=churn TARGETS="nginx ours" DUR=5 ROUNDS=1 BUILD=0 benches/peer-tls.sh
#   RATE=10000 WRK_SCRIPT=$PWD/benches/paced.lua SHAPES=keepalive benches/peer-tls.sh
#                                                # p99 at one offered load for all
#
# Loopback only; everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DUR=${DUR:-10}
WARM=${WARM:-2}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
PER_CONN=${PER_CONN:-10}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-10}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SHAPES=${SHAPES:-"keepalive churn h2"}
TARGETS=${TARGETS:-"nginx haproxy pingora ours"}
root=$(pwd)
CSV=${CSV:-$root/target/peer-tls.csv}
GEO_MIX=${GEO_MIX:-$root/../shared/bench/geo-mix.lua}
# The keep-alive shape's wrk script: the geo mix, or benches/paced.lua for
# the mix at a fixed offered load (RATE; it reads CONNS, exported here).
WRK_SCRIPT=${WRK_SCRIPT:-$GEO_MIX}
export CONNS
need=""
for t in nginx haproxy wrk h2load openssl; do command -v $t >/dev/null || need="$need $t"; done
if [ -n "$need" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  pkgs=$(echo "$need" | sed 's/h2load/nghttp2-client/')
  $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
PROFILE=${PROFILE:-release}  # debug: to try the harness itself, not for figures
if [ "${BUILD:-1}" != 0 ]; then
  if [ "$PROFILE" = release ]; then cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
  else cargo build --locked -p edgesteer -p edgesteer-benches --bins >&2; fi
fi
bin=$root/target/$PROFILE
wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT
mkdir -p "$wd/tmp"
ulimit -n 65536 2>/dev/null || true
ticks=$(getconf CLK_TCK)

# ------------------------------------------------------------------ PKI
cd "$wd"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=peer-tls CA" -out ca.pem 2>/dev/null
leaf() { # name san
  openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  cat "$1.pem" "$1.key" > "$1.combined.pem"
}
leaf edge "DNS:api.covergen.ai,IP:127.0.0.1"
leaf origin "DNS:localhost,IP:127.0.0.1"
# pkcs8 keys for rustls-based targets
for k in edge origin; do openssl pkcs8 -topk8 -nocrypt -in $k.key -out $k.pk8; done
cd "$root"
# The geo mix's addresses, for the churn driver and h2load.
grep -o '"[0-9a-f.:]*"' "$GEO_MIX" | tr -d '"' | grep -E '[.:]' > "$wd/ips.txt"

user_line=$([ "$(id -u)" = 0 ] && echo "user root;" || true)
body=$(python3 -c 'print(("peer-tls upstream body " * 5)[:100])')
origin=$(port)
cat > "$wd/origin.conf" <<CONF
worker_processes 1; daemon off; master_process on; $user_line
pid $wd/origin.pid; error_log $wd/origin.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $wd/tmp/o1; proxy_temp_path $wd/tmp/o2; fastcgi_temp_path $wd/tmp/o3;
  uwsgi_temp_path $wd/tmp/o4; scgi_temp_path $wd/tmp/o5;
  keepalive_requests 100000000; keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$origin ssl;
    ssl_certificate $wd/origin.pem; ssl_certificate_key $wd/origin.key;
    ssl_protocols TLSv1.3;
    location / { default_type text/plain; return 200 "$body"; }
  }
}
CONF
taskset -c "$LOAD_CPU" nginx -p "$wd" -e "$wd/origin.err" -c "$wd/origin.conf" &
pids+=($!)

# ------------------------------------------------------------------ targets
declare -A PORT=([nginx]=$(port) [haproxy]=$(port) [pingora]=$(port) [ours]=$(port))
cat > "$wd/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process on; $user_line
pid $wd/nginx.pid; error_log $wd/nginx.err warn;
events { worker_connections 16384; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $wd/tmp/n1; proxy_temp_path $wd/tmp/n2; fastcgi_temp_path $wd/tmp/n3;
  uwsgi_temp_path $wd/tmp/n4; scgi_temp_path $wd/tmp/n5;
  keepalive_requests 100000000;
  upstream origin { server 127.0.0.1:$origin; keepalive 64; }
  server {
    listen 127.0.0.1:${PORT[nginx]} ssl http2;
    ssl_certificate $wd/edge.pem; ssl_certificate_key $wd/edge.key;
    ssl_protocols TLSv1.3;
    ssl_session_tickets on; ssl_session_cache shared:SSL:10m;
    location / {
      proxy_pass https://origin;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $wd/ca.pem;
      proxy_ssl_name localhost; proxy_ssl_server_name on;
      proxy_ssl_session_reuse on; proxy_ssl_protocols TLSv1.3;
    }
  }
}
CONF
cat > "$wd/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:${PORT[haproxy]} ssl crt $wd/edge.combined.pem alpn h2,http/1.1
  default_backend be
backend be
  server o 127.0.0.1:$origin ssl verify required ca-file $wd/ca.pem sni str(localhost) alpn http/1.1
CONF
covergen_table "$wd/table.toml" "127.0.0.1:$origin" price
cat >> "$wd/table.toml" <<CONF

[upstream]
tls = true
sni = "localhost"
ca = "$wd/ca.pem"
alpn = ["http/1.1"]
CONF

start_target() { # name -> sets tpid
  local p=${PORT[$1]}
  case $1 in
    nginx) taskset -c "$PROXY_CPU" nginx -p "$wd" -e "$wd/nginx.err" -c "$wd/nginx.conf" & ;;
    haproxy) taskset -c "$PROXY_CPU" haproxy -f "$wd/haproxy.cfg" -db > "$wd/haproxy.log" 2>&1 & ;;
    pingora) taskset -c "$PROXY_CPU" "$bin/passthrough" --listen "127.0.0.1:$p" --upstream "127.0.0.1:$origin" \
      --threads 1 --tls-cert "$wd/edge.pem" --tls-key "$wd/edge.pk8" \
      --upstream-tls localhost --upstream-ca "$wd/ca.pem" > "$wd/pingora.log" 2>&1 & ;;
    ours) taskset -c "$PROXY_CPU" "$bin/edgesteer" proxy --config "$wd/table.toml" --tls-listen "127.0.0.1:$p" \
      --tls-cert "$wd/edge.pem:$wd/edge.pk8" --admin 127.0.0.1:0 --threads 1 --grace-period 0 \
      --trust 127.0.0.1/32 > "$wd/ours.log" 2>&1 & ;;
  esac
  tpid=$!
  pids+=($tpid)
  for _ in $(seq 100); do
    curl -sk -o /dev/null --max-time 1 "https://127.0.0.1:$p/" && return 0
    sleep 0.1
  done
  echo "peer-tls: $1 did not come up; its log:" >&2
  tail -20 "$wd/$1.log" "$wd/$1.err" >&2 2>/dev/null || true
  return 1
}
stop_target() {
  kill "$tpid" 2>/dev/null || true; wait "$tpid" 2>/dev/null || true
  sleep 0.5
}
cpu_ticks() { # the target and its children (nginx's worker)
  local t=0
  for p in $1 $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $t
}
rss_mb() { # peak RSS of the target's busiest process (nginx: its worker)
  local m=0 r
  for p in $1 $(pgrep -P "$1" || true); do
    r=$(awk '/VmHWM/ {print $2}' "/proc/$p/status"); [ "$r" -gt "$m" ] && m=$r
  done
  python3 -c "print(round($m/1024, 1))"
}

# load <shape> <port> <secs> <out>: runs the load; prints "requests handshakes p50_us p99_us"
load() {
  local shape=$1 p=$2 secs=$3 out=$4
  case $shape in
    keepalive)
      taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" --latency -s "$WRK_SCRIPT" "https://127.0.0.1:$p/" > "$out" 2>&1
      python3 - "$out" "$CONNS" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
req = int(re.search(r"(\d+) requests in", t).group(1))
def us(q):
    m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\b" % q, t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[u]
err = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if err: print("non-2xx:", err.group(1), file=sys.stderr)
print(req, sys.argv[2], us(50), us(99))
PY
      ;;
    churn)
      taskset -c "$LOAD_CPU" "$bin/edgesteer-churn" --target "127.0.0.1:$p" --ca "$wd/ca.pem" \
        --connections "$CONNS" --requests "$PER_CONN" --duration "$secs" --xff-file "$wd/ips.txt" > "$out"
      python3 -c "
import json,sys; j=json.load(open('$out'))
if j['errors']: print('errors:', j['errors'], file=sys.stderr)
print('  handshakes:', j['handshakes_full'], 'full,', j['handshakes_resumed'], 'resumed', file=sys.stderr)
print(j['requests'], j['handshakes_full']+j['handshakes_resumed'], j['p50_us'], j['p99_us'])"
      ;;
    h2)
      rm -f "$out.log"
      taskset -c "$LOAD_CPU" h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$secs" \
        -H "X-Forwarded-For: 81.2.69.160" --log-file="$out.log" "https://127.0.0.1:$p/" > "$out" 2>&1
      python3 - "$out" "$out.log" "$H2_CONNS" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
if "h2" not in t.split("Application protocol:")[-1][:8]:
    print("h2load did not negotiate h2:", t[-400:], file=sys.stderr); sys.exit(1)
lat = sorted(int(l.split("\t")[2]) for l in open(sys.argv[2]) if l.count("\t") >= 2 and l.split("\t")[1] == "200")
bad = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", t)
if bad and int(bad.group(2)): print("failed:", bad.group(2), file=sys.stderr)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
print(len(lat), sys.argv[3], q(0.50), q(0.99))
PY
      ;;
  esac
}

echo "target,shape,round,rps,cpu_us_per_req,handshakes_per_s,p50_us,p99_us,rss_mb" > "$CSV"
for shape in $SHAPES; do
  for round in $(seq "$ROUNDS"); do
    for target in $TARGETS; do
      start_target "$target"
      load "$shape" "${PORT[$target]}" "$WARM" "$wd/warm.out" > /dev/null || true
      c0=$(cpu_ticks "$tpid"); t0=$(date +%s.%N)
      read -r req hs p50 p99 < <(load "$shape" "${PORT[$target]}" "$DUR" "$wd/$target-$shape-$round.out")
      c1=$(cpu_ticks "$tpid"); t1=$(date +%s.%N)
      rss=$(rss_mb "$tpid")
      stop_target
      python3 - "$target" "$shape" "$round" "$req" "$hs" "$p50" "$p99" "$rss" "$c0" "$c1" "$t0" "$t1" "$ticks" >> "$CSV" <<'PY'
import sys
target, shape, rnd, req, hs, p50, p99, rss, c0, c1, t0, t1, ticks = sys.argv[1:]
secs = float(t1) - float(t0); req = int(req)
cpu_us = (int(c1) - int(c0)) / int(ticks) * 1e6 / max(req, 1)
print(f"{target},{shape},{rnd},{req/secs:.0f},{cpu_us:.1f},{int(hs)/secs:.1f},{float(p50):.0f},{float(p99):.0f},{rss}")
PY
      tail -1 "$CSV" >&2
    done
  done
done
echo
python3 - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = ["rps", "cpu_us_per_req", "handshakes_per_s", "p50_us", "p99_us", "rss_mb"]
print("medians over rounds; x nginx = CPU per request against nginx's in the same shape")
print(f"{'shape':10} {'target':8} " + " ".join(f"{c:>16}" for c in cols) + f" {'x nginx':>8}")
for shape in dict.fromkeys(r["shape"] for r in rows):
    med = {}
    for target in dict.fromkeys(r["target"] for r in rows):
        rs = [r for r in rows if r["shape"] == shape and r["target"] == target]
        if rs: med[target] = {c: statistics.median(float(r[c]) for r in rs) for c in cols}
    base = med.get("nginx", {}).get("cpu_us_per_req")
    for target, m in med.items():
        x = f"{m['cpu_us_per_req'] / base:8.2f}" if base else f"{'-':>8}"
        print(f"{shape:10} {target:8} " + " ".join(f"{m[c]:16.1f}" for c in cols) + " " + x)
PY
