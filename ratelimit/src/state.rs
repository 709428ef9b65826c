//! Per-policy limiter state: one [`Cell`] per key in a sharded map.
//!
//! Keys are 64-bit xxh3 hashes of the client address or the known API key
//! (a fixed seed, so every proxy of a fleet names the same key the same way
//! in Redis). Only addresses and keys listed in the table are ever hashed
//! from header bytes, so a client cannot choose which slots it fills.
//!
//! Memory is bounded two ways:
//! - **Idle eviction.** A cell whose TAT is in the past carries no
//!   information (GCRA treats it like a fresh key), so the sweeper drops it
//!   without changing any answer. A key lives at most `burst / rate` seconds
//!   after its last request, plus one sweep interval.
//! - **The key cap.** A policy tracks at most `max_keys` keys. Past the cap,
//!   new keys share a fixed array of [`OVERFLOW_SLOTS`] cells indexed by
//!   their hash: a key is never allowed more than its own limit, but may be
//!   refused early if a busy key shares its slot. Overflow is counted
//!   (`edgesteer_ratelimit_overflow_total`) so operators see it.

use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use edgesteer_config::ratelimit::{LimitScope, LimitTier, RateLimitPolicy};

use crate::gcra::{self, Verdict};

/// Shared cells used past the key cap: 2^14, indexed by the top bits of
/// a keyed hash.
pub const OVERFLOW_SLOTS: usize = 1 << OVERFLOW_BITS;
const OVERFLOW_BITS: u32 = 14;
/// Map shards; more shards keep the sweeper's per-shard write lock short.
const SHARDS: usize = 64;
/// Queue of keys with unsynced global use; past it the syncer scans.
const DIRTY_QUEUE: usize = 65_536;
/// In `Cell::pending`: the key is queued for the next sync.
const DIRTY: u64 = 1 << 63;

/// One key's state: four words, so a map entry with its key is 40 bytes.
#[derive(Default)]
pub struct Cell {
    /// GCRA theoretical arrival time, ns on the limiter clock.
    pub(crate) tat: AtomicU64,
    /// Global scope: admitted ns of quota not yet pushed to the store; the
    /// top bit is set while the key is queued for the syncer.
    pending: AtomicU64,
    /// Abuse watch: `second (u16) << 48 | streak (u16) << 32 | requests
    /// in that second (u32)`. The streak counts consecutive seconds above
    /// the threshold.
    abuse: AtomicU64,
    /// The traffic model's counts since the reporter last took them
    /// (see `usage.rs`): tier, requests and refusals.
    pub(crate) tally: AtomicU64,
}

impl Cell {
    /// Holds nothing a fresh cell would not (nor counts the reporter has
    /// yet to take): safe to evict.
    pub(crate) fn idle(&self, now: u64) -> bool {
        let w = self.abuse.load(Ordering::Relaxed);
        let streak = (w >> 32) & 0xffff;
        // A streak is live only while its second is this one or the last;
        // after that the next request would reset it anyway.
        let sec = (now / 1_000_000_000) as u16;
        let streak_live = streak != 0 && sec.wrapping_sub((w >> 48) as u16) <= 1;
        self.tat.load(Ordering::Relaxed) <= now
            && self.pending.load(Ordering::Relaxed) == 0
            && !streak_live
            && crate::tally::taken(&self.tally)
    }

    /// Records global use: `admitted_ns` of quota (0 for a refusal). True
    /// when the key was not yet queued for the syncer.
    #[inline]
    fn mark_used(&self, admitted_ns: u64) -> bool {
        let prev = if admitted_ns > 0 {
            self.pending.fetch_add(admitted_ns, Ordering::Relaxed)
        } else {
            self.pending.load(Ordering::Relaxed)
        };
        prev & DIRTY == 0 && self.pending.fetch_or(DIRTY, Ordering::Relaxed) & DIRTY == 0
    }

    /// Takes the unsynced quota for a sync round. The queued flag stays
    /// set (so the sweeper keeps the cell until the reply is applied).
    pub(crate) fn take_pending(&self) -> u64 {
        self.pending.fetch_and(DIRTY, Ordering::Relaxed) & !DIRTY
    }

