//! The preview's projection of 429s per rate-limit tier, pure: from each
//! tier's observed histogram of per-key rates ([`crate::limit_model`]),
//! the refusals a per-key limit of `r` requests/s would make are
//! `Σ_keys max(0, rate_k − r)`; by bin, with the keys of a bin at the
//! bin's mean rate, `Σ_bins max(0, rps_b − keys_b × r)`. That is exact
//! for the bins wholly above or below `r` and a slight underestimate for
//! the one bin (19% wide) that straddles it.
//!
//! Burst is treated as spent: a key sending above its rate for longer than
//! `burst / (rate_k − r)` seconds is refused its excess, which is what
//! GCRA does in a steady state; a key that only spikes above `r` for less
//! than that is refused less than shown (the figure is an upper bound for
//! it). Clients that retry on 429 are not modelled (the rates are what was
//! sent, retries included).

use std::collections::{BTreeMap, BTreeSet};

use edgesteer_config::ratelimit::{LimitScope, LimitTier, RateLimitPolicy};
use edgesteer_control_api::limits::LimitImpact;
use edgesteer_control_api::preview::Unmodeled;

use crate::limit_model::TierObserved;

/// 429s/s a per-key limit of `rate` would make on `t`'s keys.
pub fn refused_per_s(t: &TierObserved, rate: f64) -> f64 {
    t.bins
        .iter()
        .map(|&(_, keys, rps)| (rps - keys * rate).max(0.0))
        .sum()
}

fn tier<'a>(policies: &'a [RateLimitPolicy], policy: &str, tier: &str) -> Option<&'a LimitTier> {
    policies
        .iter()
        .find(|p| p.name == policy)?
        .tiers
        .iter()
        .find(|t| t.name == tier)
}

/// Which requests and keys a policy sees and the tier each falls in,
/// written out to compare: what the model cannot follow when it changes
/// (it knows rates per tier, not keys).
fn keying(p: &RateLimitPolicy) -> String {
    let tiers: Vec<&str> = p.tiers.iter().map(|t| t.name.as_str()).collect();
    let name = |i: &usize| tiers.get(*i).copied().unwrap_or("");
    let keys: BTreeMap<&str, &str> = p.keys.iter().map(|(k, i)| (k.as_str(), name(i))).collect();
    let hashed: BTreeMap<&[u8; 32], &str> =
        p.hashed_keys.iter().map(|(k, i)| (k, name(i))).collect();
    format!(
        "{:?}",
        (
            &p.key,
            &p.hosts,
            &p.path_prefixes,
            tiers.get(p.default_tier),
            keys,
            hashed,
            &tiers
        )
    )
}

/// Every tier that sent traffic in the window or whose limit changes,
/// with its 429s/s now and projected; what cannot be projected goes into
/// `unmodeled`.
pub fn project(
    before: &[RateLimitPolicy],
    after: &[RateLimitPolicy],
    observed: &[TierObserved],
    unmodeled: &mut Vec<Unmodeled>,
) -> Vec<LimitImpact> {
    let seen: BTreeMap<(&str, &str), &TierObserved> = observed
        .iter()
        .map(|t| ((t.policy.as_str(), t.tier.as_str()), t))
        .collect();
    let mut names: BTreeSet<(&str, &str)> = seen.keys().copied().collect();
    for p in before.iter().chain(after) {
        for t in &p.tiers {
            names.insert((&p.name, &t.name));
        }
    }
    let policy_rps = |name: &str| -> f64 {
        observed
            .iter()
            .filter(|t| t.policy == name)
            .map(|t| t.requests_per_s)
            .sum()
    };
    let mut out = Vec::new();
    for (policy, name) in names {
        let (b, a) = (tier(before, policy, name), tier(after, policy, name));
        let changed = b.map(|t| (t.rate, t.burst)) != a.map(|t| (t.rate, t.burst));
        let obs = seen.get(&(policy, name)).copied();
        if !changed && obs.is_none_or(|o| o.requests_per_s <= 0.0) {
            continue;
        }
        let project = |t: Option<&LimitTier>| match (t, obs) {
            (Some(t), Some(o)) => refused_per_s(o, f64::from(t.rate)),
            _ => 0.0,
        };
        out.push(LimitImpact {
            policy: policy.to_string(),
            tier: name.to_string(),
            rate_before: b.map(|t| t.rate),
            rate_after: a.map(|t| t.rate),
            burst_before: b.map(|t| t.burst),
            burst_after: a.map(|t| t.burst),
            requests_per_s: obs.map_or(0.0, |o| o.requests_per_s),
            observed_429_per_s: obs.map_or(0.0, |o| o.refused_per_s),
            before_429_per_s: project(b),
            after_429_per_s: project(a),
            keys_seen: obs.map_or(0.0, |o| o.bins.iter().map(|b| b.1).sum()),
        });
    }
    for p in after {
        let Some(old) = before.iter().find(|o| o.name == p.name) else {
            unmodeled.push(Unmodeled {
                what: format!("new rate-limit policy {}", p.name),
                rps: 0.0,
                why:
                    "its keys' rates are counted only once it exists, so its 429s are not projected"
                        .into(),
            });
            continue;
        };
        let limits_change = old.identity().limits != p.identity().limits;
        if keying(old) != keying(p) || old.scope != p.scope {
            unmodeled.push(Unmodeled {
                what: format!("rate-limit policy {}: which requests and keys fall in which tier", p.name),
                rps: policy_rps(&p.name),
                why: "the proxies report per-key rates by tier, not the keys themselves, so traffic moving between tiers, keys or policies is not known; the figures assume each tier keeps its keys".into(),
            });
        }
        if limits_change && p.scope == LimitScope::Global {
            unmodeled.push(Unmodeled {
                what: format!("global rate-limit policy {}: keys on several proxies", p.name),
                rps: policy_rps(&p.name),
                why: "each proxy reports its own keys' rates, and a global limit counts a key's requests fleet-wide: a key spread over proxies is refused more than shown (a lower bound)".into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
