//! Redis Cluster hash slots for fleet-limit keys, and the 256 buckets the
//! cluster syncer groups keys in.
//!
//! A multi-key `EVAL` on a cluster needs every key in one slot. Grouping
//! keys by their own slot would cost one `EVAL` per key (16,384 slots for
//! a few thousand dirty keys), and one hash tag per policy would put a
//! whole policy on one master. So each limit key goes to one of
//! [`BUCKETS`] buckets by the top byte of its hash, and a bucket is a hash
//! tag: every key of bucket `b`, whatever its policy, hashes to the same
//! slot, inside the slot window `[64 b, 64 b + 63]`. A round sends at most
//! one `EVAL` per bucket (per 500 keys), buckets spread evenly over the
//! masters whatever slot ranges they hold, and the request path finds a
//! key's bucket with a shift (see `StoreStatus::ok_for`).

use std::sync::OnceLock;

/// Hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16_384;
/// Buckets (hash tags) the cluster syncer groups keys in.
pub const BUCKETS: usize = 256;
/// Slots per bucket window.
const WINDOW: u16 = SLOTS / BUCKETS as u16;

/// The bucket of a limit key (an xxh3 hash): its top byte.
#[inline]
pub fn bucket_of(key: u64) -> usize {
    (key >> 56) as usize
}

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key` as Redis computes it: the part between the first `{`
/// and the next `}` when that is not empty (the hash tag), else the key.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let close = rest.iter().position(|&c| c == b'}')?;
        rest.get(..close).filter(|t| !t.is_empty())
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

/// Each bucket's hash tag (with braces) and slot.
pub struct Buckets {
    tags: Vec<String>,
    slots: Vec<u16>,
}

impl Buckets {
    /// The tags, found once: for bucket `b` the first `rl{b}.{n}` whose
    /// slot is in `b`'s window. Every proxy finds the same ones.
    pub fn get() -> &'static Buckets {
        static BUCKET_TAGS: OnceLock<Buckets> = OnceLock::new();
        BUCKET_TAGS.get_or_init(|| {
            let mut tags = Vec::with_capacity(BUCKETS);
            let mut slots = Vec::with_capacity(BUCKETS);
            for b in 0..BUCKETS {
                // About 256 tries per bucket; the bound only guards the loop.
                let found = (0..1_000_000u32).find_map(|n| {
                    let tag = format!("rl{b}.{n}");
                    let slot = key_slot(tag.as_bytes());
                    (usize::from(slot / WINDOW) == b).then_some((tag, slot))
                });
                let (tag, slot) = found.unwrap_or_else(|| {
                    let tag = format!("rl{b}");
                    let slot = key_slot(tag.as_bytes());
                    (tag, slot)
                });
                tags.push(format!("{{{tag}}}"));
                slots.push(slot);
            }
            Buckets { tags, slots }
        })
    }

    /// Bucket `b`'s hash tag, braces included (`{rl7.301}`).
    pub fn tag(&self, b: usize) -> &str {
        self.tags.get(b).map_or("", String::as_str)
    }

    /// Bucket `b`'s slot.
    pub fn slot(&self, b: usize) -> u16 {
        self.slots.get(b).copied().unwrap_or(0)
    }
}

/// Slot ranges as `a-b` (or `a`) text, for logs and the admin API.
pub fn ranges_text(ranges: &[(u16, u16)]) -> Vec<String> {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect()
}

/// The slots of `0..SLOTS` for which `covered` is false, as ranges.
pub fn gaps(covered: &[bool]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut start: Option<u16> = None;
    for slot in 0..SLOTS {
        let hole = !covered.get(usize::from(slot)).copied().unwrap_or(false);
        match (hole, start) {
            (true, None) => start = Some(slot),
            (false, Some(s)) => {
                out.push((s, slot - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, SLOTS - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag hashes the whole key; only the first tag counts.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn every_bucket_lies_in_its_own_slot_window() {
        let b = Buckets::get();
        for i in 0..BUCKETS {
            let slot = b.slot(i);
            assert_eq!(usize::from(slot / WINDOW), i, "bucket {i} at slot {slot}");
            let key = format!("{}:edgesteer:rl:p:0:{:016x}", b.tag(i), 7);
            assert_eq!(key_slot(key.as_bytes()), slot);
        }
        // The same tags on every proxy (and every run).
        assert_eq!(b.tag(0), "{rl0.326}");
        // Three masters with the usual ranges hold 85, 86 and 85 buckets.
        let per = |lo: u16, hi: u16| {
            (0..BUCKETS)
                .filter(|&i| (lo..=hi).contains(&b.slot(i)))
                .count()
        };
        let counts = [per(0, 5460), per(5461, 10922), per(10923, 16383)];
        assert_eq!(counts.iter().sum::<usize>(), BUCKETS);
        assert!(counts.iter().all(|&c| (84..=87).contains(&c)), "{counts:?}");
    }

    #[test]
    fn buckets_come_from_the_top_byte() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(u64::MAX), 255);
        assert_eq!(bucket_of(0x0100_0000_0000_0000), 1);
        assert_eq!(bucket_of(0x00ff_ffff_ffff_ffff), 0);
    }

    #[test]
    fn gaps_are_listed_as_ranges() {
        let mut covered = vec![true; usize::from(SLOTS)];
        assert!(gaps(&covered).is_empty());
        for s in (0..100).chain([500]).chain(16_000..16_384) {
            covered[s] = false;
        }
        let g = gaps(&covered);
        assert_eq!(g, vec![(0, 99), (500, 500), (16_000, 16_383)]);
        assert_eq!(ranges_text(&g), vec!["0-99", "500", "16000-16383"]);
    }
}