    /// After a round: clears the queued flag, unless quota arrived since
    /// [`Cell::take_pending`]; then the caller must queue the key again
    /// (returns true). A request that arrives after the clear queues itself.
    pub(crate) fn finish_round(&self) -> bool {
        let mut v = self.pending.load(Ordering::Relaxed);
        loop {
            if v & !DIRTY != 0 {
                return true;
            }
            match self
                .pending
                .compare_exchange_weak(v, 0, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return false,
                Err(actual) => v = actual,
            }
        }
    }

    /// Drops unsynced quota and the queued flag (the store is down).
    pub(crate) fn discard(&self) {
        self.pending.store(0, Ordering::Relaxed);
    }

    /// Quota admitted since the last [`Cell::take_pending`].
    pub(crate) fn pending_now(&self) -> u64 {
        self.pending.load(Ordering::Relaxed) & !DIRTY
    }

    pub(crate) fn queued(&self) -> bool {
        self.pending.load(Ordering::Relaxed) & DIRTY != 0
    }

    /// Counts one request for abuse detection; true when the key has been
    /// above `threshold` requests/s for `for_secs` consecutive seconds.
    fn abuse(&self, now: u64, threshold: u64, for_secs: u32) -> bool {
        // Seconds modulo 2^16: only "the next second" matters.
        let sec = (now / 1_000_000_000) as u16;
        let mut w = self.abuse.load(Ordering::Relaxed);
        loop {
            let (wsec, streak, count) = ((w >> 48) as u16, (w >> 32) as u16, w as u32);
            if wsec == sec && w != 0 {
                self.abuse.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            // The finished second `wsec` is judged once, by the request
            // that rolls it over.
            let streak = if u64::from(count) > threshold {
                streak.saturating_add(1)
            } else {
                0
            };
            let flagged = u32::from(streak) >= for_secs;
            // Idle seconds in between break the streak; a flag ends it.
            let kept = if wsec.wrapping_add(1) == sec && !flagged {
                streak
            } else {
                0
            };
            let next = (u64::from(sec) << 48) | (u64::from(kept) << 32) | 1;
            match self
                .abuse
                .compare_exchange_weak(w, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return flagged,
                Err(actual) => w = actual,
            }
        }
    }

    fn reset(&self) {
        self.tat.store(0, Ordering::Relaxed);
        self.abuse.store(0, Ordering::Relaxed);
    }
}

/// The map's hasher: the key is already an xxh3 hash, but of a public
/// function with a fixed seed, so it is hashed again with a per-process
/// secret; clients cannot steer keys into one shard or probe run.
#[derive(Clone)]
pub struct Seeded(u64);

impl Seeded {
    fn new() -> Seeded {
        use std::hash::BuildHasher;
        // RandomState is seeded from the OS per process.
        Seeded(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1)
    }

    /// A keyed hash of the key: every output bit depends on every input bit
    /// and on the secret.
    #[inline]
    fn mix(&self, key: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(&key.to_le_bytes(), self.0)
    }
}

impl std::hash::BuildHasher for Seeded {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher {
            seed: self.clone(),
            value: 0,
        }
    }
}

pub struct SeededHasher {
    seed: Seeded,
    value: u64,
}

impl Hasher for SeededHasher {
    fn finish(&self) -> u64 {
        self.seed.mix(self.value)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.value = (self.value << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.value = n;
    }
}

pub(crate) type CellMap = DashMap<u64, Cell, Seeded>;

/// What a check found beyond the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    pub verdict: Verdict,
    /// The key crossed the abuse threshold with this request.
    pub abusive: bool,
}

/// State of one policy; shared by every table version in which the policy
/// keeps its identity.
pub struct PolicyState {
    pub(crate) name: String,
    pub(crate) scope: LimitScope,
    pub(crate) map: CellMap,
    keys: AtomicUsize,
    max_keys: AtomicUsize,
    overflow: Box<[Cell]>,
    seed: Seeded,
    pub(crate) overflowed: AtomicU64,
    /// Overflow checks not yet counted in the metric.
    pub(crate) overflow_unreported: AtomicU64,
    /// Prefix of this state's keys in the shared store: the policy name and
    /// a hash of its limits, so a changed limit starts afresh fleet-wide too.
    pub(crate) store_prefix: String,
    /// Global scope: keys to push at the next sync.
    pub(crate) dirty: crossbeam_queue::ArrayQueue<u64>,
    /// The dirty queue was full; the syncer must scan the table.
    pub(crate) dirty_lost: AtomicBool,
}

