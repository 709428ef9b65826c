//! Rate-limit policies as compiled from `rate_limits` in the table. The
//! limiter itself (state, GCRA, Redis) lives in `edgesteer-ratelimit`; this
//! module only owns what a policy *says*, validated.
//!
//! - `policy`: the compiled [`RateLimitPolicy`] and what it matches.
//! - `compile`: `rate_limits` -> policies, one section per file:
//!   `key` (key source, scope, store failure), `tiers` (tiers, default
//!   tier, key map), `reach` (hosts, path prefixes, key cap, abuse).
//! - `path`: the lenient path form prefixes are matched in.
//! - `hash`: `sha256:` keys.

mod compile;
mod hash;
mod key;
mod path;
mod policy;
mod reach;
pub use reach::MAX_BLOCK_S;
mod tiers;
pub use tiers::{MAX_BURST, MAX_TIER_NAME};

pub(crate) use compile::compile_policies;
pub use hash::{hashed_key, sha256};
pub use path::normalize_path;
pub use policy::{
    AbuseSettings, LimitKey, LimitScope, LimitTier, PolicyIdentity, RateLimitPolicy, StoreFailure,
    DEFAULT_BLOCK, DEFAULT_MAX_KEYS, MAX_POLICIES, MAX_RATE, MAX_TIERS,
};

#[cfg(test)]
mod tests;
