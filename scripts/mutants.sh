#!/usr/bin/env bash
# Mutation testing of the pure core (issue 31): runs cargo-mutants on the
# routing decision, client-IP resolution, zone compilation, the sticky key,
# the DNS answer and its explanation, the GCRA cell, health state and
# passive ejection, the GeoDNS class map and response rate limiting, so a
# change to those files can be checked for tests that would not notice it
# breaking. Every viable mutant should be caught; the few that cannot be
# (equivalent mutants) are listed here:
# - health/src/state.rs `addrs.len() > MAX_ENDPOINTS` in set_addrs: only
#   whether the warning is logged (the cut itself is tested).
#
#   scripts/mutants.sh [CARGO-MUTANTS ARGS...]
#
# e.g. `scripts/mutants.sh -j 2`, `scripts/mutants.sh --list`. Extra args go
# to both runs. Needs cargo-mutants 27.x (installed here when missing).
# Results go to $MUTANTS_OUT/{config,ratelimit,health,dns}/mutants.out (default
# target/mutants, which git ignores). Slow (a build per mutant): NOT part of
# CI; run it by hand after changing one of the files below.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo mutants --version >/dev/null 2>&1; then
  cargo install cargo-mutants --locked --version '^27'
fi
out="${MUTANTS_OUT:-target/mutants}"
mkdir -p "$out"
status=0
nice -n 19 cargo mutants -p edgesteer-config \
  --file config/src/route.rs \
  --file config/src/client_ip.rs \
  --file config/src/compile/zones.rs \
  --file config/src/sticky.rs \
  --file config/src/dns/answer.rs \
  --file config/src/dns/explain.rs \
  --output "$out/config" "$@" || status=$?
nice -n 19 cargo mutants -p edgesteer-ratelimit \
  --file ratelimit/src/gcra.rs \
  --output "$out/ratelimit" "$@" || status=$?
nice -n 19 cargo mutants -p edgesteer-health \
  --file health/src/eject.rs \
  --file health/src/state.rs \
  --output "$out/health" "$@" || status=$?
nice -n 19 cargo mutants -p edgesteer-dns \
  --file dns/src/scope.rs \
  --file dns/src/rrl.rs \
  --output "$out/dns" "$@" || status=$?
exit "$status"
