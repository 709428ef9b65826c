#!/usr/bin/env bash
# GeoDNS comparison (issue 27, Performance): dnsperf against three
# authoritative GeoDNS servers answering the same zone the same way:
#
#   edgesteer  edgesteer proxy --dns-listen, the covergen table (rate
#              limits stripped, [dns.rrl] off, every backend a local TCP
#              port so all regions stay healthy)
#   gdnsd      gdnsd 3 + plugin_geoip (continent map, country overrides)
#   pdns       PowerDNS Authoritative + geoip backend (custom_mapping)
#
# Same regions, edges and TTL (examples/covergen.toml's [dns]), same
# country -> region rules ([geo]: continent defaults, country overrides),
# one home region per client (no failover), ECS honoured by all three, and
# one geo database: a GeoIP2-schema copy of geo/data/geo-whois-asn-country.mmdb
# (every network, built by benches/dns/dnsbench.py, cached in
# benches/dns/work/), given to edgesteer too with --geo-db. The copy leaves
# the ranges edgesteer never looks up (private, documentation, ...) unplaced,
# so those clients get the default region from every server.
#
# Query mix: an A query (20% AAAA) for api.covergen.ai with an OPT carrying
# ECS for the 40 client addresses of ../shared/bench/geo-mix.lua (/24 for
# IPv4, /56 for IPv6; up to 25 sibling subnets of each inside its database
# network, so the country stays the same), sent as a dnsperf -B file.
# Before measuring, every server must answer the same edges and TTLs for
# every client (and cn-east / eu-west for the two reference subnets):
# the script fails otherwise.
#
# Per server (pinned to SERVER_CPU, dnsperf to LOAD_CPU): a DUR-second
# saturation run (CLIENTS x OUTSTANDING in flight) gives qps and lost_pct,
# then a run at half that rate (-Q) gives mean and p99 latency (from
# dnsperf -v's per-query times). Servers run one at a time under load; the
# others sit idle on the same core.
#
#   CSV=/tmp/dns.csv benches/dns.sh
#   SERVERS="edgesteer gdnsd" DUR=5 benches/dns.sh
#
# Knobs: EDGESTEER (binary; default target/release/edgesteer, else
# target/debug/edgesteer with a warning - this script never builds),
# SERVERS ("edgesteer gdnsd pdns"), DUR (10 s per run), CLIENTS (4),
# OUTSTANDING (200), SERVER_CPU (1), LOAD_CPU (0), PDNS_ARGS (extra
# pdns_server flags, e.g. --cache-ttl=0 to turn its packet cache off; it is
# on by default), GEO_MIX, GEO_DB, START_TIMEOUT (30 s), INSTALL (1:
# apt-get missing tools), KEEP (1: keep the scratch dir with configs/logs).
#
# Output: CSV (default benches/dns/work/dns.csv) with
# server,qps,mean_us,p99_us,lost_pct (qps and lost_pct at saturation, mean
# and p99 at half of it), and a markdown table on stdout. One run on this
# machine, in about a minute and a half: a comparison, not a reference number.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. benches/lib.sh

DUR=${DUR:-10}
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-200}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
SERVERS=${SERVERS:-edgesteer gdnsd pdns}
PDNS_ARGS=${PDNS_ARGS:-}
GEO_MIX=${GEO_MIX:-$root/../shared/bench/geo-mix.lua}
GEO_DB=${GEO_DB:-$root/geo/data/geo-whois-asn-country.mmdb}
START_TIMEOUT=${START_TIMEOUT:-30}
INSTALL=${INSTALL:-1}
KEEP=${KEEP:-0}
GDNSD=${GDNSD:-/usr/sbin/gdnsd}
PDNS_SERVER=${PDNS_SERVER:-/usr/sbin/pdns_server}
work=$root/benches/dns/work
CSV=${CSV:-$work/dns.csv}
helper=$root/benches/dns/dnsbench.py
name=api.covergen.ai

