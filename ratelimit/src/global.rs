//! Fleet-wide limits through Redis, reconciled in the background.
//!
//! Each proxy applies the policy's GCRA locally and counts the quota it
//! admitted for each key (`pending_ns`). Every sync interval the syncer
//! sends, in one `EVAL` per 500 keys, what each dirty key consumed; a Lua
//! script adds it to the key's fleet TAT (Redis time, so proxy clocks never
//! matter) and answers how far ahead of now that TAT is (the fleet's
//! "debt"). The proxy then moves its local TAT to at least
//! `now + debt + quota admitted since the snapshot`. The request path only
//! touches atomics; it never waits on Redis.
//!
//! **Overshoot bound.** Between two syncs a proxy only knows the fleet as
//! of the last reply, so with `N` proxies each may admit up to its own
//! `burst + rate x (interval + rtt)` that the others have not seen. Over a
//! window `W` the fleet admits at most
//! `rate x W + burst + (N - 1) x (burst + rate x (interval + rtt))`; the
//! excess is transient (the pushed debt then holds every proxy back), so
//! over long windows the fleet converges to `rate`. `benches/`'s fleet test
//! measures it.
//!
//! **Outage.** A failed or slow (> 250 ms) sync marks the store down, drops
//! the unsent counts, and is retried every interval with a fresh
//! connection. While down, `fail_open` policies run on local limits only
//! and `fail_closed` ones answer 503. The first good sync restores both.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgesteer_config::ratelimit::LimitScope;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Script};

use crate::blocklist::{epoch_ms, BlockEvent};
use crate::limiter::Limiter;
use crate::state::PolicyState;

/// Keys per `EVAL`.
const BATCH: usize = 500;
/// A Redis command (connect, or one `EVAL`) slower than this fails the round.
const SYNC_TIMEOUT: Duration = Duration::from_millis(250);
/// Debt larger than this from the store is treated as corrupt and clamped.
const MAX_DEBT_NS: u64 = 3_600_000_000_000;

/// ARGV[1]: the sync interval (us); ARGV[i + 1]: quota (us) KEYS[i] used.
/// The quota was used over the last interval, so it is booked from
/// `now - interval` at the earliest: booking it all at `now` would count a
/// proxy's steady use twice (once in its own TAT, once as fresh debt) and
/// hold a lone proxy below the rate whenever burst/rate < interval.
const SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local since = now - tonumber(ARGV[1])
local out = {}
for i, k in ipairs(KEYS) do
  local n = tonumber(ARGV[i + 1])
  local tat = tonumber(redis.call('GET', k)) or since
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

/// The stream through which proxies share block-list changes.
const BLOCK_STREAM: &str = "edgesteer:blocks";
/// Entries kept in it (approximately; older ones are trimmed): as many as
/// the block list holds, so a starting proxy can replay every live block.
const BLOCK_STREAM_LEN: usize = 100_000;
/// The live blocks (ip -> `until_ms|policy|reason`), written with every
/// stream entry in one transaction: a starting proxy loads it instead of
/// replaying a stream whose old entries may be trimmed away.
const BLOCK_SNAPSHOT: &str = "edgesteer:blocks:live";
/// Deletes snapshot fields whose value is still the expired one read
/// (a block re-made meanwhile has a new value and stays).
const TIDY_SCRIPT: &str = r"
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
";
/// Rounds between two steps of the snapshot tidy (an `HSCAN` page).
const TIDY_EVERY: u64 = 20;
/// Entries read per round (a starting proxy catches up 1,000 per round).
const BLOCK_READ: usize = 1_000;

/// Where and how often to reconcile.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    pub interval: Duration,
}

