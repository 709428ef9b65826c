#!/usr/bin/env bash
# Runs ../shared/bench/peer-bench.sh with edgesteer ("ours": full covergen
# table, geo on, every request through decide(), metrics on) and the bare
# Pingora pass-through ("pingora") against nginx and HAProxy.
#
#   benches/peer.sh                       # defaults of peer-bench.sh
#   DUR=5 ROUNDS=3 benches/peer.sh        # any peer-bench.sh knob passes through
#
# Results: the summary table on stdout; CSV in $CSV (default target/peer-bench.csv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bench=${PEER_BENCH:-$root/../shared/bench/peer-bench.sh}
[ -x "$bench" ] || [ -f "$bench" ] || { echo "peer.sh: $bench not found (set PEER_BENCH)" >&2; exit 1; }

cargo build --release --locked -p edgesteer -p edgesteer-benches --bins >&2

# The covergen table on the bench upstream (see benches/lib.sh); LIMITS=1
# keeps the per-IP policy at an unreachable limit, to price the limiter.
. benches/lib.sh
table=$root/target/peer-bench-table.toml
limited=$root/target/peer-bench-table-limited.toml
covergen_table "$table" "@UPSTREAM@" "$([ "${LIMITS:-0}" = 1 ] && echo price || echo strip)"
covergen_table "$limited" "@UPSTREAM@" price

export CSV=${CSV:-$root/target/peer-bench.csv}
export PINGORA_NAME=${PINGORA_NAME:-pingora-bare}
export PINGORA_CMD=${PINGORA_CMD:-"$root/target/release/passthrough --listen \$LISTEN --upstream \$UPSTREAM --threads 1"}
# ACCESS_LOG=1 turns the table's access log on (to a file); OURS_ARGS adds flags
# (e.g. --no-request-metrics). ours_cmd builds such a command for either slot.
# LIMITS_COST=1 compares ours without and with the per-IP rate limit;
# EDGE_COST=1 ours without and with the edge checks (issue 12's price).
ours_cmd() { # access_log(0|1) extra-args [table]
  local table=${3:-$table}
  local sedx="s/@UPSTREAM@/\$UPSTREAM/"
  [ "$1" = 1 ] && sedx="$sedx; s/^\\[headers\\]/[logging]\\naccess_log = true\\n\\n[headers]/"
  echo "sh -c 'sed \"$sedx\" $table > \$BENCH_WORKDIR/t\$PORT.toml && exec $root/target/release/edgesteer proxy --config \$BENCH_WORKDIR/t\$PORT.toml --listen \$LISTEN --admin 127.0.0.1:0 --threads 1 --grace-period 0 --access-log \$BENCH_WORKDIR/access\$PORT.log $2'"
}
export OURS_CMD=${OURS_CMD:-$(ours_cmd "${ACCESS_LOG:-0}" "${OURS_ARGS:-}")}
if [ "${METRICS_COST:-0}" = 1 ]; then
  # The "pingora" slot runs ours with request metrics and access log off.
  export PINGORA_NAME=ours-observability-off
  export PINGORA_CMD=$(ours_cmd 0 --no-request-metrics)
  export OURS_CMD=$(ours_cmd 1 "")
fi
if [ "${LIMITS_COST:-0}" = 1 ]; then
  # The "pingora" slot runs ours without rate limits, "ours" with the
  # covergen per-IP policy at a limit no run reaches (every check passes).
  export PINGORA_NAME=ours-no-limits
  export PINGORA_CMD=$(ours_cmd 0 "")
  export OURS_CMD=$(ours_cmd 0 "" "$limited")
fi
if [ "${EDGE_COST:-0}" = 1 ]; then
  # The "pingora" slot runs ours with the edge checks off
  # (--unsafe-no-edge-checks: no request intake, framing/size checks or
  # per-request downstream limits), "ours" with them: their price.
  export PINGORA_NAME=ours-no-edge-checks
  export PINGORA_CMD=$(ours_cmd 0 "${OURS_ARGS:-} --unsafe-no-edge-checks")
fi
exec bash "$bench"
