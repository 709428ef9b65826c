//! A policy's limits: one `rate`/`burst`, or named tiers with a default
//! tier and a map of known (or `sha256:`-hashed) keys to tiers.

use std::collections::HashMap;

use super::hash::parse_sha256;
use super::policy::{LimitKey, LimitTier, MAX_RATE, MAX_TIERS};
use crate::check::Errors;

/// Largest burst a policy or tier may allow.
pub const MAX_BURST: u32 = 100_000_000;
/// The longest tier name.
pub const MAX_TIER_NAME: usize = 256;
use crate::wire::RateLimitSpec;

/// The limits section of one policy.
pub(crate) struct Tiers {
    pub tiers: Vec<LimitTier>,
    pub default_tier: usize,
    pub keys: HashMap<String, usize>,
    pub hashed_keys: HashMap<[u8; 32], usize>,
}

pub(crate) fn tiers(
    path: &str,
    p: &RateLimitSpec,
    key: Option<&LimitKey>,
    errs: &mut Errors,
) -> Tiers {
    let single = p.rate.is_some() || p.burst.is_some();
    let tiers = if single {
        single_limit(path, p, errs)
    } else {
        named_tiers(path, p, errs)
    };
    let tier_ids: HashMap<&str, usize> = if single {
        HashMap::new()
    } else {
        p.tiers
            .keys()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect()
    };
    let default_tier = default_tier(path, p, single, &tier_ids, errs);
    let (keys, hashed_keys) = key_map(path, p, &tier_ids, errs);
    errs.check(
        p.keys.is_empty() || key != Some(&LimitKey::ClientIp),
        format!("{path}.keys"),
        "a `client_ip` policy has no key map",
    );
    Tiers {
        tiers,
        default_tier,
        keys,
        hashed_keys,
    }
}

/// `rate` (and `burst`): one tier named `default`.
fn single_limit(path: &str, p: &RateLimitSpec, errs: &mut Errors) -> Vec<LimitTier> {
    let mut tiers = Vec::new();
    errs.check(
        p.tiers.is_empty() && p.default_tier.is_none() && p.keys.is_empty(),
        format!("{path}.rate"),
        "write either `rate`/`burst` (one limit) or `tiers`/`default_tier`/`keys`, not both",
    );
    match p.rate {
        Some(r) if (1..=MAX_RATE).contains(&r) => {
            tiers.push(LimitTier::new("default", r, p.burst.unwrap_or(r).max(1)))
        }
        Some(_) => errs.push(
            format!("{path}.rate"),
            format!("must be 1 to {MAX_RATE} requests per second"),
        ),
        None => errs.push(format!("{path}.rate"), "is required when `burst` is set"),
    }
    burst_in_range(format!("{path}.burst"), p.burst, errs);
    tiers
}

/// A burst is at least 1 and at most [`MAX_BURST`] (a pushed table must
/// not ask for an unbounded allowance).
fn burst_in_range(path: String, burst: Option<u32>, errs: &mut Errors) {
    match burst {
        Some(0) => errs.push(path, "must be at least 1"),
        Some(b) if b > MAX_BURST => errs.push(path, format!("{b} is over the maximum {MAX_BURST}")),
        _ => {}
    }
}

/// `tiers`: named limits, in name order.
fn named_tiers(path: &str, p: &RateLimitSpec, errs: &mut Errors) -> Vec<LimitTier> {
    errs.check(
        !p.tiers.is_empty(),
        format!("{path}.tiers"),
        "give `rate` (and `burst`) or at least one tier",
    );
    errs.check(
        p.tiers.len() <= MAX_TIERS,
        format!("{path}.tiers"),
        format!("{} tiers; at most {MAX_TIERS}", p.tiers.len()),
    );
    let mut tiers = Vec::with_capacity(p.tiers.len());
    for (name, t) in &p.tiers {
        // Proxies report usage by tier name; the config service refuses a
        // report with a longer one (edgesteer_control_api::report).
        errs.check(
            !name.is_empty() && name.len() <= MAX_TIER_NAME,
            format!("{path}.tiers.{name}"),
            format!("a tier name is 1 to {MAX_TIER_NAME} bytes"),
        );
        errs.check(
            (1..=MAX_RATE).contains(&t.rate),
            format!("{path}.tiers.{name}.rate"),
            format!("must be 1 to {MAX_RATE} requests per second"),
        );
        burst_in_range(format!("{path}.tiers.{name}.burst"), t.burst, errs);
        tiers.push(LimitTier::new(
            name,
            t.rate.max(1),
            t.burst.unwrap_or(t.rate).max(1),
        ));
    }
    tiers
}

/// The tier for unknown and missing keys.
fn default_tier(
    path: &str,
    p: &RateLimitSpec,
    single: bool,
    tier_ids: &HashMap<&str, usize>,
    errs: &mut Errors,
) -> usize {
    match (&p.default_tier, single) {
        (_, true) => 0,
        (Some(t), false) => match tier_ids.get(t.as_str()) {
            Some(&i) => i,
            None => {
                errs.push(
                    format!("{path}.default_tier"),
                    format!("unknown tier `{t}`; tiers: {}", tier_names(p)),
                );
                0
            }
        },
        (None, false) if p.tiers.len() == 1 => 0,
        (None, false) => {
            errs.push(
                format!("{path}.default_tier"),
                format!(
                    "required with several tiers; choose one of: {}",
                    tier_names(p)
                ),
            );
            0
        }
    }
}

fn tier_names(p: &RateLimitSpec) -> String {
    p.tiers.keys().cloned().collect::<Vec<_>>().join(", ")
}

type KeyMaps = (HashMap<String, usize>, HashMap<[u8; 32], usize>);

/// `keys`: plain and hashed keys -> tier index.
fn key_map(
    path: &str,
    p: &RateLimitSpec,
    tier_ids: &HashMap<&str, usize>,
    errs: &mut Errors,
) -> KeyMaps {
    let mut keys = HashMap::with_capacity(p.keys.len());
    let mut hashed_keys = HashMap::new();
    for (k, t) in &p.keys {
        let Some(&i) = tier_ids.get(t.as_str()) else {
            errs.push(
                format!("{path}.keys.{k}"),
                format!("unknown tier `{t}`; tiers: {}", tier_names(p)),
            );
            continue;
        };
        match k.strip_prefix("sha256:") {
            Some(hex) => match parse_sha256(hex) {
                Some(h) => {
                    hashed_keys.insert(h, i);
                }
                None => errs.push(
                    format!("{path}.keys.{k}"),
                    "a hashed key is `sha256:` and 64 hex digits (`edgesteer ctl set-key --hash` writes one)",
                ),
            },
            None => {
                keys.insert(k.clone(), i);
            }
        }
    }
    (keys, hashed_keys)
}
