//! The abuse block list: addresses blocked for abuse or by an operator,
//! looked up on every request while any block is live, swept when they
//! expire, and shared with the fleet through the store (an outbox of
//! [`BlockEvent`]s the syncer publishes, and changes applied from the
//! fleet's stream).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

pub use crate::block::{Block, BlockEvent};
use crate::keys::{client_unit, ip_key};
use crate::limiter::Limiter;

/// Most addresses blocked at once; further abusers are only rate-limited.
pub const MAX_BLOCKS: usize = 100_000;
/// Blocks from the fleet's stream are applied only while the list holds
/// fewer than this: the rest of the list stays for this proxy's own.
pub const MAX_REMOTE_BLOCKS: usize = MAX_BLOCKS / 2;
/// The longest block applied, whatever its source says: 30 days.
pub const MAX_BLOCK: Duration =
    Duration::from_secs(edgesteer_config::ratelimit::MAX_BLOCK_S as u64);

/// Longest block reason kept (abuse reasons are far shorter; an operator's
/// is cut here so stream entries stay small).
pub const MAX_REASON: usize = 256;

fn cut(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// Most block events kept for the syncer (older ones are dropped).
pub(crate) const MAX_OUTBOX: usize = 10_000;

impl Limiter {
    fn publish(&self, event: BlockEvent) {
        if !self.store.configured.load(Ordering::Relaxed) {
            return;
        }
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        if outbox.len() >= MAX_OUTBOX {
            // Keep the newest: a lift must not be lost behind its block.
            outbox.remove(0);
        }
        outbox.push(event);
    }

    /// Block changes made here since the last call.
    pub(crate) fn take_outbox(&self) -> Vec<BlockEvent> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back events a failed round could not publish.
    pub(crate) fn requeue_outbox(&self, mut events: Vec<BlockEvent>) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        events.append(&mut outbox);
        let excess = events.len().saturating_sub(MAX_OUTBOX);
        events.drain(..excess);
        *outbox = events;
    }

    /// Applies a change from the fleet's stream (not published again).
    /// Entries are applied in stream order, this proxy's own included, so
    /// every proxy ends with the same list.
    ///
    /// What the fleet can make a proxy hold is bounded: a block lasts at
    /// most [`MAX_BLOCK`] whatever the entry says, and blocks from the
    /// stream may fill at most [`MAX_REMOTE_BLOCKS`] of the list, so one
    /// buggy proxy (or anyone who can write to Redis) cannot push out
    /// this proxy's own blocks.
    pub(crate) fn apply_remote(&self, event: BlockEvent) {
        match event {
            BlockEvent::Block {
                ip,
                policy,
                reason,
                until,
            } => {
                let left = until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .min(MAX_BLOCK);
                if left.is_zero() {
                    return;
                }
                if self.blocks.len() >= MAX_REMOTE_BLOCKS
                    && !self.blocks.contains_key(&client_unit(ip))
                {
                    tracing::debug!(%ip, "block from the fleet not applied: {MAX_REMOTE_BLOCKS} blocks held");
                    return;
                }
                self.insert_block(ip, &policy, cut(reason), left, Instant::now(), false);
            }
            BlockEvent::Unblock { ip, .. } => {
                self.remove_block(ip);
            }
        }
    }

    /// After this proxy fell behind the fleet's trimmed stream: lifts the
    /// blocks the fleet's live snapshot no longer holds (`live`: its
    /// addresses' units), but for changes of its own not yet published.
    pub(crate) fn keep_only_live(&self, live: &std::collections::HashSet<IpAddr>) {
        let outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        let unpublished = |unit: IpAddr| {
            outbox.iter().any(|e| {
                let (BlockEvent::Block { ip, .. } | BlockEvent::Unblock { ip, .. }) = e;
                client_unit(*ip) == unit
            })
        };
        let stale: Vec<IpAddr> = self
            .blocks
            .iter()
            .map(|b| *b.key())
            .filter(|unit| !live.contains(unit) && !unpublished(*unit))
            .collect();
        drop(outbox);
        for unit in stale {
            self.remove_block(unit);
        }
    }

    /// Puts an address (its [`client_unit`]: an IPv6 /64) on the block
    /// list, for abuse or by an operator; false when the list is full.
    pub fn block(
        &self,
        ip: IpAddr,
        policy: &str,
        reason: String,
        length: Duration,
        at: Instant,
    ) -> bool {
        let until = SystemTime::now() + length;
        let reason = cut(reason);
        let inserted = self.insert_block(ip, policy, reason.clone(), length, at, true);
        if inserted {
            self.publish(BlockEvent::Block {
                ip: client_unit(ip),
                policy: policy.to_string(),
                reason,
                until,
            });
        }
        inserted
    }

    fn insert_block(
        &self,
        ip: IpAddr,
        policy: &str,
        reason: String,
        length: Duration,
        at: Instant,
        local: bool,
    ) -> bool {
        let ip = client_unit(ip);
        if self.blocks.len() >= MAX_BLOCKS && !self.blocks.contains_key(&ip) {
            tracing::warn!(%ip, "block list full ({MAX_BLOCKS}); address only rate-limited");
            return false;
        }
        let now = SystemTime::now();
        if local {
            tracing::warn!(%ip, policy, %reason, seconds = length.as_secs(), "address blocked");
        } else {
            tracing::debug!(%ip, policy, %reason, seconds = length.as_secs(), "block applied from the fleet");
        }
        let block = Block {
            ip,
            policy: policy.to_string(),
            reason,
            since: now,
            until: now + length,
            until_ns: self
                .clock(at)
                .saturating_add(u64::try_from(length.as_nanos()).unwrap_or(u64::MAX)),
        };
        if self.blocks.insert(ip, block).is_none() {
            self.block_count.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Lifts a block and resets the address's quota in every policy.
    /// Lifts a block here and, with a store, across the fleet (published
    /// even when this proxy never had the block: another may).
    pub fn unblock(&self, ip: IpAddr) -> Option<Block> {
        let removed = self.remove_block(ip);
        self.publish(BlockEvent::Unblock {
            ip: client_unit(ip),
            at: SystemTime::now(),
        });
        removed
    }

    /// Block-list changes are shared through a store.
    pub fn shares_blocks(&self) -> bool {
        self.store.configured.load(Ordering::Relaxed)
    }

    fn remove_block(&self, ip: IpAddr) -> Option<Block> {
        let ip = client_unit(ip);
        let removed = self.blocks.remove(&ip).map(|(_, b)| b);
        if removed.is_some() {
            self.block_count.fetch_sub(1, Ordering::Relaxed);
            let key = ip_key(ip);
            for s in self.live() {
                s.reset(key);
            }
            tracing::info!(%ip, "block lifted");
        }
        removed
    }

    /// Current blocks, soonest to expire first.
    pub fn blocks(&self) -> Vec<Block> {
        let now = self.clock(Instant::now());
        let mut v: Vec<Block> = self
            .blocks
            .iter()
            .filter(|b| b.until_ns > now)
            .map(|b| b.value().clone())
            .collect();
        v.sort_by_key(|b| b.until_ns);
        v
    }

    /// The address's block, if it has a live one.
    pub fn blocked(&self, ip: IpAddr) -> Option<Block> {
        let now = self.clock(Instant::now());
        self.blocks
            .get(&client_unit(ip))
            .filter(|b| b.until_ns > now)
            .map(|b| b.value().clone())
    }

    pub fn block_count(&self) -> usize {
        self.block_count.load(Ordering::Relaxed)
    }
}