/// The URL for logs: credentials (`redis://user:secret@host`) masked.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Runs the syncer until the task is dropped.
pub async fn run_sync(limiter: Arc<Limiter>, cfg: SyncConfig) {
    let store = &limiter.store;
    // Optimistic until the first attempt says otherwise.
    limiter.expect_store(cfg.interval);
    // A bad URL still runs the loop: it keeps discarding unsent counts.
    let client = Client::open(cfg.url.as_str())
        .inspect_err(|e| {
            store.up.store(false, Ordering::Relaxed);
            tracing::error!(url = %redacted(&cfg.url), error = %e, "bad --redis URL; global rate limits act as if the store were down");
        })
        .ok();
    // Every command (connect, EVAL, PING) fails after SYNC_TIMEOUT, so a
    // hung Redis costs one timeout per round and nothing else.
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(SYNC_TIMEOUT)
        .set_response_timeout(SYNC_TIMEOUT);
    let script = Script::new(SCRIPT);
    let interval_us = u64::try_from(cfg.interval.as_micros()).unwrap_or(u64::MAX);
    // Reading from 0 replays the blocks the fleet already has.
    let mut blocks = BlockStream::default();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let states: Vec<Arc<PolicyState>> = limiter
            .live()
            .into_iter()
            .filter(|s| s.scope == LimitScope::Global)
            .collect();
        let result = async {
            if conn.is_none() {
                let Some(client) = &client else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "bad --redis URL",
                    )));
                };
                conn = Some(
                    client
                        .get_multiplexed_async_connection_with_config(&conn_cfg)
                        .await?,
                );
            }
            match conn.as_mut() {
                Some(c) => {
                    sync_once(&limiter, c, &script, interval_us, &states).await?;
                    // Block sharing failing (say, a Redis without streams)
                    // must not take global limits down with it.
                    if let Err(e) = share_blocks(&limiter, c, &mut blocks).await {
                        store.block_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, "block list not shared this round");
                    }
                    Ok(())
                }
                None => Ok(()),
            }
        }
        .await;
        match result {
            Ok(()) => {
                store.syncs.fetch_add(1, Ordering::Relaxed);
                store
                    .last_ok_ns
                    .store(limiter.clock(Instant::now()), Ordering::Relaxed);
                if !store.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(url = %redacted(&cfg.url), "rate-limit store reachable again; global limits resumed");
                }
            }
            Err(e) => {
                conn = None;
                // Counts that could not be pushed are dropped: replaying a
                // long outage's traffic would refuse keys long after it.
                for state in &states {
                    discard(state, &take_dirty(state));
                }
                store.errors.fetch_add(1, Ordering::Relaxed);
                if store.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(url = %redacted(&cfg.url), error = %e, "rate-limit store unreachable; fail_open policies use local limits, fail_closed ones answer 503");
                }
            }
        }
    }
}

