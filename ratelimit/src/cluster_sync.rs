//! Fleet-wide limits on a Redis Cluster (`--redis redis+cluster://...`):
//! the same script, cells and overshoot bound as `global.rs`, with keys
//! spread over the cluster's masters.
//!
//! **Slot grouping.** A multi-key `EVAL` must have all its keys in one
//! slot. Keys are not grouped by their own slot (about one `EVAL` per key
//! below 16,384 keys) nor hash-tagged per policy (a whole policy on one
//! master: its load on one node, and its outage with that node). Each key
//! goes to one of 256 buckets by its hash, and each bucket is a hash tag
//! whose slot lies in its own 64-slot window (`slots.rs`): a round sends
//! at most one `EVAL` per bucket and 500 keys, all at once (the cluster
//! client pipelines them per node and follows `MOVED`/`ASK`), and every
//! policy spreads evenly over the masters whatever slot ranges they hold.
//!
//! **Failover.** Each round tells, per bucket, whether its master answered:
//! its `EVAL` succeeded, or (with nothing to send) a keyed probe in one of
//! that master's buckets did. A bucket unanswered for the stale time
//! (`max(1 s, 4 x interval)`, as for a single Redis) puts only its keys in
//! their policy's fail mode: `fail_open` keys run on local limits,
//! `fail_closed` keys answer 503; keys on the other masters stay
//! fleet-limited. (With Redis's default `cluster-require-full-coverage
//! yes` the cluster itself refuses every key once a master is marked
//! failed, until its replica is promoted; then every bucket is down.)
//! A master that failed is not sent its buckets' keys (they are dropped,
//! as a failed `EVAL` drops them) but probed every fourth round, so a dead
//! node costs one refused connection now and then, not one per bucket.
//! After an error the topology is read again every round, so the round
//! after a promotion reaches the new master; a master change rebuilds the
//! connection so the client's slot map follows at once. The request path
//! reads one atomic per key (`StoreStatus::ok_for`) and never waits.
//!
//! **Visibility.** Each round publishes the nodes (role, slots, failed
//! flag, this proxy's last answer, latency and error per master), the slots
//! no live master serves and the buckets down, for `/v1/ratelimit`.
//! Sentinel is not supported.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::cluster_async::ClusterConnection;
use redis::RedisResult;
use tokio::task::JoinSet;

use crate::block_sync::{share_blocks, BlockKeys, BlockStream};
use crate::cluster::{ClusterUrl, Topology};
use crate::cluster_link::{eval, probe, Link};
use crate::cluster_view::{advice, status};
use crate::limiter::Limiter;
use crate::reconcile::{apply_debt, take_dirty, BATCH, SCRIPT};
use crate::slots::{bucket_of, Buckets, BUCKETS};
use crate::state::PolicyState;
use crate::tls::RedisTls;

/// Rounds in a row with a failure after which the connection is rebuilt.
const REBUILD_AFTER: u32 = 20;
/// A failed master is probed every this many rounds.
const PROBE_EVERY: u32 = 4;

/// One dirty key of one policy.
struct Entry {
    state: Arc<PolicyState>,
    key: u64,
    pending_ns: u64,
}

/// What a round found.
#[derive(Default)]
struct Round {
    errors: Vec<String>,
    /// Some node answered something.
    any_ok: bool,
    /// Per node (index in the topology): (some command succeeded, some failed).
    nodes: Vec<(bool, bool)>,
    /// Per bucket: its `EVAL`s all succeeded (`Some(true)`), one failed.
    buckets: Vec<Option<bool>>,
    /// Failed `EVAL`s by master: how many, and the first error.
    failures: BTreeMap<String, (usize, String)>,
}

