//! What both store syncers (a single Redis in `global.rs`, a Redis
//! Cluster in `cluster_sync.rs`) share: the Lua script that books each
//! key's use into the fleet TAT, taking a policy's dirty keys for a round,
//! dropping them when a round fails, and applying the fleet's debt to the
//! local cells.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::state::PolicyState;

/// Keys per `EVAL`.
pub(crate) const BATCH: usize = 500;
/// A Redis command (connect, or one `EVAL`) slower than this fails it.
pub(crate) const SYNC_TIMEOUT: Duration = Duration::from_millis(250);

/// Debt larger than this from the store is treated as corrupt and clamped:
/// twice the largest tolerance a table can give (a burst of `MAX_BURST` at
/// 1 request/s). A lower clamp (it was one hour) cut the fleet's debt for
/// a tier whose burst/rate is longer, and each proxy then held the key to
/// its own limit alone: N proxies admitted N times the rate.
const MAX_DEBT_NS: u64 = 2 * edgesteer_config::ratelimit::MAX_BURST as u64 * 1_000_000_000;

/// ARGV[1]: the sync interval (us); ARGV[i + 1]: quota (us) KEYS[i] used.
/// The quota was used over the last interval, so it is booked from
/// `now - interval` at the earliest: booking it all at `now` would count a
/// proxy's steady use twice (once in its own TAT, once as fresh debt) and
/// hold a lone proxy below the rate whenever burst/rate < interval.
pub(crate) const SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local since = now - tonumber(ARGV[1])
local out = {}
for i, k in ipairs(KEYS) do
  local n = tonumber(ARGV[i + 1])
  -- A key of another type (WRONGTYPE) is read as fresh and overwritten
  -- by the SET below: one bad key must not fail every key's sync.
  local v = redis.pcall('GET', k)
  if type(v) ~= 'string' then v = nil end
  local tat = tonumber(v) or since
  if tat < since then tat = since end
  tat = tat + n
  local debt = tat - now
  if n > 0 then
    redis.call('SET', k, string.format('%d', tat), 'PX', math.max(0, math.floor(debt / 1000)) + 1000)
  end
  out[i] = debt
end
return out
";

/// Moves `key`'s local TAT to at least `now + fleet debt + quota admitted
/// since the snapshot` (`now` on the limiter clock) and ends its round;
/// a key used meanwhile is queued again.
pub(crate) fn apply_debt(state: &PolicyState, key: u64, debt_us: i64, now: u64) {
    let debt_ns = u64::try_from(debt_us)
        .unwrap_or(0)
        .saturating_mul(1_000)
        .min(MAX_DEBT_NS);
    let requeue = state.map.get(&key).is_some_and(|cell| {
        // Our own use since the snapshot is in `pending_now`.
        let fleet = now
            .saturating_add(debt_ns)
            .saturating_add(cell.pending_now());
        cell.tat.fetch_max(fleet, Ordering::Relaxed);
        cell.finish_round()
    });
    if requeue && state.dirty.push(key).is_err() {
        state.dirty_lost.store(true, Ordering::Relaxed);
    }
}

/// Drops the unsynced quota of keys taken for a round that failed.
pub(crate) fn discard(state: &PolicyState, keys: &[(u64, u64)]) {
    for &(key, _) in keys {
        if let Some(cell) = state.map.get(&key) {
            cell.discard();
        }
    }
}

