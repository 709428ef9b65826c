#!/usr/bin/env bash
# edgesteer/link-order.txt: the functions a release proxy runs at start and
# per request, hottest first, which edgesteer/build.rs hands the linker so
# they sit together (the kernel maps 64 KiB of a binary's code around each
# page a process runs; docs/design.md, "Code layout").
#
#   scripts/link-order.sh            # build, profile, rewrite the list
#   BUILD=0 scripts/link-order.sh    # profile the release binary already built
#   scripts/link-order.sh check      # how much of the list the release binary has, and
#                                    # whether those functions sit together (exit 1 if not)
#
# It runs the release proxy under valgrind's callgrind, which counts every
# function that ran, however rarely (a sampling profiler misses the ones
# that run once), through a start, plaintext HTTP/1.1 and h2c, TLS with
# HTTP/1.1 and h2, requests from several countries with and without an API
# key, 1 MiB answers read fast and slowly, a chunked answer, an upload, a
# smuggling-shaped request, a metrics scrape, GeoDNS queries with client
# subnets, and a few health-check rounds, then lists the binary's functions
# that ran, by instructions spent.
#
# The names carry hashes that change with the toolchain, Cargo.lock and the
# feature set: re-run it after any of those change (`check` shows when the
# list has gone stale). Loopback only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
root=$(pwd)
list=$root/edgesteer/link-order.txt
exe=$(realpath -m "${CARGO_TARGET_DIR:-target}")/release/edgesteer

if [ "${1:-}" = check ]; then
  [ -x "$exe" ] || { echo "link-order: no release binary at $exe" >&2; exit 1; }
  python3 scripts/link-order.py check "$exe" "$list"
  exit
fi

need=()
for tool in valgrind:valgrind openssl:openssl curl:curl dig:bind9-dnsutils nm:binutils; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ "${BUILD:-1}" = 0 ] || cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT

cd "$wd"
openssl ecparam -name prime256v1 -genkey -noout -out edge.key
openssl req -x509 -new -key edge.key -sha256 -days 2 -subj "/CN=api.covergen.ai" \
  -addext "subjectAltName=DNS:api.covergen.ai,IP:127.0.0.1" -out edge.pem 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in edge.key -out edge.pk8
cd "$root"

up=$(port)
"$exe" backend --region us-east --name b1 --listen "127.0.0.1:$up" > "$wd/backend.log" 2>&1 &
pids+=($!)
covergen_table "$wd/table.toml" "127.0.0.1:$up" keep
listen=$(port); tls=$(port); admin=$(port); dns=$(port)
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$wd/cg.out" \
  "$exe" proxy --config "$wd/table.toml" --listen "127.0.0.1:$listen" \
  --tls-listen "127.0.0.1:$tls" --tls-cert "$wd/edge.pem:$wd/edge.pk8" \
  --admin "127.0.0.1:$admin" --dns-listen "127.0.0.1:$dns" --threads 1 \
  --runtime-dir "$wd/rt" --grace-period 0 --trust 127.0.0.1/32 > "$wd/proxy.log" 2>&1 &
proxy=$!; pids+=($proxy)
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null || { cat "$wd/proxy.log" >&2; exit 1; }

plain=http://127.0.0.1:$listen
https=https://api.covergen.ai:$tls
tls_to=(--resolve "api.covergen.ai:$tls:127.0.0.1" -k)
ips="8.8.8.8 81.2.69.142 2.16.0.1 1.0.16.1 36.110.0.1 103.4.96.1 41.0.0.1 177.0.0.1 2001:4860::1"
for round in 1 2 3; do
  for ip in $ips; do
    # keep-alive: two requests on one connection, the second with a key
    curl -s -H "X-Forwarded-For: $ip" "$plain/echo" \
      --next -H "X-Forwarded-For: $ip" -H "X-Api-Key: key-$round" "$plain/v1/items?q=$round" > /dev/null || true
    curl -s --http1.1 "${tls_to[@]}" -H "X-Forwarded-For: $ip" "$https/echo" "$https/echo" > /dev/null || true
    curl -s --http2 "${tls_to[@]}" -H "X-Forwarded-For: $ip" "$https/echo" "$https/echo" > /dev/null || true
    dig +short +tries=1 +time=5 +subnet="$ip" -p "$dns" @127.0.0.1 api.covergen.ai A > /dev/null || true
  done
  curl -s --http2-prior-knowledge -H "X-Forwarded-For: 8.8.8.8" "$plain/echo" "$plain/echo" > /dev/null || true
  curl -s -o /dev/null "$plain/bytes?n=1048576" || true
  curl -s -o /dev/null "$plain/bytes?n=300000&chunked=1" || true
  curl -s -o /dev/null -X POST --data-binary @"$wd/table.toml" "$plain/upload" || true
  printf 'GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n' \
    | timeout 5 python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",'"$listen"')); s.sendall(sys.stdin.buffer.read()); s.recv(4096)' || true
  curl -s -o /dev/null "http://127.0.0.1:$admin/metrics" || true
done
# a slow reader: the pipe fills and waits on the client
curl -s -o /dev/null --limit-rate 200k "$plain/bytes?n=1048576" || true
kill -TERM "$proxy"
wait "$proxy" || true
[ -s "$wd/cg.out" ] || { echo "link-order: callgrind wrote no profile" >&2; cat "$wd/proxy.log" >&2; exit 1; }

python3 scripts/link-order.py make "$wd/cg.out" "$(realpath "$exe")" "$list"
