//! Which requests and clients a policy reaches: path prefixes, the cap on
//! tracked keys, and abuse blocking (client-IP policies only).

use std::time::Duration;

use super::policy::{AbuseSettings, LimitKey, DEFAULT_BLOCK, DEFAULT_MAX_KEYS};
use crate::check::Errors;
use crate::wire::RateLimitSpec;

/// Every path prefix must be absolute.
pub(crate) fn path_prefixes(path: &str, p: &RateLimitSpec, errs: &mut Errors) {
    for (j, prefix) in p.path_prefixes.iter().enumerate() {
        errs.check(
            prefix.starts_with('/'),
            format!("{path}.path_prefixes[{j}]"),
            format!("`{prefix}` must start with '/'"),
        );
    }
}

/// Most keys a policy may track (memory is bounded by it).
pub const MAX_MAX_KEYS: u32 = 10_000_000;

pub(crate) fn max_keys(path: &str, p: &RateLimitSpec, errs: &mut Errors) -> u32 {
    let max_keys = p.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    errs.check(
        max_keys != 0,
        format!("{path}.max_keys"),
        "must be at least 1",
    );
    errs.check(
        max_keys <= MAX_MAX_KEYS,
        format!("{path}.max_keys"),
        format!("{max_keys} is over the maximum {MAX_MAX_KEYS} (about 66 MB per million keys)"),
    );
    max_keys.min(MAX_MAX_KEYS)
}

/// The longest block, by the abuse rule or from the fleet: 30 days.
pub const MAX_BLOCK_S: u32 = 30 * 86_400;

pub(crate) fn abuse(
    path: &str,
    p: &RateLimitSpec,
    key: Option<&LimitKey>,
    errs: &mut Errors,
) -> Option<AbuseSettings> {
    let a = p.abuse.as_ref()?;
    errs.check(
        key == Some(&LimitKey::ClientIp),
        format!("{path}.abuse"),
        "abuse blocking needs `key = \"client_ip\"` (it blocks addresses)",
    );
    errs.check(
        a.multiple >= 1,
        format!("{path}.abuse.multiple"),
        "must be at least 1",
    );
    errs.in_range(
        format!("{path}.abuse.for_s"),
        Some(a.for_s),
        1..=3600,
        " seconds",
    );
    // At most 30 days, as a block made by hand through the admin API.
    errs.in_range(
        format!("{path}.abuse.block_s"),
        a.block_s,
        1..=MAX_BLOCK_S,
        " seconds (30 days at most)",
    );
    Some(AbuseSettings {
        multiple: a.multiple.max(1),
        for_secs: a.for_s.max(1),
        block: a
            .block_s
            .map_or(DEFAULT_BLOCK, |s| Duration::from_secs(u64::from(s))),
    })
}