impl PolicyState {
    pub(crate) fn new(policy: &RateLimitPolicy) -> PolicyState {
        let seed = Seeded::new();
        PolicyState {
            name: policy.name.clone(),
            scope: policy.scope,
            map: DashMap::with_hasher_and_shard_amount(seed.clone(), SHARDS),
            keys: AtomicUsize::new(0),
            max_keys: AtomicUsize::new(policy.max_keys as usize),
            overflow: (0..OVERFLOW_SLOTS).map(|_| Cell::default()).collect(),
            seed,
            overflowed: AtomicU64::new(0),
            overflow_unreported: AtomicU64::new(0),
            store_prefix: format!(
                "edgesteer:rl:{}:{:08x}",
                policy.name,
                xxhash_rust::xxh3::xxh3_64(format!("{:?}", policy.identity()).as_bytes()) as u32
            ),
            dirty: crossbeam_queue::ArrayQueue::new(if policy.scope == LimitScope::Global {
                DIRTY_QUEUE
            } else {
                1
            }),
            dirty_lost: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_max_keys(&self, max: u32) {
        self.max_keys.store(max as usize, Ordering::Relaxed);
    }

    /// Keys currently tracked.
    pub fn keys(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    /// Checks one request for `key` at `now` (ns on the limiter clock).
    /// `sync`: count the use for the shared store (global policies with a
    /// store configured).
    #[inline]
    pub fn check(
        &self,
        key: u64,
        tier: &LimitTier,
        abuse: Option<(u64, u32)>,
        now: u64,
        sync: bool,
    ) -> Checked {
        self.check_tallied(key, (tier, None), abuse, now, sync)
    }

    /// [`PolicyState::check`], also counting the request for the traffic
    /// model under tier index `tally` when given (keys past the cap share
    /// cells and are not counted).
    #[inline]
    pub fn check_tallied(
        &self,
        key: u64,
        (tier, tally): (&LimitTier, Option<usize>),
        abuse: Option<(u64, u32)>,
        now: u64,
        sync: bool,
    ) -> Checked {
        if let Some(cell) = self.map.get(&key) {
            let checked = self.check_cell(&cell, key, tier, abuse, now, sync);
            crate::tally::tally(&cell.tally, tally, checked.verdict.allowed);
            return checked;
        }
        if self.keys.load(Ordering::Relaxed) >= self.max_keys.load(Ordering::Relaxed) {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            self.overflow_unreported.fetch_add(1, Ordering::Relaxed);
            // Slots by a secret mix of the key, so nobody can aim at a
            // victim's slot. Shared slots never flag abuse (the neighbour
            // may be innocent) and are not synced: past the cap a global
            // policy acts per proxy.
            let slot = (self.seed.mix(key) >> (64 - OVERFLOW_BITS)) as usize;
            return self.check_cell(&self.overflow[slot], key, tier, None, now, false);
        }
        let cell = self.map.entry(key).or_insert_with(|| {
            self.keys.fetch_add(1, Ordering::Relaxed);
            Cell::default()
        });
        let checked = self.check_cell(&cell, key, tier, abuse, now, sync);
        crate::tally::tally(&cell.tally, tally, checked.verdict.allowed);
        checked
    }

    #[inline]
    fn check_cell(
        &self,
        cell: &Cell,
        key: u64,
        tier: &LimitTier,
        abuse: Option<(u64, u32)>,
        now: u64,
        sync: bool,
    ) -> Checked {
        let verdict = gcra::check(&cell.tat, now, tier.interval_ns, tier.tolerance_ns);
        if sync
            && cell.mark_used(if verdict.allowed { tier.interval_ns } else { 0 })
            && self.dirty.push(key).is_err()
        {
            self.dirty_lost.store(true, Ordering::Relaxed);
        }
        let abusive = match abuse {
            Some((threshold, for_secs)) => cell.abuse(now, threshold, for_secs),
            None => false,
        };
        Checked { verdict, abusive }
    }

    /// Forgets one key (an operator lifted its block).
    pub(crate) fn reset(&self, key: u64) {
        if let Some(cell) = self.map.get(&key) {
            cell.reset();
        }
    }

    /// Drops idle cells; returns how many keys remain.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        self.map.retain(|_, c| !c.idle(now));
        let n = self.map.len();
        self.keys.store(n, Ordering::Relaxed);
        n
    }
}

#[cfg(test)]
pub(crate) mod tests;