/// One reconciliation round over every global policy.
async fn sync_once(
    limiter: &Limiter,
    conn: &mut MultiplexedConnection,
    script: &Script,
    interval_us: u64,
    states: &[Arc<PolicyState>],
) -> redis::RedisResult<()> {
    let mut sent_any = false;
    for state in states {
        let keys = take_dirty(state);
        for (n, chunk) in keys.chunks(BATCH).enumerate() {
            let mut inv = script.prepare_invoke();
            inv.arg(interval_us);
            for &(key, pending_ns) in chunk {
                inv.key(format!("{}:{key:016x}", state.store_prefix));
                inv.arg(pending_ns.div_ceil(1_000));
            }
            let debts: Vec<i64> = match inv.invoke_async(conn).await {
                Ok(d) => d,
                Err(e) => {
                    // This chunk and the rest of the policy's keys are dropped.
                    discard(state, keys.get(n * BATCH..).unwrap_or(&[]));
                    return Err(e);
                }
            };
            sent_any = true;
            let now = limiter.clock(Instant::now());
            // A long round must not look like an outage.
            limiter.store.last_ok_ns.store(now, Ordering::Relaxed);
            for (&(key, _), debt_us) in chunk.iter().zip(debts) {
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
        }
    }
    if !sent_any {
        // Nothing to push: still prove the store is there.
        redis::cmd("PING").query_async::<String>(conn).await?;
    }
    Ok(())
}

/// Where this proxy is in the fleet's block stream.
#[derive(Default)]
struct BlockStream {
    /// Last entry applied; "0" replays the stream.
    last_id: Option<String>,
    /// Event ids already applied: a retried XADD may write an event twice,
    /// and the copy must not undo a later change.
    seen: std::collections::HashSet<u64>,
    /// Rounds so far, and where the snapshot tidy is in its `HSCAN`.
    rounds: u64,
    tidy_cursor: u64,
}

/// Publishes this proxy's block-list changes and applies the stream's, all
/// in stream order (its own included), so every proxy ends with the same
/// list.
async fn share_blocks(
    limiter: &Limiter,
    conn: &mut MultiplexedConnection,
    stream: &mut BlockStream,
) -> redis::RedisResult<()> {
    if stream.last_id.is_none() {
        load_snapshot(limiter, conn, stream).await?;
    }
    let events = limiter.take_outbox();
    if !events.is_empty() {
        // One transaction: stream and snapshot change in the same order on
        // every proxy's view.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for e in &events {
            let eid = {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new().hash_one(e)
            };
            let cmd = pipe
                .cmd("XADD")
                .arg(BLOCK_STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(BLOCK_STREAM_LEN)
                .arg("*")
                .arg("eid")
                .arg(eid);
            match e {
                BlockEvent::Block {
                    ip,
                    policy,
                    reason,
                    until,
                } => {
                    let until_ms = epoch_ms(*until);
                    cmd.arg("op")
                        .arg("block")
                        .arg("ip")
                        .arg(ip.to_string())
                        .arg("policy")
                        .arg(policy)
                        .arg("reason")
                        .arg(reason)
                        .arg("until_ms")
                        .arg(until_ms)
                        .ignore();
                    pipe.cmd("HSET")
                        .arg(BLOCK_SNAPSHOT)
                        .arg(ip.to_string())
                        .arg(snapshot_value(until_ms, policy, reason))
                        .ignore();
                }
                BlockEvent::Unblock { ip } => {
                    cmd.arg("op")
                        .arg("unblock")
                        .arg("ip")
                        .arg(ip.to_string())
                        .ignore();
                    pipe.cmd("HDEL")
                        .arg(BLOCK_SNAPSHOT)
                        .arg(ip.to_string())
                        .ignore();
                }
            }
        }
        if let Err(e) = pipe.query_async::<()>(conn).await {
            limiter.requeue_outbox(events);
            return Err(e);
        }
    }
    let from = stream.last_id.clone().unwrap_or_else(|| "0".into());

    let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(BLOCK_READ)
        .arg("STREAMS")
        .arg(BLOCK_STREAM)
        .arg(from)
        .query_async(conn)
        .await?;
    if stream.seen.len() > 4 * BLOCK_STREAM_LEN {
        stream.seen.clear();
    }
    for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
        stream.last_id = Some(entry.id.clone());
        let field = |name: &str| -> Option<String> {
            entry
                .map
                .get(name)
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
        };
        if let Some(eid) = field("eid").and_then(|s| s.parse::<u64>().ok()) {
            if !stream.seen.insert(eid) {
                continue;
            }
        }
        let Some(ip) = field("ip").and_then(|s| s.parse().ok()) else {
            continue;
        };
        let event = match field("op").as_deref() {
            Some("block") => BlockEvent::Block {
                ip,
                policy: field("policy").unwrap_or_default(),
                reason: field("reason").unwrap_or_default(),
                until: from_epoch_ms(field("until_ms").and_then(|s| s.parse().ok()).unwrap_or(0)),
            },
            Some("unblock") => BlockEvent::Unblock { ip },
            _ => continue,
        };
        limiter.apply_remote(event);
    }
    stream.rounds += 1;
    if stream.rounds % TIDY_EVERY == 0 {
        tidy_snapshot(conn, stream).await?;
    }
    Ok(())
}

