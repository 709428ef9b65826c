//! API keys of tiered rate-limit policies: plain and `sha256:` entries.
//!
//! Input (structured): the key map of a policy, each key written plain,
//! as its `sha256:` form, or as any `sha256:`-looking string, and probe
//! keys. A refused table names the field; an accepted one answers
//! `tier_of` for every key exactly as an independent reading of the map
//! says (plain entries first, then hashes of 64 hex digits).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use edgesteer_config::ratelimit::{hashed_key, sha256};
use edgesteer_config::wire::{RateLimitSpec, TierSpec};
use edgesteer_fuzz::check_errors;
use libfuzzer_sys::fuzz_target;

const TIERS: [&str; 3] = ["free", "pro", "enterprise"];

#[derive(Arbitrary, Debug)]
enum Written {
    Plain,
    Hashed,
    /// `sha256:` followed by this text as is.
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    keys: Vec<(String, Written, u8)>,
    probes: Vec<String>,
}

/// 64 hex digits -> 32 bytes, written apart from the code under test.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 || !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let v = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = v(b[2 * i])? * 16 + v(b[2 * i + 1])?;
    }
    Some(out)
}

fuzz_target!(|input: Input| {
    let mut spec = edgesteer_config::parse::from_toml(
        "default_region = \"a\"\n[regions.a]\nbackends = [{ address = \"127.0.0.1:1\" }]\n",
    )
    .unwrap();
    let mut map = BTreeMap::new();
    for (k, how, tier) in &input.keys {
        let written = match how {
            Written::Plain => k.clone(),
            Written::Hashed => {
                let h = hashed_key(k);
                assert_eq!(h.len(), 71);
                assert!(h[7..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
                h
            }
            Written::Raw(s) => format!("sha256:{s}"),
        };
        map.insert(written, TIERS[usize::from(*tier) % 3].to_string());
    }
    spec.rate_limits.push(RateLimitSpec {
        name: "api".into(),
        key: "header:x-api-key".into(),
        tiers: TIERS
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    TierSpec {
                        rate: 10,
                        burst: None,
                    },
                )
            })
            .collect(),
        default_tier: Some("free".into()),
        keys: map.clone(),
        ..RateLimitSpec::default()
    });
    let table = match edgesteer_config::compile(&spec) {
        Ok(t) => t,
        Err(e) => {
            check_errors(&e);
            for f in e.errors() {
                assert!(f.path.starts_with("rate_limits[0].keys"), "{f:?}");
            }
            return;
        }
    };
    let p = &table.rate_limits[0];
    let mut plain = BTreeMap::new();
    let mut hashed = BTreeMap::new();
    for (k, tier) in &map {
        match k.strip_prefix("sha256:") {
            Some(hex) => {
                // Anything else after `sha256:` must have been refused.
                let h = hex32(hex).unwrap_or_else(|| panic!("accepted bad hash key {k:?}"));
                hashed.insert(h, tier);
            }
            None => {
                plain.insert(k.as_str(), tier);
            }
        }
    }
    let probes = input.keys.iter().map(|(k, _, _)| k).chain(&input.probes);
    for k in probes {
        let want = plain
            .get(k.as_str())
            .or_else(|| hashed.get(&sha256(k.as_bytes())))
            .copied();
        let got = p.tier_of(k).map(|i| p.tiers[i].name.as_str());
        assert_eq!(got, want.map(String::as_str), "tier of {k:?}");
    }
});
