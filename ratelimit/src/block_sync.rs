//! Sharing the abuse block list across the fleet through Redis: each
//! proxy publishes its block-list changes to a stream (and a live-blocks
//! snapshot hash) and applies everyone's changes in stream order, so every
//! proxy ends with the same list. A starting proxy loads the snapshot, then
//! follows the stream; ended blocks are tidied from the snapshot a page at
//! a time. Called once per round by the syncers in `global.rs` (a single
//! Redis) and `cluster_sync.rs` (a Redis Cluster, where both keys carry one
//! hash tag so the transaction that writes them stays in one slot: the
//! block list then lives on one master and its replica, and any node
//! redirects a reader to it).

use std::time::Duration;

use redis::aio::ConnectionLike;

use crate::block::{epoch_ms, BlockEvent};
use crate::limiter::Limiter;

/// Where the fleet's block list lives in the store.
pub(crate) struct BlockKeys {
    /// The stream through which proxies share block-list changes.
    stream: &'static str,
    /// The live blocks (ip -> `until_ms|policy|reason`), written with every
    /// stream entry in one transaction: a starting proxy loads it instead
    /// of replaying a stream whose old entries may be trimmed away.
    snapshot: &'static str,
}

impl BlockKeys {
    /// On a single Redis.
    pub(crate) const SINGLE: BlockKeys = BlockKeys {
        stream: "edgesteer:blocks",
        snapshot: "edgesteer:blocks:live",
    };
    /// On a Redis Cluster: one hash tag, one slot.
    pub(crate) const CLUSTER: BlockKeys = BlockKeys {
        stream: "{edgesteer:blocks}",
        snapshot: "{edgesteer:blocks}:live",
    };
}

/// Entries kept in it (approximately; older ones are trimmed): as many as
/// the block list holds, so a starting proxy can replay every live block.
const BLOCK_STREAM_LEN: usize = 100_000;
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

/// Where this proxy is in the fleet's block stream.
#[derive(Default)]
pub(crate) struct BlockStream {
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
pub(crate) async fn share_blocks<C: ConnectionLike + Send>(
    limiter: &Limiter,
    conn: &mut C,
    stream: &mut BlockStream,
    keys: &BlockKeys,
) -> redis::RedisResult<()> {
    if stream.last_id.is_none() {
        load_snapshot(limiter, conn, stream, keys).await?;
    }
    publish_outbox(limiter, conn, keys).await?;
    apply_stream(limiter, conn, stream, keys).await?;
    stream.rounds += 1;
    if stream.rounds.is_multiple_of(TIDY_EVERY) {
        tidy_snapshot(conn, stream, keys).await?;
    }
    Ok(())
}

/// Writes this proxy's pending block-list changes to the stream and the
/// snapshot; on failure they go back to the outbox for the next round.
async fn publish_outbox<C: ConnectionLike + Send>(
    limiter: &Limiter,
    conn: &mut C,
    keys: &BlockKeys,
) -> redis::RedisResult<()> {
    let events = limiter.take_outbox();
    if events.is_empty() {
        return Ok(());
    }
    // One transaction: stream and snapshot change in the same order on
    // every proxy's view.
    let mut pipe = redis::pipe();
    pipe.atomic();
    for e in &events {
        queue_event(&mut pipe, e, keys);
    }
    if let Err(e) = pipe.query_async::<()>(conn).await {
        limiter.requeue_outbox(events);
        return Err(e);
    }
    Ok(())
}

/// Adds one change to the transaction: its stream entry and its snapshot
/// update.
fn queue_event(pipe: &mut redis::Pipeline, e: &BlockEvent, keys: &BlockKeys) {
    let eid = event_id(e);
    let cmd = pipe
        .cmd("XADD")
        .arg(keys.stream)
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
                .arg(keys.snapshot)
                .arg(ip.to_string())
                .arg(snapshot_value(until_ms, policy, reason))
                .ignore();
        }
        BlockEvent::Unblock { ip, at } => {
            cmd.arg("op")
                .arg("unblock")
                .arg("ip")
                .arg(ip.to_string())
                .arg("at_ms")
                .arg(epoch_ms(*at))
                .ignore();
            pipe.cmd("HDEL")
                .arg(keys.snapshot)
                .arg(ip.to_string())
                .ignore();
        }
    }
}

/// A change's id, the same however often it is published (a retried
/// publish is the same event, which every proxy applies once): a hash of
/// what it says. A block's end time makes each block its own event; a
/// late copy of an old block cannot undo a lift made since.
pub(crate) fn event_id(e: &BlockEvent) -> u64 {
    let text = match e {
        BlockEvent::Block {
            ip,
            policy,
            reason,
            until,
        } => format!("block|{ip}|{policy}|{reason}|{}", epoch_ms(*until)),
        BlockEvent::Unblock { ip, at } => format!("unblock|{ip}|{}", epoch_ms(*at)),
    };
    xxhash_rust::xxh3::xxh3_64_with_seed(text.as_bytes(), 0x626c_6f63)
}

