#!/usr/bin/env bash
# The idle proxy's memory, part by part (issue 30's "memory floor"): the
# release proxy with the covergen table (its rate-limit policies on), idle
# for $IDLE s after start, in a few configurations, each a fresh process.
# Per run: RSS, and RSS split by /proc/PID/smaps into the binary's own
# pages (code, and the bundled geo database as far as it was read), other
# files (libc, ...), the heap and anonymous mappings (mimalloc's arenas,
# thread stacks), plus threads and metric series.
#
#   benches/memory-floor.sh
#   BUILD=0 IDLE=5 benches/memory-floor.sh
#   PROXY_BIN=/tmp/edgesteer-before benches/memory-floor.sh   # another build of ours
#
# "code" is the part of "binary" that is its executable mapping: the pages
# of code start-up and the threads ran, with the kernel's fault-around
# (docs/design.md, "Code layout").
#
# Loopback only; everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
IDLE=${IDLE:-3}
root=$(pwd)
[ "${BUILD:-1}" = 0 ] || cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2  # the set the other benches build: no rebuild between them
bin=$root/target/release
exe=${PROXY_BIN:-$bin/edgesteer}
wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT
up=$(port)
"$bin/edgesteer" backend --region us-east --name b1 --listen "127.0.0.1:$up" > /dev/null 2>&1 &
pids+=($!)
covergen_table "$wd/table.toml" "127.0.0.1:$up" keep

run() { # label, extra args...
  local label=$1; shift
  local listen admin p
  listen=$(port); admin=$(port)
  "$exe" proxy --config "$wd/table.toml" --listen "127.0.0.1:$listen" \
    --admin "127.0.0.1:$admin" --grace-period 0 "$@" > "$wd/proxy.log" 2>&1 &
  p=$!; pids+=($p)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
  sleep "$IDLE"
  local series
  series=$(curl -s "http://127.0.0.1:$admin/metrics" | grep -vc '^#' || true)
  python3 - "$label" "$p" "$(realpath "$exe")" "$series" <<'PY'
import re, sys
label, pid, exe, series = sys.argv[1:]
parts = {"binary": 0, "code": 0, "other files": 0, "heap": 0, "anon": 0, "stack": 0}
name = perms = None
for line in open(f"/proc/{pid}/smaps"):
    m = re.match(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \d+\s*(.*)$", line)
    if m:
        perms, name = m.group(1), m.group(2).strip(); continue
    if line.startswith("Rss:"):
        kb = int(line.split()[1])
        if name == exe or name.startswith(exe + " "):
            parts["binary"] += kb
            if "x" in perms: parts["code"] += kb
        elif name == "[heap]": parts["heap"] += kb
        elif name.startswith("[stack"): parts["stack"] += kb
        elif name.startswith("/"): parts["other files"] += kb
        else: parts["anon"] += kb
st = open(f"/proc/{pid}/status").read()
rss = int(re.search(r"VmRSS:\s+(\d+)", st).group(1))
threads = int(re.search(r"Threads:\s+(\d+)", st).group(1))
mb = lambda kb: f"{kb/1024:6.1f}"
print(f"{label:34} {mb(rss)}  " + "  ".join(f"{mb(v)}" for v in parts.values()) + f"  {threads:7d}  {series:>6}")
PY
  kill "$p"; wait "$p" 2>/dev/null || true
}
echo "RSS in MB                          total  binary   code  other-files  heap   anon  stack  threads  series"
run "default (threads = cores)"
run "--threads 1" --threads 1
run "--threads 1 --no-request-metrics" --threads 1 --no-request-metrics
run "--threads 1, GeoDNS on" --threads 1 --dns-listen "127.0.0.1:$(port)"
run "--threads 1, geo db from a file" --threads 1 --geo-db "$root/geo/data/geo-whois-asn-country.mmdb"