log() { printf '[dns-bench] %s\n' "$*" >&2; }
die() {
  log "ERROR: $*"
  local f
  for f in "${wd:-/nonexistent}"/*.log; do
    [ -f "$f" ] || continue
    log "--- last lines of $f"
    tail -n 15 "$f" >&2
  done
  exit 1
}

# ---------------------------------------------------------------- tools
ensure_tools() {
  local need=()
  command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
  command -v dig >/dev/null 2>&1 || need+=(dnsutils)
  command -v taskset >/dev/null 2>&1 || need+=(util-linux)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  [ -x "$GDNSD" ] || need+=(gdnsd)
  [ -x "$PDNS_SERVER" ] || need+=(pdns-server)
  compgen -G '/usr/lib/*/pdns/libgeoipbackend.so' >/dev/null || need+=(pdns-backend-geoip)
  if [ ${#need[@]} -gt 0 ]; then
    [ "$INSTALL" = 1 ] || die "missing tools (${need[*]}) and INSTALL=0"
    log "installing: ${need[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 $sudo apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed (continuing)"
    timeout 600 $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || die "apt-get install ${need[*]} failed"
  fi
  python3 -c 'import tomllib' 2>/dev/null || die "python3 >= 3.11 needed (tomllib)"
}

# ---------------------------------------------------------------- servers
declare -A port_of pid_of
admin_port=""

start_edgesteer() {
  local http
  http=$(port)
  admin_port=$(port)
  # The covergen table, rate limits stripped, every backend this proxy's own
  # HTTP listener probed by TCP connect (so every region stays healthy and
  # DNS answers the home region), and DNS response rate limiting off.
  covergen_table "$wd/edgesteer.toml" "127.0.0.1:$http" strip
  sed -i 's/^\[health\]$/[health]\nkind = "tcp"/' "$wd/edgesteer.toml"
  printf '\n[dns.rrl]\nresponses_per_s = 0\n' >>"$wd/edgesteer.toml"
  "$bin" validate "$wd/edgesteer.toml" >"$wd/validate.log" 2>&1 || die "edgesteer validate failed"
  mkdir -m 700 "$wd/rt"
  taskset -c "$SERVER_CPU" "$bin" proxy --config "$wd/edgesteer.toml" \
    --listen "127.0.0.1:$http" --admin "127.0.0.1:$admin_port" --threads 1 \
    --dns-listen "127.0.0.1:${port_of[edgesteer]}" --dns-threads 1 \
    --geo-db "$mmdb" --runtime-dir "$wd/rt" --grace-period 0 >"$wd/edgesteer.log" 2>&1 &
  pids+=($!)
  pid_of[edgesteer]=$!
}

start_gdnsd() {
  taskset -c "$SERVER_CPU" "$GDNSD" -c "$wd/gdnsd" start >"$wd/gdnsd.log" 2>&1 &
  pids+=($!)
  pid_of[gdnsd]=$!
}

start_pdns() {
  # shellcheck disable=SC2086 # PDNS_ARGS is a list of flags
  taskset -c "$SERVER_CPU" "$PDNS_SERVER" --config-dir="$wd/pdns" $PDNS_ARGS >"$wd/pdns.log" 2>&1 &
  pids+=($!)
  pid_of[pdns]=$!
}

# answers SERVER SUBNET: the A addresses for a client subnet, sorted, one line.
answers() {
  dig @127.0.0.1 -p "${port_of[$1]}" "$name" A +subnet="$2" +short +time=1 +tries=1 2>/dev/null \
    | sort | tr '\n' ' ' | sed 's/ $//'
}

wait_ready() {
  local s=$1 i
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    kill -0 "${pid_of[$s]}" 2>/dev/null || die "$s exited at start"
    # eu-west's edges at the normal TTL: up, table loaded, regions healthy.
    if dig @127.0.0.1 -p "${port_of[$s]}" "$name" A +subnet=80.128.0.0/24 +noall +answer \
      +time=1 +tries=1 2>/dev/null | grep -Eq "[[:space:]]60[[:space:]]+IN[[:space:]]+A[[:space:]]+198\.51\.100\.30$"; then
      return 0
    fi
    sleep 0.1
  done
  die "$s not answering on 127.0.0.1:${port_of[$s]} after ${START_TIMEOUT}s"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# ---------------------------------------------------------------- setup
ensure_tools
bin=""
case " $SERVERS " in
  *" edgesteer "*)
    bin=${EDGESTEER:-target/release/edgesteer}
    if [ ! -x "$bin" ] && [ -z "${EDGESTEER:-}" ] && [ -x target/debug/edgesteer ]; then
      log "WARNING: no target/release/edgesteer; using target/debug/edgesteer (a debug build: its numbers mean nothing)"
      bin=target/debug/edgesteer
    fi
    [ -x "$bin" ] || die "no edgesteer binary at $bin (set EDGESTEER)"
    bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
    ;;
esac
[ -f "$GEO_MIX" ] || die "$GEO_MIX not found (set GEO_MIX)"

mkdir -p "$work"
mmdb=$work/geoip2-country.mmdb
if [ ! -s "$mmdb" ] || [ "$GEO_DB" -nt "$mmdb" ] || [ "$helper" -nt "$mmdb" ] \
  || [ config/src/geo_codes.rs -nt "$mmdb" ]; then
  log "building $mmdb from $GEO_DB"
  python3 "$helper" mmdb "$GEO_DB" "$mmdb" config/src/geo_codes.rs
fi

wd=$(mktemp -d)
pids=()
if [ "$KEEP" = 1 ]; then
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; log "kept $wd"' EXIT
else
  trap bench_cleanup EXIT
fi

for s in $SERVERS; do
  case $s in edgesteer | gdnsd | pdns) port_of[$s]=$(port) ;; *) die "unknown server $s" ;; esac