/// Runs the cluster syncer until the task is dropped.
pub(crate) async fn run(
    limiter: Arc<Limiter>,
    interval: Duration,
    url: ClusterUrl,
    tls: Option<RedisTls>,
) {
    let store = &limiter.store;
    store.sharded.store(true, Ordering::Relaxed);
    // Optimistic until the first attempt says otherwise.
    limiter.expect_store(interval);
    let mut link = Link::new(url, tls);
    let interval_us = u64::try_from(interval.as_micros()).unwrap_or(u64::MAX);
    let stale = crate::store::STORE_STALE.max(interval * 4);
    let mut blocks = BlockStream::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        let states = limiter.live_global();
        let round = link
            .round(&limiter, &states, interval_us, &mut blocks)
            .await;
        store.note_round(started.elapsed());
        if round.errors.is_empty() {
            store.syncs.fetch_add(1, Ordering::Relaxed);
            link.failing_rounds = 0;
        } else {
            store.errors.fetch_add(1, Ordering::Relaxed);
            store.note_error(round.errors.join("; "));
            link.failing_rounds += 1;
            if link.failing_rounds.is_multiple_of(REBUILD_AFTER) {
                link.conn = None;
            }
        }
        if let Some((topology, from)) = &link.topology {
            store.set_cluster(status(topology, from, &link.stats));
        }
        link.log
            .whole_cluster(!round.any_ok, round.errors.first(), stale);
    }
}

