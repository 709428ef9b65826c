#!/usr/bin/env bash
# Propagation across config service replicas (issue 17): a 1-member etcd,
# 2 replicas (A, B) on it, and PROXIES (default 10) proxies watching only
# B. WRITES (default 100) writes go through A, one at a time; for each, the
# time from A's 200 to every proxy serving the new version (each proxy's
# admin /v1/version polled on a kept-alive connection by its own thread).
# Prints p50/p99/max over all (write, proxy) pairs. Goal: p99 < 100 ms.
#
#   benches/replica-propagation.sh
#   PROXIES=10 WRITES=200 PROFILE=debug benches/replica-propagation.sh
#
# Loopback only; every process is stopped on exit. Needs etcd (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PROXIES=${PROXIES:-10}
WRITES=${WRITES:-100}
PROFILE=${PROFILE:-release}
. benches/lib.sh
root=$(pwd)
if [ "$PROFILE" = release ]; then
  [ "${BUILD:-1}" = 0 ] || cargo build --release --locked -p edgesteer >&2
  bin=$root/target/release
else
  [ "${BUILD:-1}" = 0 ] || cargo build --locked -p edgesteer >&2
  bin=$root/target/debug
fi
wd=$(mktemp -d); pids=()
trap bench_cleanup EXIT

ec=$(port); ep=$(port)
etcd --name m0 --data-dir "$wd/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
  --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "m0=http://127.0.0.1:$ep" \
  --initial-cluster-state new --logger zap --log-level error >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ec/health" >/dev/null && break; sleep 0.1; done

up=$(port)
"$bin/edgesteer" backend --region us-east --name b1 --listen "127.0.0.1:$up" >/dev/null 2>&1 &
pids+=($!)
covergen_table "$wd/table.toml" "127.0.0.1:$up" strip
store="etcd://127.0.0.1:$ec/bench"
a=$(port); b=$(port)
export EDGESTEER_TOKENS="ops=bench-ops-token,proxy:fleet=bench-proxy-token"
RUST_LOG=warn "$bin/edgesteer" control --listen "127.0.0.1:$a" --store "$store" --replica a --seed "$wd/table.toml" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$a/healthz" >/dev/null && break; sleep 0.1; done
RUST_LOG=warn "$bin/edgesteer" control --listen "127.0.0.1:$b" --store "$store" --replica b >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$b/healthz" >/dev/null && break; sleep 0.1; done
unset EDGESTEER_TOKENS

admins=()
for i in $(seq "$PROXIES"); do
  l=$(port); ad=$(port)
  EDGESTEER_CONTROL_TOKEN=bench-proxy-token RUST_LOG=warn "$bin/edgesteer" proxy \
    --control "http://127.0.0.1:$b" --cache "$wd/p$i.json" --name "p$i" --runtime-dir "$wd/rt$i" \
    --listen "127.0.0.1:$l" --admin "127.0.0.1:$ad" --threads 1 >/dev/null 2>&1 &
  pids+=($!)
  admins+=("$ad")
done
for ad in "${admins[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ad/healthz" >/dev/null && break; sleep 0.1; done
done

python3 - "$a" "$WRITES" "${admins[@]}" <<'PY'
import http.client, json, sys, threading, time
a, writes, admins = int(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3:]]
def version(conn):
    conn.request("GET", "/v1/version")
    return json.loads(conn.getresponse().read())["version"]
conns = [http.client.HTTPConnection("127.0.0.1", p) for p in admins]
writer = http.client.HTTPConnection("127.0.0.1", a)
delays = []
for i in range(writes):
    body = json.dumps({"drain": i % 2 == 0, "reason": f"propagation bench {i}"})
    writer.request("PATCH", "/v1/regions/us-west", body,
                   {"Authorization": "Bearer bench-ops-token", "Content-Type": "application/json"})
    resp = writer.getresponse()
    got = json.loads(resp.read())
    if resp.status != 200:
        sys.exit(f"write {i}: {resp.status} {got}")
    acked, want = time.perf_counter(), got["version"]
    seen = [None] * len(conns)
    def poll(k):
        while time.perf_counter() - acked < 5:
            if version(conns[k]) >= want:
                seen[k] = time.perf_counter() - acked
                return
    threads = [threading.Thread(target=poll, args=(k,)) for k in range(len(conns))]
    for t in threads: t.start()
    for t in threads: t.join()
    if None in seen:
        sys.exit(f"write {i} (version {want}) did not reach every proxy within 5 s")
    delays += seen
    time.sleep(0.05)
delays.sort()
q = lambda p: delays[min(len(delays) - 1, int(p * (len(delays) - 1) + 0.5))] * 1000
print(f"{writes} writes through replica A, {len(admins)} proxies watching replica B: "
      f"propagation p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {delays[-1]*1000:.1f} ms "
      f"({len(delays)} write-proxy pairs; includes the polling's own latency)")
PY
