#!/usr/bin/env bash
# Where ours spends more than the other proxy, sampled at the same moment
# on the same core: one `benches/paired.sh` round (B=bare by default) with
# `perf record -F 2999 -C 0` in its middle. Each process's samples become
# microseconds per request through its own measured CPU per request.
# Prints user space alone (the kernel's share holds the wake-ups of the
# load side's core, which move with timing: BENCHMARKS.md, "The Zen 4
# host"), the per-component and per-symbol differences and each side's top
# symbols (self time).
#
#   benches/paired-profile.sh                    # 24 s round, 14 s recorded
#   B=nginx DUR=30 REC=20 TOP=30 benches/paired-profile.sh
#
# Output also in target/paired-profile/ (perf.data, samples.txt, report.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "paired-profile.sh needs perf" >&2; exit 1; }
out=target/paired-profile
mkdir -p "$out"
DUR=${DUR:-24}; REC=${REC:-14}; TOP=${TOP:-20}
rm -f "$out/pids"
PAIRED_PIDS=$PWD/$out/pids B=${B:-bare} ROUNDS=1 DUR=$DUR benches/paired.sh > "$out/paired.txt" 2>&1 &
bg=$!
sleep $(( (DUR - REC) / 2 + 2 ))
perf record -q -F 2999 -C 0 -o "$out/perf.data" -- sleep "$REC" 2>/dev/null
wait "$bg"
perf script -i "$out/perf.data" -F pid,ip,sym,dso 2>/dev/null > "$out/samples.txt"
python3 - "$out" "$TOP" <<'PY' | tee "$out/report.txt"
import collections, re, sys
d, top = sys.argv[1], int(sys.argv[2])
rows = [l.split() for l in open(d + "/paired.txt") if re.match(r"^1\s", l)]
if not rows:
    sys.exit("paired.sh printed no round: see " + d + "/paired.txt")
us = {"A": float(rows[0][3]), "B": float(rows[0][4])}
a_pid, b_pid = (int(p) for p in open(d + "/pids").read().split())
count = collections.defaultdict(collections.Counter)
for line in open(d + "/samples.txt"):
    m = re.match(r"\s*(\d+)\s+[0-9a-f]+\s+(.*)$", line)
    if not m:
        continue
    pid, rest = int(m.group(1)), m.group(2).strip()
    mm = re.match(r"(.*)\s+\((.*)\)$", rest)
    sym, dso = (mm.group(1), mm.group(2)) if mm else (rest, "?")
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym).strip()
    dso = dso.split("/")[-1]
    if "kernel" in dso:
        sym, dso = "[k] " + sym, "kernel"
    elif not re.search(r"\.so(\.|$)", dso) and not dso.startswith("["):
        dso = "bin"  # the proxy's own binary, whatever its file is called (B_BIN)
    count[pid][(sym, dso)] += 1
side = {"A": count[a_pid], "B": count[b_pid]}
per = {k: {s: n * us[k] / sum(c.values()) for s, n in c.items()} for k, c in side.items()}
def component(sym, dso):
    if dso != "bin":
        return dso
    s = sym.lstrip("<")
    for k in ("edgesteer", "pingora_proxy", "pingora_core", "pingora_http", "pingora_pool",
              "pingora_timeout", "http::", "tokio", "bytes", "dashmap", "httparse", "maxminddb",
              "prometheus", "core::", "alloc::"):
        if s.startswith(k):
            return k.rstrip(":")
    return "mimalloc" if s.startswith(("mi_", "_mi_")) else "other"
print(f"A = ours {us['A']} us/request, B = {us['B']} us/request (ratio {rows[0][5]})")
comp = collections.defaultdict(lambda: [0.0, 0.0])
syms = collections.defaultdict(lambda: [0.0, 0.0])
for i, k in enumerate("AB"):
    for (s, dso), v in per[k].items():
        comp[component(s, dso)][i] += v
        syms[s][i] += v
user = [sum(v for (s, dso), v in per[k].items() if dso != "kernel") for k in "AB"]
print(f"user space alone: A {user[0]:.2f}, B {user[1]:.2f} us/request (ratio {user[0] / user[1]:.4f})")
print("\nby component (us/request): A  B  A-B")
for c, (a, b) in sorted(comp.items(), key=lambda kv: kv[1][1] - kv[1][0]):
    print(f"{a:8.3f} {b:8.3f} {a - b:+8.3f}  {c}")
print(f"\nsymbols where A spends most over B (top {top}):")
for s, (a, b) in sorted(syms.items(), key=lambda kv: kv[1][1] - kv[1][0])[:top]:
    print(f"{a:8.3f} {b:8.3f} {a - b:+8.3f}  {s[:110]}")
for k in "AB":
    t = sum(side[k].values())
    print(f"\ntop {top} of {k} (self): share, us/request")
    for (s, _), n in side[k].most_common(top):
        print(f"{100 * n / t:6.2f}% {us[k] * n / t:7.3f}  {s[:110]}")
PY