impl Link {
    /// One round: push every dirty key, probe idle masters, mark buckets
    /// fresh, share blocks.
    async fn round(
        &mut self,
        limiter: &Limiter,
        states: &[Arc<PolicyState>],
        interval_us: u64,
        blocks: &mut BlockStream,
    ) -> Round {
        let mut by_bucket: Vec<Vec<Entry>> = (0..BUCKETS).map(|_| Vec::new()).collect();
        for state in states {
            for (key, pending_ns) in take_dirty(state) {
                if let Some(v) = by_bucket.get_mut(bucket_of(key)) {
                    let state = state.clone();
                    v.push(Entry {
                        state,
                        key,
                        pending_ns,
                    });
                }
            }
        }
        let mut round = Round::default();
        let Some(conn) = self.ready(&mut round).await else {
            by_bucket.iter().flatten().for_each(drop_entry);
            return round;
        };
        let topology = self
            .topology
            .as_ref()
            .map(|(t, _)| t.clone())
            .unwrap_or_default();
        round.nodes = vec![(false, false); topology.nodes.len()];
        round.buckets = vec![None; BUCKETS];
        // Masters that failed lately get no keys, and a probe now and then.
        let resting: Vec<Option<u32>> = topology
            .nodes
            .iter()
            .map(|n| {
                let s = self.stats.entry(n.addr.clone()).or_default();
                if !n.master || n.slots.is_empty() {
                    s.down_rounds = 0;
                }
                // A resting master stays down until a probe says otherwise.
                (s.up, s.sync_ms) = ((s.down_rounds > 0).then_some(false), None);
                (s.down_rounds > 0).then(|| {
                    s.down_rounds += 1;
                    s.down_rounds
                })
            })
            .collect();
        let known = !topology.nodes.is_empty();
        let mut chunks: Vec<(usize, Vec<Entry>)> = Vec::new();
        for (b, mut entries) in by_bucket.into_iter().enumerate() {
            let owner = topology.owner_of(b);
            let skip = match owner {
                Some(n) => resting.get(n).copied().flatten().is_some(),
                None => known,
            };
            if skip {
                entries.iter().for_each(drop_entry);
                continue;
            }
            while !entries.is_empty() {
                let rest = entries.split_off(entries.len().min(BATCH));
                chunks.push((b, std::mem::replace(&mut entries, rest)));
            }
        }
        self.send(limiter, &conn, &topology, chunks, interval_us, &mut round)
            .await;
        self.probe_idle(&conn, &topology, &resting, &mut round)
            .await;

        let now = limiter.clock(Instant::now());
        for (b, own) in round.buckets.iter().enumerate() {
            let fresh = own.unwrap_or_else(|| {
                topology
                    .owner_of(b)
                    .and_then(|n| round.nodes.get(n))
                    .is_some_and(|a| a.0)
            });
            if let (true, Some(t)) = (fresh, limiter.store.bucket_ok_ns.get(b)) {
                t.store(now, Ordering::Relaxed);
            }
        }
        for (at, (n, e)) in std::mem::take(&mut round.failures) {
            round
                .errors
                .push(format!("{n} EVAL(s) on {at} failed: {e}"));
        }
        if round.any_ok {
            limiter.store.last_ok_ns.store(now, Ordering::Relaxed);
            limiter.store.up.store(true, Ordering::Relaxed);
            let mut c = conn.clone();
            // Block sharing failing must not take global limits down.
            if let Err(e) = share_blocks(limiter, &mut c, blocks, &BlockKeys::CLUSTER).await {
                limiter.store.block_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "block list not shared this round");
            }
        } else {
            round.errors.push("no node answered this round".into());
            self.conn = None;
        }
        if !topology.unserved.is_empty() {
            round
                .errors
                .push(self.log.unserved_message(&topology.unserved));
        }
        self.log.slots(&topology);
        self.log.nodes(&topology, &round.nodes, &self.stats);
        round
    }

    /// The connection, made if needed, and the topology, read again when
    /// due (a promotion rebuilds the connection).
    async fn ready(&mut self, round: &mut Round) -> Option<ClusterConnection> {
        if self.conn.is_none() {
            match self.connect().await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    round.errors.push(format!(
                        "no node of the cluster answers (tried {}): {e}{}",
                        self.candidates().join(","),
                        advice(&e)
                    ));
                    return None;
                }
            }
        }
        let conn = self.conn.clone()?;
        if self.topology_due() {
            match self.read_topology(&conn).await {
                Ok(moved) => {
                    round.any_ok = true;
                    if moved {
                        // The client's slot map must follow a promotion now.
                        if let Ok(c) = self.connect().await {
                            self.conn = Some(c);
                        }
                    }
                }
                Err(e) => round
                    .errors
                    .push(format!("CLUSTER NODES: {e}{}", advice(&e))),
            }
        }
        self.conn.clone()
    }

    /// Every chunk's `EVAL` at once; each reply is applied as it comes.
    async fn send(
        &mut self,
        limiter: &Limiter,
        conn: &ClusterConnection,
        topology: &Topology,
        chunks: Vec<(usize, Vec<Entry>)>,
        interval_us: u64,
        round: &mut Round,
    ) {
        let buckets = Buckets::get();
        let hash = redis::Script::new(SCRIPT).get_hash().to_string();
        let mut evals = JoinSet::new();
        for (i, (b, chunk)) in chunks.iter().enumerate() {
            let keys: Vec<String> = chunk
                .iter()
                .map(|e| {
                    format!(
                        "{}:{}:{:016x}",
                        buckets.tag(*b),
                        e.state.store_prefix,
                        e.key
                    )
                })
                .collect();
            let args: Vec<u64> = chunk.iter().map(|e| e.pending_ns.div_ceil(1_000)).collect();
            let (mut conn, hash) = (conn.clone(), hash.clone());
            evals.spawn(async move {
                let t = Instant::now();
                let r = eval(&mut conn, &hash, &keys, interval_us, &args).await;
                (i, r, t.elapsed())
            });
        }
        let mut done = vec![false; chunks.len()];
        while let Some(Ok((i, result, took))) = evals.join_next().await {
            let (Some((b, chunk)), Some(d)) = (chunks.get(i), done.get_mut(i)) else {
                continue;
            };
            *d = true;
            let owner = topology.owner_of(*b);
            let ok = result.is_ok();
            match result {
                Ok(debts) => {
                    let now = limiter.clock(Instant::now());
                    // A long round must not look like an outage.
                    limiter.store.last_ok_ns.store(now, Ordering::Relaxed);
                    for (e, debt) in chunk.iter().zip(debts) {
                        apply_debt(&e.state, e.key, debt, now);
                    }
                    self.answered(topology, owner, round, Ok(took));
                }
                Err(e) => {
                    chunk.iter().for_each(drop_entry);
                    let at = owner
                        .and_then(|n| topology.nodes.get(n))
                        .map_or_else(|| "no live master".to_string(), |n| n.addr.clone());
                    let f = round
                        .failures
                        .entry(at)
                        .or_insert_with(|| (0, format!("{e}{}", advice(&e))));
                    f.0 += 1;
                    self.answered(topology, owner, round, Err(e.to_string()));
                }
            }
            if let Some(r) = round.buckets.get_mut(*b) {
                *r = Some(r.unwrap_or(true) && ok);
            }
        }
        // A task that did not finish: its keys are dropped like a failure's.
        for ((_, chunk), d) in chunks.iter().zip(&done) {
            if !d {
                chunk.iter().for_each(drop_entry);
            }
        }
    }

    /// One keyed probe per master that got no `EVAL` this round (a PING
    /// would pass where the cluster refuses keys); resting masters only
    /// every `PROBE_EVERY` rounds.
    async fn probe_idle(
        &mut self,
        conn: &ClusterConnection,
        topology: &Topology,
        resting: &[Option<u32>],
        round: &mut Round,
    ) {
        let mut probes: JoinSet<(usize, RedisResult<()>, Duration)> = JoinSet::new();
        for (n, node) in topology.masters() {
            let rest = resting.get(n).copied().flatten();
            let busy = round.nodes.get(n).is_some_and(|a| a.0 || a.1);
            if busy || node.failed || rest.is_some_and(|r| !r.is_multiple_of(PROBE_EVERY)) {
                continue;
            }
            let bucket = (0..BUCKETS).find(|&b| topology.owner_of(b) == Some(n));
            let (mut conn, addr) = (conn.clone(), node.addr.clone());
            probes.spawn(async move {
                let t = Instant::now();
                let r = probe(&mut conn, bucket, &addr).await;
                (n, r, t.elapsed())
            });
        }
        while let Some(Ok((n, result, took))) = probes.join_next().await {
            if let Err(e) = &result {
                let at = topology.nodes.get(n).map_or("", |x| x.addr.as_str());
                round
                    .errors
                    .push(format!("probe of {at}: {e}{}", advice(e)));
            }
            self.answered(
                topology,
                Some(n),
                round,
                result.map(|()| took).map_err(|e| e.to_string()),
            );
        }
    }

    /// Records a master's answer (or failure) for this round.
    fn answered(
        &mut self,
        topology: &Topology,
        node: Option<usize>,
        round: &mut Round,
        result: Result<Duration, String>,
    ) {
        round.any_ok |= result.is_ok();
        let Some(n) = node else {
            return;
        };
        if let Some(a) = round.nodes.get_mut(n) {
            match result {
                Ok(_) => a.0 = true,
                Err(_) => a.1 = true,
            }
        }
        let Some(addr) = topology.nodes.get(n).map(|x| x.addr.clone()) else {
            return;
        };
        // A failure earlier in the round keeps it down.
        let failed_now = round.nodes.get(n).is_some_and(|a| a.1);
        let s = self.stats.entry(addr).or_default();
        match result {
            Ok(took) => {
                if !failed_now {
                    (s.up, s.down_rounds) = (Some(true), 0);
                }
                let ms = took.as_secs_f64() * 1_000.0;
                s.sync_ms = Some(s.sync_ms.map_or(ms, |m: f64| m.max(ms)));
            }
            Err(e) => {
                s.up = Some(false);
                s.down_rounds = s.down_rounds.max(1);
                s.errors += 1;
                s.last_error = Some(e);
            }
        }
    }
}

/// Drops a key's unsynced quota (its round failed, or its master is down).
fn drop_entry(e: &Entry) {
    crate::reconcile::discard(&e.state, &[(e.key, e.pending_ns)]);
}
