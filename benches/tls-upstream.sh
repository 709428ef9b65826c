#!/usr/bin/env bash
# CPU per request with the origin hop over TLS (issue 15): the same load
# through ours with a plain HTTP/1.1 origin, a TLS HTTP/1.1 origin, a TLS
# h2 origin, and through nginx (1 worker) with `proxy_ssl` and upstream
# keepalive to the same TLS origin. The origin is `edgesteer backend --tls`
# (rustls, h2 and HTTP/1.1 by ALPN; certificate verified by both proxies
# against its generated CA, name `localhost`).
#
# The proxy under test is pinned to CPU 0; load (edgesteer-load, closed
# loop) and origins share CPU 1. CPU per request = the proxy's user+system
# CPU time during the run / requests answered.
#
#   benches/tls-upstream.sh                # DUR=10 CONNS=32
#   BUILD=0 benches/tls-upstream.sh        # binaries already built
#
# Loopback only; everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}
CONNS=${CONNS:-32}
. benches/lib.sh
root=$(pwd)
[ "${BUILD:-1}" = 0 ] || cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
bin=$root/target/release
wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT
command -v nginx >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq nginx >/dev/null; }
ticks=$(getconf CLK_TCK)
cpu_s() { # total user+system seconds of the given pids
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  python3 -c "print($t / $ticks)"
}

plain=$(port); tls=$(port)
taskset -c 1 "$bin/edgesteer" backend --region us-east --name plain --listen "127.0.0.1:$plain" >/dev/null 2>&1 &
pids+=($!)
taskset -c 1 "$bin/edgesteer" backend --region us-east --name tls --listen "127.0.0.1:$tls" --tls --tls-dir "$wd/pki" > "$wd/tls-backend.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -f "$wd/pki/ca.pem" ] && break; sleep 0.1; done
sleep 0.5

table() { # NAME ADDRESS UPSTREAM-TOML
  cat > "$wd/$1.toml" <<EOF
default_region = "r"
[health]
path = "/health"
interval_ms = 5000
timeout_ms = 1000
[regions.r]
backends = [ { address = "$2", weight = 1 } ]
$3
EOF
}
table plain "127.0.0.1:$plain" ""
table tls-h1 "127.0.0.1:$tls" "[regions.r.upstream]
tls = true
sni = \"localhost\"
ca = \"$wd/pki/ca.pem\"
alpn = [\"http/1.1\"]"
table tls-h2 "127.0.0.1:$tls" "[regions.r.upstream]
tls = true
sni = \"localhost\"
ca = \"$wd/pki/ca.pem\"
alpn = [\"h2\"]"

run() { # NAME PID LISTEN-PORT
  local before after out
  before=$(cpu_s "${@:2:$#-2}")
  out=$(taskset -c 1 "$bin/edgesteer-load" --target "127.0.0.1:${!#}" --duration "$DUR" --connections "$CONNS" --json)
  after=$(cpu_s "${@:2:$#-2}")
  python3 - "$1" "$before" "$after" "$out" <<'PY'
import json, sys
name, before, after, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
ok, errs = out["ok"], sum(out["errors"].values())
cpu = (after - before) / max(ok, 1) * 1e6
print(f"{name:<22} {out['throughput_rps']:>9.0f} req/s  {cpu:>7.1f} us CPU/request  "
      f"p50 {out['latency_us']['p50']:>6} us  p99 {out['latency_us']['p99']:>6} us  errors {errs}")
PY
}

echo "target                   throughput   CPU per request     latency"
for t in plain tls-h1 tls-h2; do
  l=$(port); ad=$(port)
  RUST_LOG=warn taskset -c 0 "$bin/edgesteer" proxy --config "$wd/$t.toml" --listen "127.0.0.1:$l" \
    --admin "127.0.0.1:$ad" --threads 1 --runtime-dir "$wd/rt-$t" --trust 127.0.0.0/8 >/dev/null 2>&1 &
  p=$!; pids+=($p)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ad/healthz" >/dev/null && break; sleep 0.1; done
  taskset -c 1 "$bin/edgesteer-load" --target "127.0.0.1:$l" --duration 2 --connections "$CONNS" >/dev/null
  run "ours, origin $t" "$p" "$l"
  kill "$p"; wait "$p" 2>/dev/null || true
done

# nginx, one worker, proxy_ssl with verification and upstream keepalive.
ng=$(port)
mkdir -p "$wd/nginx"
cat > "$wd/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $wd/nginx/nginx.pid;
error_log $wd/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream origin { server 127.0.0.1:$tls; keepalive 64; }
  server {
    listen 127.0.0.1:$ng;
    location / {
      proxy_pass https://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $wd/pki/ca.pem;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }
}
EOF
taskset -c 0 nginx -c "$wd/nginx/nginx.conf" -g 'daemon off;' &
master=$!; pids+=($master)
sleep 0.5
worker=$(pgrep -P "$master" | head -1)
taskset -c 1 "$bin/edgesteer-load" --target "127.0.0.1:$ng" --duration 2 --connections "$CONNS" >/dev/null
run "nginx, origin tls-h1" "$master" "$worker" "$ng"
