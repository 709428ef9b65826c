//! The impact preview's rate-limit model, measured where the limits are
//! kept: while the stats reporter asks for it ([`Limiter::count_usage`]),
//! each key's [`crate::state::Cell`] counts its requests and refusals in
//! one more word, `tier + 1 (8 bits) << 56 | refused (28) << 28 |
//! requests (28)`. The request path adds to it with one relaxed
//! `fetch_add` (and, once per key and tier, one more to set the tier): no
//! lock, no allocation. The reporter ([`Limiter::take_usage`]), off the
//! request path, walks the keys once a second and takes the counts.
//!
//! 2^28 requests of one key between two takes (a second apart) would
//! carry into the refusals; no proxy serves that. Keys past a policy's
//! key cap share cells and are not counted.

use std::sync::atomic::Ordering;

use crate::limiter::{Bound, Limiter};
use crate::tally::take;

impl Limiter {
    /// Starts counting requests per key for the traffic model; until the
    /// stats reporter calls this, the request path skips it.
    pub fn count_usage(&self) {
        self.usage_on.store(true, Ordering::Relaxed);
    }

    /// Whether requests are counted per key.
    #[inline]
    pub(crate) fn counting(&self) -> bool {
        self.usage_on.load(Ordering::Relaxed)
    }

    /// Calls `f(policy, tier, requests, refused)` for every key of
    /// `bound`'s policies that sent requests since the last call, and
    /// resets its counts. Off the request path: it walks every tracked
    /// key once (like a sweep, a read lock per map shard at a time).
    pub fn take_usage(&self, bound: &Bound, mut f: impl FnMut(usize, usize, u64, u64)) {
        for (i, state) in bound.states.iter().enumerate() {
            for cell in state.map.iter() {
                if let Some((tier, requests, refused)) = take(&cell.tally) {
                    f(i, tier, requests, refused);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;
    use std::time::Instant;

    use http::{HeaderMap, HeaderValue};

    use crate::limiter::{Limiter, Outcome, Request};

    #[test]
    fn keys_are_counted_by_tier_with_their_refusals_and_taken_once() {
        let text =
            "default_region = \"a\"\n[regions.a]\nbackends = [{ address = \"127.0.0.1:1\" }]\n\
            [[rate_limits]]\nname = \"api\"\nkey = \"header:x-api-key\"\ndefault_tier = \"free\"\n\
            [rate_limits.tiers.free]\nrate = 2\n[rate_limits.tiers.pro]\nrate = 100\n\
            [rate_limits.keys]\nk-pro = \"pro\"\n";
        let policies = edgesteer_config::load_toml(text).unwrap().1.rate_limits;
        let limiter = Limiter::new();
        let bound = limiter.bind(&policies);
        let now = Instant::now();
        let send = |key: Option<&str>, n: usize| {
            let mut headers = HeaderMap::new();
            if let Some(k) = key {
                headers.insert("x-api-key", HeaderValue::from_str(k).unwrap());
            }
            let req = Request {
                client: "192.0.2.9".parse().unwrap(),
                host: None,
                path: "/",
                headers: &headers,
            };
            (0..n)
                .filter(|_| {
                    matches!(
                        limiter.evaluate(&bound, &policies, &req, now),
                        Outcome::Limited(_)
                    )
                })
                .count()
        };
        // Not counted until asked.
        send(Some("k-pro"), 3);
        let mut seen = BTreeMap::new();
        limiter.take_usage(&bound, |p, t, n, r| {
            seen.insert((p, t), (n, r));
        });
        assert!(seen.is_empty(), "{seen:?}");
        limiter.count_usage();
        assert_eq!(send(Some("k-pro"), 5), 0);
        // Unknown key: the default tier (free, 2/s), per client address.
        assert_eq!(send(None, 7), 5);
        let (pro, free) = (
            policies[0]
                .tiers
                .iter()
                .position(|t| t.name == "pro")
                .unwrap(),
            policies[0]
                .tiers
                .iter()
                .position(|t| t.name == "free")
                .unwrap(),
        );
        limiter.take_usage(&bound, |p, t, n, r| {
            seen.insert((p, t), (n, r));
        });
        assert_eq!(
            seen,
            BTreeMap::from([((0, pro), (5, 0)), ((0, free), (7, 5))])
        );
        seen.clear();
        limiter.take_usage(&bound, |p, t, n, r| {
            seen.insert((p, t), (n, r));
        });
        assert!(seen.is_empty(), "taken once: {seen:?}");
    }
}
