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

/// Debt larger than this from the store is treated as corrupt and clamped.
const MAX_DEBT_NS: u64 = 3_600_000_000_000;

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