/// One step of removing ended blocks from the snapshot hash, so it holds
/// about the live blocks and no more (every proxy takes steps; deleting is
/// conditional, so they cannot remove a block re-made meanwhile).
async fn tidy_snapshot(
    conn: &mut MultiplexedConnection,
    stream: &mut BlockStream,
) -> redis::RedisResult<()> {
    let (cursor, page): (u64, Vec<String>) = redis::cmd("HSCAN")
        .arg(BLOCK_SNAPSHOT)
        .arg(stream.tidy_cursor)
        .arg("COUNT")
        .arg(200)
        .query_async(conn)
        .await?;
    stream.tidy_cursor = cursor;
    let now_ms = epoch_ms(std::time::SystemTime::now());
    let script = redis::Script::new(TIDY_SCRIPT);
    let mut ended = script.prepare_invoke();
    ended.key(BLOCK_SNAPSHOT);
    let mut any = false;
    for pair in page.chunks(2) {
        if let [field, value] = pair {
            if parse_snapshot(value).0 <= now_ms {
                ended.arg(field).arg(value);
                any = true;
            }
        }
    }
    if any {
        ended.invoke_async::<i64>(conn).await?;
    }
    Ok(())
}

/// A starting proxy: the stream's position first, then the live blocks,
/// then (next) the stream from that position. Changes made in between are
/// in both and apply again harmlessly.
async fn load_snapshot(
    limiter: &Limiter,
    conn: &mut MultiplexedConnection,
    stream: &mut BlockStream,
) -> redis::RedisResult<()> {
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(BLOCK_STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let live: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(BLOCK_SNAPSHOT)
        .query_async(conn)
        .await?;
    let now_ms = epoch_ms(std::time::SystemTime::now());
    let mut expired = Vec::new();
    for (ip, value) in live {
        let (until_ms, policy, reason) = parse_snapshot(&value);
        match ip.parse() {
            Ok(addr) if until_ms > now_ms => limiter.apply_remote(BlockEvent::Block {
                ip: addr,
                policy: policy.to_string(),
                reason: reason.to_string(),
                until: from_epoch_ms(until_ms),
            }),
            _ => expired.push(ip),
        }
    }
    if !expired.is_empty() {
        // Tidy: nobody needs blocks that ended.
        redis::cmd("HDEL")
            .arg(BLOCK_SNAPSHOT)
            .arg(&expired)
            .query_async::<()>(conn)
            .await?;
    }
    stream.last_id = Some(
        last.ids
            .first()
            .map_or_else(|| "0".into(), |e| e.id.clone()),
    );
    Ok(())
}

fn from_epoch_ms(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A live-blocks hash value: `until_ms|policy|reason`.
fn snapshot_value(until_ms: u64, policy: &str, reason: &str) -> String {
    format!("{until_ms}|{policy}|{reason}")
}

/// The parts of a [`snapshot_value`]; an unreadable one counts as ended.
fn parse_snapshot(value: &str) -> (u64, &str, &str) {
    let mut parts = value.splitn(3, '|');
    let until_ms = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        until_ms,
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// Drops the unsynced quota of keys taken for a round that failed.
fn discard(state: &PolicyState, keys: &[(u64, u64)]) {
    for &(key, _) in keys {
        if let Some(cell) = state.map.get(&key) {
            cell.discard();
        }
    }
}

/// Keys used since the last sync, with the quota each consumed.
fn take_dirty(state: &PolicyState) -> Vec<(u64, u64)> {
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
    use super::{parse_snapshot, redacted, snapshot_value};

    #[test]
    fn snapshot_values_round_trip() {
        let v = snapshot_value(17, "ip", "over 5x | for 10 s");
        assert_eq!(parse_snapshot(&v), (17, "ip", "over 5x | for 10 s"));
        assert_eq!(parse_snapshot("garbage").0, 0);
    }

    #[test]
    fn credentials_never_reach_the_logs() {
        assert_eq!(
            redacted("redis://:hunter2@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redacted("redis://u:p@h:1"), "redis://***@h:1");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
