//! The release-track assignment as docs/design.md documents it, written
//! out independently of `edgesteer_config::route` so tests can check the
//! proxies against it rather than against the code under test.

/// The documented sticky assignment, written out from docs/design.md
/// rather than called: FNV-1a over salt, 0xff, key; the murmur3 64-bit
/// finaliser; then multiply-shift onto 10,000 buckets.
pub fn documented_bucket(salt: &str, key: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in salt.as_bytes().iter().chain(&[0xff]).chain(key.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    ((u128::from(h) * 10_000) >> 64) as u32
}
