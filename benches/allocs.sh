#!/usr/bin/env bash
# Heap allocations per proxied request, ours against the bare Pingora
# pass-through, and where ours makes more. Unlike CPU per request, the
# count does not move with the host's speed: it is the part of ours' own
# per-request work that the allocator prices (session 13 of issue 30).
#
# Both binaries are built with the system allocator (the `system-alloc`
# features, in target/sysalloc so the mimalloc build stays as it is; the
# first build there is a full one) and run under heaptrack, one at a time,
# in front of one nginx upstream, loaded by wrk with the geo-mix script (32
# connections, as benches/paired.sh). Each count includes the process's
# start-up, spread over every request it served (a few hundredths of an
# allocation per request).
#
#   benches/allocs.sh                # 8 s of load each
#   DUR=20 TOP=30 benches/allocs.sh
#
# Prints each side's allocations per request, then the call sites (the
# first frame outside the standard library, and its caller) whose counts
# per request differ by at least 0.3. heaptrack's files stay in
# target/allocs/.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
DUR=${DUR:-8}
TOP=${TOP:-25}
SCRIPT=${WRK_SCRIPT:-$(pwd)/../shared/bench/geo-mix.lua}
for tool in heaptrack wrk nginx; do
  command -v "$tool" >/dev/null || {
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    pkg=$tool; [ "$tool" = nginx ] && pkg=nginx-light
    $sudo apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
  }
done
cargo build --release --locked -p edgesteer -p edgesteer-benches --bins \
  --features edgesteer/system-alloc,edgesteer-benches/system-alloc --target-dir target/sysalloc >&2
root=$(pwd); bin=$root/target/sysalloc/release; out=$root/target/allocs
wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT
mkdir -p "$out" "$wd/tmp"
rm -f "$out"/*.zst

up=$(port)
nginx_upstream 1
covergen_table "$wd/table.toml" "127.0.0.1:$up" price

# count NAME EXE ARGS...: runs EXE under heaptrack, loads it, stops it with
# SIGINT (heaptrack writes its file when the process exits), and leaves
# the number of requests it served in $wd/NAME.requests.
count() {
  local name=$1 exe=$2; shift 2
  local p
  p=$(port)
  heaptrack -o "$out/$name" "$exe" "${@//PORT/$p}" > "$wd/$name.log" 2>&1 &
  local ht=$!
  pids+=($ht)
  local served=0
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.2; done
  served=$((served + 1))
  wrk -t1 -c32 -d"${DUR}s" -s "$SCRIPT" "http://127.0.0.1:$p/" > "$wd/$name.wrk" 2>&1
  served=$((served + $(awk '/requests in/ {print $1}' "$wd/$name.wrk")))
  echo "$served" > "$wd/$name.requests"
  # the profiled process is heaptrack's child
  kill -INT "$(pgrep -P "$ht" -f "^$exe")" 2>/dev/null || true
  wait "$ht" || true
}
count ours "$bin/edgesteer" proxy --config "$wd/table.toml" --listen 127.0.0.1:PORT \
  --admin "127.0.0.1:$(port)" --threads 1 --grace-period 0 --trust 127.0.0.1/32
count bare "$bin/passthrough" --listen 127.0.0.1:PORT --upstream "127.0.0.1:$up" --threads 1
for side in ours bare; do
  heaptrack_print -f "$out/$side.zst" -p 0 -a 1 -T 0 -l 0 -n 1000 -s 1000 > "$out/$side.txt" 2>/dev/null
done
python3 - "$out" "$(cat "$wd/ours.requests")" "$(cat "$wd/bare.requests")" "$TOP" <<'PY'
import collections, re, sys
out, n_ours, n_bare, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def sites(path, requests):
    """Allocations per request by site: the first frame outside the standard
    library (and outside the global allocator's statics), with its caller."""
    counts = collections.Counter()
    calls, frames = None, []

    def flush():
        if calls is None:
            return
        chain = [f"{fn[:40]} {re.sub(r'.*registry/src/[^/]+/', '', at)}" for fn, at in frames
                 if "/rustc/" not in at and not re.search(r"(main|passthrough)\.rs:\d+$", at)]
        counts[" <- ".join(chain[:2]) or "(the standard library)"] += calls

    lines = open(path).read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(\d+) calls with", lines[i])
        if m or re.match(r"^\d+ calls to allocation", lines[i]):
            flush()
            calls, frames = (int(m.group(1)) if m else None), []
        elif i + 1 < len(lines) and lines[i + 1].strip().startswith("at "):
            frames.append((lines[i].strip(), lines[i + 1].strip()[3:]))
            i += 1
        i += 1
    flush()
    return {k: v / requests for k, v in counts.items()}

a, b = sites(f"{out}/ours.txt", n_ours), sites(f"{out}/bare.txt", n_bare)
ta, tb = sum(a.values()), sum(b.values())
print(f"ours: {ta:.2f} allocations per request ({n_ours} requests)")
print(f"bare: {tb:.2f} allocations per request ({n_bare} requests)")
print(f"ours - bare: {ta - tb:+.2f}")
print(f"\nsites whose count differs by 0.3 or more (ours, bare, difference per request):")
diff = sorted(set(a) | set(b), key=lambda k: -abs(a.get(k, 0) - b.get(k, 0)))
for k in diff[:top]:
    x, y = a.get(k, 0), b.get(k, 0)
    if abs(x - y) < 0.3:
        break
    print(f"{x:6.2f} {y:6.2f} {x - y:+6.2f}  {k[:170]}")
PY
