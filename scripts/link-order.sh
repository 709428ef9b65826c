#!/usr/bin/env bash
# Regenerates edgesteer/link-order.txt: the functions a release proxy runs
# at start and per request, hottest first, which edgesteer/build.rs hands
# the linker so they sit together (the binary's resident code is what the
# kernel maps 64 KiB around each page a process runs; docs/design.md,
# "Code layout").
#
# It runs the release proxy under valgrind's callgrind (which counts every
# function that ran, however rarely, unlike a sampling profiler) through a
# start, plaintext and TLS requests from several countries with API keys,
# h2, 1 MiB answers read fast and slowly, a chunked answer, an upload, bad
# requests, a metrics scrape, GeoDNS queries and a few health-check rounds,
# then lists the functions of the binary that ran, by instructions spent.
#
#   scripts/link-order.sh            # build, profile, rewrite the list
#   BUILD=0 scripts/link-order.sh    # the release binary already built
#
# Re-run it after a large change (a new dependency, a new request path);
# the list matches the build the benches use (`-p edgesteer -p
# edgesteer-benches`): another feature set renames some symbols, which the
# linker then places as it would without a list. It prints how much of the
# list the binary it profiled has. Loopback only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
for tool in valgrind openssl curl; do
  command -v "$tool" >/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y -qq --no-install-recommends valgrind openssl curl >/dev/null
  }
done
root=$(pwd)
[ "${BUILD:-1}" = 0 ] || cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
exe=$root/target/release/edgesteer
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
  --grace-period 0 --trust 127.0.0.1/32 > "$wd/proxy.log" 2>&1 &
proxy=$!; pids+=($proxy)
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null || { cat "$wd/proxy.log" >&2; exit 1; }

ips="8.8.8.8 81.2.69.142 2.16.0.1 1.0.16.1 36.110.0.1 103.4.96.1 41.0.0.1 177.0.0.1 2001:4860::1"
for round in 1 2 3; do
  for ip in $ips; do
    # keep-alive: several requests on one connection, with and without a key
    curl -s -H "X-Forwarded-For: $ip" "http://127.0.0.1:$listen/echo" \
      -H "X-Api-Key: key-$round" "http://127.0.0.1:$listen/v1/items?q=$round" > /dev/null || true
    curl -sk --resolve "api.covergen.ai:$tls:127.0.0.1" -H "X-Forwarded-For: $ip" \
      "https://api.covergen.ai:$tls/echo" "https://api.covergen.ai:$tls/echo" > /dev/null || true
  done
  curl -s --http2-prior-knowledge -H "X-Forwarded-For: 8.8.8.8" \
    "http://127.0.0.1:$listen/echo" "http://127.0.0.1:$listen/echo" > /dev/null || true
  curl -s -o /dev/null "http://127.0.0.1:$listen/bytes?n=1048576" || true
  curl -s -o /dev/null "http://127.0.0.1:$listen/bytes?n=300000&chunked=1" || true
  curl -s -o /dev/null -X POST --data-binary @"$wd/table.toml" "http://127.0.0.1:$listen/upload" || true
  printf 'GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n' \
    | timeout 5 python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",'"$listen"')); s.sendall(sys.stdin.buffer.read()); s.recv(4096)' || true
  curl -s -o /dev/null "http://127.0.0.1:$admin/metrics" || true
  if command -v dig >/dev/null; then
    dig +short +tries=1 +time=5 -p "$dns" @127.0.0.1 api.covergen.ai A > /dev/null || true
  fi
done
# a slow reader: the pipe fills and waits on the client
curl -s -o /dev/null --limit-rate 200k "http://127.0.0.1:$listen/bytes?n=1048576" || true
kill -TERM "$proxy"
for _ in $(seq 300); do kill -0 "$proxy" 2>/dev/null || break; sleep 0.1; done

python3 - "$wd/cg.out" "$exe" "$root/edgesteer/link-order.txt" <<'PY'
import collections, re, subprocess, sys
path, exe, dest = sys.argv[1:]
names, objects = {}, {}
cost = collections.Counter()
ob = fn = None
skip = False
spec = re.compile(r"^(c?(?:ob|fn|fl|fi|fe))=\((\d+)\)(?: (.*))?$")
for line in open(path):
    if skip:  # the line after calls= is the call's inclusive cost
        skip = False
        continue
    m = spec.match(line.rstrip("\n"))
    if m:
        kind, key, name = m.groups()
        if name is not None and kind in ("ob", "cob"):
            objects[key] = name
        if name is not None and kind in ("fn", "cfn"):
            names[key] = name
        if kind == "ob":
            ob = key
        elif kind == "fn":
            fn = key
    elif line.startswith("calls="):
        skip = True
    elif fn is not None and objects.get(ob) == exe and line[:1] in "0123456789+-*":
        fields = line.split()
        if len(fields) >= 2:
            cost[fn] += int(fields[1])
order, seen = [], set()
for key, _ in cost.most_common():
    name = re.sub(r"'\d+$", "", names[key])  # callgrind's recursion marker
    if name not in seen:
        seen.add(name)
        order.append(name)
# Only the binary's own functions: not callgrind's "(below main)", nor a
# name the symbol table does not have.
sizes = {}
nm = subprocess.run(["nm", "-S", "--defined-only", exe], capture_output=True, text=True).stdout
for line in nm.splitlines():
    p = line.split()
    if len(p) == 4 and p[2] in "tTwW":
        sizes[p[3]] = int(p[1], 16)
have = [s for s in order if s in sizes]
with open(dest, "w") as f:
    f.write("\n".join(have) + "\n")
print(f"{dest}: {len(have)} functions ({len(order) - len(have)} names that ran are not the "
      f"binary's symbols), {sum(sizes[s] for s in have) / 1e6:.2f} MB of its "
      f"{sum(sizes.values()) / 1e6:.2f} MB of code")
PY
