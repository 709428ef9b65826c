#!/usr/bin/env bash
# Mutation testing of the core logic (issues 31 and 30's review): runs
# cargo-mutants over the files below, so a change to one of them can be
# checked for tests that would not notice it breaking. Each mutant is a
# small change (a `<` made `<=`, a match arm deleted, a function returning
# a constant); a mutant the tests do not catch is a test missing.
#
#   scripts/mutants.sh [CARGO-MUTANTS ARGS...]
#
# e.g. `scripts/mutants.sh -j 2`, `scripts/mutants.sh --list`,
# `scripts/mutants.sh --iterate` (only what was not caught last time).
# Extra args go to every run. Needs cargo-mutants 27.x (installed here when
# missing). Results go to $MUTANTS_OUT/<crate>/mutants.out (default
# target/mutants, which git ignores). Slow (a build per mutant, about 80
# minutes on 2 cores): NOT part of CI; run it after changing one of the files.
#
# Every viable mutant is caught (or times out: a constant hash makes the
# tests quadratic), but these, which no test can tell from the original
# (equivalent mutants):
# - `|` made `^` where the two sides are disjoint bit fields (packing the
#   abuse and tally words; the map hasher shifting a byte in);
# - health/src/state.rs set_addrs `addrs.len() > MAX_ENDPOINTS`: only
#   whether the warning is logged (the cut itself is tested);
# - ratelimit/src/state.rs mark_used `admitted_ns > 0` made `>= 0`: a
#   `fetch_add(0)` where a load was;
# - ratelimit/src/tally.rs `prev & TIER_MASK != tag` made always true (`^`
#   for `&`): an update that sets the tag it already has; `take`'s `tier > 0 && requests > 0`:
#   differs only when the reporter takes a count in the instant before its
#   tier is tagged (one count dropped, as before);
# - control/src/figures.rs `<` made `<=` against HEALTH_FRESH (a report
#   exactly 3 s old) and before a `resize` to the same length.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo mutants --version >/dev/null 2>&1; then
  cargo install cargo-mutants --locked --version '^27'
fi
out="${MUTANTS_OUT:-target/mutants}"
mkdir -p "$out"
status=0
# run NAME PACKAGE FILE... [-- CARGO-TEST-ARGS]
run() {
  local name=$1 package=$2 files=() args=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=(--file "$1"); shift; done
  [ "${1:-}" = -- ] && { shift; args=("$@"); }
  nice -n 19 cargo mutants -p "$package" "${files[@]}" --output "$out/$name" \
    "${args[@]}" "${extra[@]}" || status=$?
}
extra=("$@")
run config edgesteer-config \
  config/src/route.rs config/src/client_ip.rs config/src/compile/zones.rs \
  config/src/sticky.rs config/src/host.rs config/src/ratelimit/key.rs \
  config/src/ratelimit/path.rs config/src/ratelimit/reach.rs \
  config/src/dns/answer.rs config/src/dns/explain.rs config/src/dns/compile.rs
run ratelimit edgesteer-ratelimit \
  ratelimit/src/gcra.rs ratelimit/src/state.rs ratelimit/src/tally.rs \
  ratelimit/src/reconcile.rs
run health edgesteer-health health/src/eject.rs health/src/state.rs
run dns edgesteer-dns dns/src/scope.rs dns/src/rrl.rs
# The control crate's own unit tests only (its end-to-end tests are in
# tests/ and need etcd).
run control edgesteer-control control/src/figures.rs -- --cargo-test-arg=--lib
exit "$status"
