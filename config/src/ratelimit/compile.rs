//! `rate_limits` -> [`RateLimitPolicy`] list: the policy count and unique
//! names here, each policy's sections in `key`, `tiers` and `reach`. A
//! policy with any broken rule is left out (its errors fail the table).

use std::collections::HashMap;

use super::key::{key_source, KeySource};
use super::policy::{RateLimitPolicy, MAX_POLICIES};
use super::reach::{abuse, max_keys, path_prefixes};
use super::tiers::tiers;
use crate::check::Errors;
use crate::wire::{RateLimitSpec, TableSpec};

/// Compiles every policy of `spec`, recording broken rules in `errs`.
pub(crate) fn compile_policies(spec: &TableSpec, errs: &mut Errors) -> Vec<RateLimitPolicy> {
    let mut out = Vec::with_capacity(spec.rate_limits.len());
    errs.check(
        spec.rate_limits.len() <= MAX_POLICIES,
        "rate_limits",
        format!(
            "{} policies; at most {MAX_POLICIES} (each one is checked on every request it matches)",
            spec.rate_limits.len()
        ),
    );
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, p) in spec.rate_limits.iter().enumerate() {
        let path = format!("rate_limits[{i}]");
        if let Some(prev) = seen.insert(p.name.as_str(), i) {
            errs.push(
                format!("{path}.name"),
                format!(
                    "`{}` is already the name of rate_limits[{prev}]; names are unique",
                    p.name
                ),
            );
        }
        if let Some(policy) = compile_policy(&path, p, errs) {
            out.push(policy);
        }
    }
    out
}

/// One policy at `path` (`rate_limits[i]`), sections in the order the
/// errors are reported.
fn compile_policy(path: &str, p: &RateLimitSpec, errs: &mut Errors) -> Option<RateLimitPolicy> {
    let before = errs.len();
    errs.name(format!("{path}.name"), &p.name);
    let KeySource {
        key,
        scope,
        on_store_error,
    } = key_source(path, p, errs);
    let tiers = tiers(path, p, key.as_ref(), errs);
    path_prefixes(path, p, errs);
    let max_keys = max_keys(path, p, errs);
    let abuse = abuse(path, p, key.as_ref(), errs);
    if errs.len() > before {
        return None;
    }
    Some(RateLimitPolicy {
        name: p.name.clone(),
        key: key?,
        scope,
        on_store_error,
        response_headers: p.response_headers,
        hosts: p.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        path_prefixes: p.path_prefixes.clone(),
        tiers: tiers.tiers,
        default_tier: tiers.default_tier,
        keys: tiers.keys,
        hashed_keys: tiers.hashed_keys,
        max_keys,
        abuse,
    })
}