/// Keys used since the last sync, with the quota each consumed.
pub(crate) fn take_dirty(state: &PolicyState) -> Vec<(u64, u64)> {
    let mut keys = Vec::new();
    let mut take = |key: u64| {
        if let Some(cell) = state.map.get(&key) {
            keys.push((key, cell.take_pending()));
        }
    };
    while let Some(k) = state.dirty.pop() {
        take(k);
    }
    if state.dirty_lost.swap(false, Ordering::Relaxed) {
        let lost: Vec<u64> = state
            .map
            .iter()
            .filter(|c| c.queued())
            .map(|c| *c.key())
            .collect();
        for k in lost {
            take(k);
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{policy, S};
    use edgesteer_config::ratelimit::LimitScope;

    fn global() -> (edgesteer_config::ratelimit::RateLimitPolicy, PolicyState) {
        let mut p = policy(100);
        p.scope = LimitScope::Global;
        let st = PolicyState::new(&p);
        (p, st)
    }

    /// A tier may run hours ahead (rate 1/s, burst 7,200): the fleet's
    /// debt is applied whole, not clamped at an hour.
    #[test]
    fn a_debt_longer_than_an_hour_is_applied_whole() {
        let (p, st) = global();
        assert!(st.check(6, &p.tiers[0], None, S, true).verdict.allowed);
        let _ = take_dirty(&st);
        let two_hours_us = 7_200_000_000;
        apply_debt(&st, 6, two_hours_us, S);
        let tat = st.map.get(&6).unwrap().tat.load(Ordering::Relaxed);
        assert_eq!(tat, S + 7_200_000_000_000);
        // Only an absurd value (past twice any tolerance) is clamped.
        apply_debt(&st, 6, i64::MAX, S);
        let tat = st.map.get(&6).unwrap().tat.load(Ordering::Relaxed);
        assert_eq!(tat, S + MAX_DEBT_NS);
    }

    #[test]
    fn a_round_books_the_fleet_debt_and_the_use_made_meanwhile() {
        let (p, st) = global();
        let (tier, i) = (&p.tiers[0], p.tiers[0].interval_ns);
        for _ in 0..2 {
            assert!(st.check(5, tier, None, S, true).verdict.allowed);
        }
        assert_eq!(take_dirty(&st), vec![(5, 2 * i)]);
        // Used again while the round is out: counted, not queued twice.
        assert!(st.check(5, tier, None, S + i, true).verdict.allowed);
        assert!(st.dirty.is_empty());
        {
            let cell = st.map.get(&5).unwrap();
            assert!(cell.queued());
            assert_eq!(cell.pending_now(), i);
        }
        // The fleet is 0.5 s ahead: the TAT moves to now + debt + the use
        // made since the snapshot, and the key goes back in the queue.
        apply_debt(&st, 5, 500_000, S + i);
        let tat = st.map.get(&5).unwrap().tat.load(Ordering::Relaxed);
        assert_eq!(tat, S + i + 500_000_000 + i);
        assert_eq!(take_dirty(&st), vec![(5, i)]);
        // No debt, nothing used meanwhile: the TAT stays, the round ends.
        apply_debt(&st, 5, -1_000, S + 2 * i);
        let cell = st.map.get(&5).unwrap();
        assert_eq!(cell.tat.load(Ordering::Relaxed), tat);
        assert!(!cell.queued());
        drop(cell);
        assert!(take_dirty(&st).is_empty());
    }

    #[test]
    fn a_failed_round_drops_its_quota_and_lets_the_key_go() {
        let (p, st) = global();
        st.check(7, &p.tiers[0], None, S, true);
        let keys = take_dirty(&st);
        assert_eq!(keys.len(), 1);
        assert_eq!(st.sweep(100 * S), 1, "kept while its round is out");
        discard(&st, &keys);
        let cell = st.map.get(&7).unwrap();
        assert!(!cell.queued() && cell.pending_now() == 0);
        drop(cell);
        assert_eq!(st.sweep(100 * S), 0);
    }

    #[test]
    fn with_the_queue_overrun_the_queued_keys_are_found_by_a_scan() {
        let (p, st) = global();
        let (tier, i) = (&p.tiers[0], p.tiers[0].interval_ns);
        st.check(8, tier, None, S, true);
        st.check(9, tier, None, S, false);
        // The queue overflowed: key 8's entry was lost.
        assert_eq!(st.dirty.pop(), Some(8));
        st.dirty_lost.store(true, Ordering::Relaxed);
        assert_eq!(take_dirty(&st), vec![(8, i)], "the queued key, alone");
        assert!(!st.dirty_lost.load(Ordering::Relaxed));
    }
}
