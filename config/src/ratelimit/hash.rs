//! Hashed API keys: `sha256:<hex>` entries let a table name a key without
//! holding it.

/// SHA-256 of an API key, as `sha256:` entries store it.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The `sha256:<hex>` form of an API key for the table.
pub fn hashed_key(key: &str) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in sha256(key.as_bytes()) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The 32 bytes of 64 hex digits, or `None`. Only hex digits: the
/// `from_str_radix` below would also take a sign (`+f`).
pub(crate) fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the oracle of `fuzz/fuzz_targets/keys.rs` expects:
    /// `u8::from_str_radix` takes a leading `+`, so `sha256:+f+f...` was
    /// read as a hash instead of being refused as a malformed key.
    #[test]
    fn only_hex_digits_make_a_hash() {
        assert_eq!(parse_sha256(&"+f".repeat(32)), None);
        assert_eq!(parse_sha256(&"0g".repeat(32)), None);
        assert_eq!(parse_sha256(&"ab".repeat(31)), None);
        assert_eq!(parse_sha256(&"aB".repeat(32)), Some([0xab; 32]));
        let k = hashed_key("cg-demo-pro");
        assert_eq!(
            parse_sha256(&k["sha256:".len()..]),
            Some(sha256(b"cg-demo-pro"))
        );
    }
}