done
python3 "$helper" configs examples/covergen.toml "$mmdb" "$wd" "${port_of[gdnsd]:-0}" "${port_of[pdns]:-0}"
python3 "$helper" queries examples/covergen.toml "$mmdb" "$GEO_MIX" "$wd/queries.bin"

for s in $SERVERS; do "start_$s"; done
for s in $SERVERS; do wait_ready "$s"; done

# ---------------------------------------------------------------- correctness
cn_east="203.0.113.80 203.0.113.81"
eu_west="198.51.100.30 198.51.100.31"
check=()
for s in $SERVERS; do
  got=$(answers "$s" 202.96.128.0/24)
  [ "$got" = "$cn_east" ] || die "$s answers '$got' for 202.96.128.0/24, want cn-east ($cn_east)"
  got=$(answers "$s" 80.128.0.0/24)
  [ "$got" = "$eu_west" ] || die "$s answers '$got' for 80.128.0.0/24, want eu-west ($eu_west)"
  check+=("$s=${port_of[$s]}")
done
python3 "$helper" check examples/covergen.toml "$mmdb" "$GEO_MIX" "${check[@]}" \
  || die "the servers do not answer alike"
log "answers agree; measuring ($DUR s per run, server on CPU $SERVER_CPU, dnsperf on CPU $LOAD_CPU)"

# ---------------------------------------------------------------- measure
hz=$(getconf CLK_TCK)
rows=()
table=()
for s in $SERVERS; do
  p=${port_of[$s]}
  out=$wd/$s-max.txt
  t0=$(cpu_ticks "${pid_of[$s]}")
  taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$p" -B -d "$wd/queries.bin" -l "$DUR" \
    -c "$CLIENTS" -q "$OUTSTANDING" >"$out" 2>&1 || die "dnsperf against $s failed: $(tail -n 3 "$out")"
  t1=$(cpu_ticks "${pid_of[$s]}")
  qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$out")
  lost=$(awk '/Queries lost:/ { gsub(/[()%]/, "", $4); print $4 }' "$out")
  cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v d="$DUR" 'BEGIN { printf "%.0f", 100 * t / hz / d }')
  if [ -z "$qps" ] || [ "$qps" -le 0 ]; then die "$s: no qps from dnsperf: $(tail -n 5 "$out")"; fi
  half=$wd/$s-half.txt
  taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$p" -B -d "$wd/queries.bin" -l "$DUR" \
    -c "$CLIENTS" -q "$OUTSTANDING" -Q "$((qps / 2))" -v >"$half" 2>&1 \
    || die "dnsperf (half rate) against $s failed"
  half_qps=$(awk '/Queries per second:/ { printf "%.0f", $4 }' "$half")
  read -r mean p99 n < <(python3 "$helper" latency "$half")
  log "$s: max $qps qps (lost $lost%, server CPU $cpu%); at $half_qps qps: mean $mean us, p99 $p99 us ($n answers)"
  rows+=("$s,$qps,$mean,$p99,$lost")
  table+=("| $s | $qps | $lost | $cpu | $half_qps | $mean | $p99 |")
done

if [ -n "${port_of[edgesteer]:-}" ]; then
  rrl=$(curl -s "127.0.0.1:$admin_port/metrics" | awk '/^edgesteer_dns_rrl_total/ { n += $2 } END { print n + 0 }')
  [ "$rrl" = 0 ] || die "edgesteer rate-limited $rrl answers: RRL is not off"
fi

# ---------------------------------------------------------------- output
mkdir -p "$(dirname "$CSV")"
{
  echo "server,qps,mean_us,p99_us,lost_pct"
  printf '%s\n' "${rows[@]}"
} >"$CSV"
echo
echo "GeoDNS, one core each ($(nproc) CPUs; ${DUR}s runs${bin:+; edgesteer: ${bin#"$root"/}})"
echo
echo "| server | max qps | lost % | server CPU % | latency run qps | mean us | p99 us |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${table[@]}"
echo
log "CSV: $CSV"