/// Reads the stream from where this proxy left it and applies each change
/// not applied yet.
async fn apply_stream<C: ConnectionLike + Send>(
    limiter: &Limiter,
    conn: &mut C,
    stream: &mut BlockStream,
    keys: &BlockKeys,
) -> redis::RedisResult<()> {
    let from = stream.last_id.clone().unwrap_or_else(|| "0".into());
    // The stream's first kept entry, read with the new ones: past the last
    // entry applied here, entries this proxy never read were trimmed away
    // (it was cut off, or stopped), and only the snapshot has them.
    let (first, reply): (
        redis::streams::StreamRangeReply,
        Option<redis::streams::StreamReadReply>,
    ) = redis::pipe()
        .cmd("XRANGE")
        .arg(keys.stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .cmd("XREAD")
        .arg("COUNT")
        .arg(BLOCK_READ)
        .arg("STREAMS")
        .arg(keys.stream)
        .arg(&from)
        .query_async(conn)
        .await?;
    if let Some(kept) = first.ids.first().filter(|e| fell_behind(&e.id, &from)) {
        tracing::warn!(last_applied = %from, first_kept = %kept.id, "this proxy fell behind the fleet's block stream past its trimmed entries; reloading the live blocks");
        let live = load_snapshot(limiter, conn, stream, keys).await?;
        limiter.keep_only_live(&live);
        return Ok(());
    }
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
            Some("unblock") => BlockEvent::Unblock {
                ip,
                at: from_epoch_ms(field("at_ms").and_then(|s| s.parse().ok()).unwrap_or(0)),
            },
            _ => continue,
        };
        limiter.apply_remote(event);
    }
    Ok(())
}

/// One step of removing ended blocks from the snapshot hash, so it holds
/// about the live blocks and no more (every proxy takes steps; deleting is
/// conditional, so they cannot remove a block re-made meanwhile).
async fn tidy_snapshot<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &mut BlockStream,
    keys: &BlockKeys,
) -> redis::RedisResult<()> {
    let (cursor, page): (u64, Vec<String>) = redis::cmd("HSCAN")
        .arg(keys.snapshot)
        .arg(stream.tidy_cursor)
        .arg("COUNT")
        .arg(200)
        .query_async(conn)
        .await?;
    stream.tidy_cursor = cursor;
    let now_ms = epoch_ms(std::time::SystemTime::now());
    let script = redis::Script::new(TIDY_SCRIPT);
    let mut ended = script.prepare_invoke();
    ended.key(keys.snapshot);
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
async fn load_snapshot<C: ConnectionLike + Send>(
    limiter: &Limiter,
    conn: &mut C,
    stream: &mut BlockStream,
    keys: &BlockKeys,
) -> redis::RedisResult<std::collections::HashSet<std::net::IpAddr>> {
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(keys.stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let live: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.snapshot)
        .query_async(conn)
        .await?;
    let now_ms = epoch_ms(std::time::SystemTime::now());
    let mut expired = Vec::new();
    let mut units = std::collections::HashSet::new();
    for (ip, value) in live {
        let (until_ms, policy, reason) = parse_snapshot(&value);
        match ip.parse() {
            Ok(addr) if until_ms > now_ms => {
                units.insert(crate::keys::client_unit(addr));
                limiter.apply_remote(BlockEvent::Block {
                    ip: addr,
                    policy: policy.to_string(),
                    reason: reason.to_string(),
                    until: from_epoch_ms(until_ms),
                })
            }
            _ => expired.push(ip),
        }
    }
    if !expired.is_empty() {
        // Tidy: nobody needs blocks that ended.
        redis::cmd("HDEL")
            .arg(keys.snapshot)
            .arg(&expired)
            .query_async::<()>(conn)
            .await?;
    }
    stream.last_id = Some(
        last.ids
            .first()
            .map_or_else(|| "0".into(), |e| e.id.clone()),
    );
    Ok(units)
}

/// Whether entries after `last_applied` may have been trimmed away: the
/// first entry still kept is newer (`"0"`, a replay from the start, can
/// miss nothing the snapshot it was loaded with does not hold).
fn fell_behind(first_kept: &str, last_applied: &str) -> bool {
    let id = |s: &str| -> Option<(u64, u64)> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some((ms.parse().ok()?, seq.parse().ok()?))
    };
    last_applied != "0" && matches!((id(first_kept), id(last_applied)), (Some(f), Some(l)) if f > l)
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

#[cfg(test)]
mod tests {
    use super::{fell_behind, parse_snapshot, snapshot_value};

    /// Stream ids compare as (milliseconds, sequence), not as text.
    #[test]
    fn behind_means_the_first_kept_entry_is_newer_than_the_last_applied() {
        assert!(fell_behind("1700000000123-0", "1700000000100-5"));
        assert!(fell_behind("1700000000100-6", "1700000000100-5"));
        assert!(!fell_behind("1700000000100-5", "1700000000100-5"));
        assert!(
            !fell_behind("999-0", "1000-0"),
            "9 < 1 as text, not as a number"
        );
        assert!(
            !fell_behind("1700000000123-0", "0"),
            "a replay from the start"
        );
        assert!(!fell_behind("garbage", "1-0"));
    }

    #[test]
    fn snapshot_values_round_trip() {
        let v = snapshot_value(17, "ip", "over 5x | for 10 s");
        assert_eq!(parse_snapshot(&v), (17, "ip", "over 5x | for 10 s"));
        assert_eq!(parse_snapshot("garbage").0, 0);
    }
}
