#!/usr/bin/env bash
# Where each target of the TLS run spends its CPU per request: one
# `benches/peer-tls.sh` round (keep-alive by default) with `perf record -C
# $PROXY_CPU` over all of it. Every target runs alone on that core, so its
# samples there are its own; each target's samples become microseconds per
# request through its CPU per request in the run's CSV.
#
#   benches/peer-tls-profile.sh                              # keepalive, all four
#   SHAPES=h2 TARGETS="nginx ours" benches/peer-tls-profile.sh
#
# Prints, per target, CPU us/request by component (TLS records, the
# crypto under them, the HTTP engine, runtime, allocator, kernel, ...) and
# each target's top symbols. Output also in target/peer-tls-profile/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "peer-tls-profile.sh needs perf" >&2; exit 1; }
out=target/peer-tls-profile
mkdir -p "$out"
export SHAPES=${SHAPES:-keepalive} TARGETS=${TARGETS:-"nginx haproxy pingora ours"}
export DUR=${DUR:-10} ROUNDS=1 CSV=$(pwd)/$out/run.csv
TOP=${TOP:-15}
CPU=${PROXY_CPU:-0}
# Build first (perf must not sample the compiler).
cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2
perf record -q -F 1999 -C "$CPU" -o "$out/perf.data" -- \
  env BUILD=0 benches/peer-tls.sh > "$out/run.txt" 2>&1
perf script -i "$out/perf.data" -F comm,pid,ip,sym,dso 2>/dev/null > "$out/samples.txt"
python3 - "$out" "$TOP" <<'PY' | tee "$out/report.txt"
import collections, csv, re, sys
d, top = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(d + "/run.csv")))
comm_of = {"nginx": "nginx", "haproxy": "haproxy", "pingora": "passthrough", "ours": "edgesteer"}
# A process's threads have their own names (Pingora's workers are "Pingora HTTP
# Proxy..."): a process is known by any thread that carries a target's name.
samples, label = [], {}
for line in open(d + "/samples.txt"):
    m = re.match(r"\s*(.+?)\s+(\d+)\s+[0-9a-f]+\s+(.*)$", line)
    if not m:
        continue
    comm, pid, rest = m.group(1), m.group(2), m.group(3).strip()
    if comm in comm_of.values():
        label[pid] = comm
    mm = re.match(r"(.*)\s+\((.*)\)$", rest)
    sym, dso = (mm.group(1), mm.group(2)) if mm else (rest, "?")
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym).strip()
    samples.append((pid, sym, dso.split("/")[-1]))
count = collections.defaultdict(collections.Counter)
for pid, sym, dso in samples:
    if pid in label:
        count[label[pid]][(sym, dso)] += 1

def component(sym, dso):
    s = sym.lstrip("<")
    if "kernel" in dso:
        return "kernel"
    if dso.startswith("libcrypto"):
        return "crypto"
    if dso.startswith("libssl"):
        return "TLS records"
    if dso.startswith("libc"):
        return "libc (memcpy, ...)"
    if dso in ("nginx", "haproxy"):
        return "engine"
    # Rust binaries: by crate
    if s.startswith(("ring::", "ring_core", "aes_", "gcm_", "ecp_nistz256", "chacha20_",
                     "sha256_block", "sha512_block", "bn_", "GFp_", "p256_", "x25519_")):
        return "crypto"
    if s.startswith(("rustls", "tokio_rustls", "pingora_rustls")):
        return "TLS records"
    if s.startswith(("mi_", "_mi_")):
        return "allocator"
    if s.startswith("tokio"):
        return "runtime"
    if s.startswith("edgesteer"):
        return "edgesteer"
    if s.startswith(("pingora", "http::", "httparse", "bytes", "h2::")):
        return "engine"
    return "other"

comps = ["TLS records", "crypto", "engine", "edgesteer", "runtime", "allocator",
         "libc (memcpy, ...)", "kernel", "other"]
table = {}
for r in rows:
    c = count.get(comm_of.get(r["target"], r["target"]))
    if not c:
        continue
    total, us = sum(c.values()), float(r["cpu_us_per_req"])
    per = collections.Counter()
    for (s, dso), n in c.items():
        per[component(s, dso)] += n * us / total
    table[(r["target"], r["shape"])] = (us, per, c)
for shape in dict.fromkeys(r["shape"] for r in rows):
    keys = [k for k in table if k[1] == shape]
    print(f"\n{shape}: CPU us/request by component")
    print(f"{'':22}" + "".join(f"{k[0]:>12}" for k in keys))
    for comp in comps:
        print(f"{comp:22}" + "".join(f"{table[k][1][comp]:12.2f}" for k in keys))
    print(f"{'total':22}" + "".join(f"{table[k][0]:12.2f}" for k in keys))
    for k in keys:
        us, _, c = table[k]
        t = sum(c.values())
        print(f"\n{k[0]} {shape}: top {top} symbols (self), share, us/request")
        for (s, dso), n in c.most_common(top):
            print(f"{100 * n / t:6.2f}% {us * n / t:7.3f}  {s[:100]} ({dso})")
PY
