//! The 429 projection on its own: per-key excess summed by rate bin,
//! before and after a limit change, and what it says it cannot model.

use edgesteer_config::ratelimit::RateLimitPolicy;
use edgesteer_control_api::limits::TierUsage;

use super::*;

fn policies(limits: &str) -> Vec<RateLimitPolicy> {
    let text = format!(
        "default_region = \"a\"\n[regions.a]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n{limits}"
    );
    edgesteer_config::load_toml(&text).unwrap().1.rate_limits
}

fn api(pro_rate: u32, scope: &str) -> Vec<RateLimitPolicy> {
    policies(&format!(
        "[[rate_limits]]\nname = \"api\"\nkey = \"header:x-api-key\"\nscope = \"{scope}\"\n\
         default_tier = \"free\"\n[rate_limits.tiers.free]\nrate = 2\n\
         [rate_limits.tiers.pro]\nrate = {pro_rate}\n[rate_limits.keys]\nk-a = \"pro\"\nk-b = \"pro\"\n"
    ))
}

/// A tier observed for 10 one-second reports of keys at these rates.
fn observed(rates: &[u64]) -> TierObserved {
    let mut t = TierUsage::default();
    for _ in 0..10 {
        for &n in rates {
            t.add_key(n, 0, 1000);
        }
    }
    TierObserved {
        policy: "api".into(),
        tier: "pro".into(),
        requests_per_s: t.requests as f64 / 10.0,
        refused_per_s: 0.0,
        bins: t
            .bins
            .iter()
            .map(|b| (b.bin, b.key_ms as f64 / 10_000.0, b.requests as f64 / 10.0))
            .collect(),
    }
}

#[test]
fn refusals_are_each_keys_excess_over_the_new_rate() {
    // Keys at 20/s and 5/s: a limit of 10 refuses 10/s (A's excess).
    let t = observed(&[20, 5]);
    assert!((refused_per_s(&t, 100.0)).abs() < 1e-9);
    assert!((refused_per_s(&t, 10.0) - 10.0).abs() < 1e-9);
    assert!((refused_per_s(&t, 4.0) - (16.0 + 1.0)).abs() < 1e-9);
    assert!((refused_per_s(&t, 1.0) - (19.0 + 4.0)).abs() < 1e-9);
    // A key that wobbles 19..21 around 20: its mean excess over 10.
    let t = observed(&[19, 21, 20, 5]);
    assert!((refused_per_s(&t, 10.0) - 30.0).abs() < 1e-9);
    // Straddling bin: keys at 10 and 11 share [9.51, 11.31); a limit of
    // 10.5 gets the bin's mean excess (0), not the exact 0.5: the bias is
    // bounded by the bin's width.
    let t = observed(&[10, 11]);
    assert!(refused_per_s(&t, 10.5) <= 0.5 + 1e-9);
}

#[test]
fn a_set_limit_projects_the_tier_before_and_after() {
    let mut unmodeled = Vec::new();
    let obs = [observed(&[20, 5])];
    let out = project(&api(100, "local"), &api(10, "local"), &obs, &mut unmodeled);
    // Only "pro": "free" neither changes nor sent traffic.
    assert_eq!(out.len(), 1, "{out:#?}");
    let pro = out.iter().find(|l| l.tier == "pro").unwrap();
    assert_eq!((pro.rate_before, pro.rate_after), (Some(100), Some(10)));
    assert_eq!((pro.burst_before, pro.burst_after), (Some(100), Some(10)));
    assert!(pro.before_429_per_s.abs() < 1e-9, "{pro:?}");
    assert!((pro.after_429_per_s - 10.0).abs() < 1e-9, "{pro:?}");
    assert!((pro.requests_per_s - 25.0).abs() < 1e-9);
    assert!((pro.keys_seen - 2.0).abs() < 1e-9);
    assert!(unmodeled.is_empty(), "{unmodeled:#?}");
}

#[test]
fn what_the_model_cannot_follow_is_said() {
    let mut unmodeled = Vec::new();
    let obs = [observed(&[20])];
    // A key moved to another tier, on a global policy whose limit changes,
    // and a new policy.
    let mut after = api(10, "global");
    after[0].keys.insert("k-c".into(), 0);
    after.extend(policies(
        "[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 5\n",
    ));
    let out = project(&api(100, "global"), &after, &obs, &mut unmodeled);
    let whats: Vec<&str> = unmodeled.iter().map(|u| u.what.as_str()).collect();
    assert_eq!(whats.len(), 3, "{unmodeled:#?}");
    assert!(
        whats.iter().any(|w| w.contains("new rate-limit policy ip")),
        "{whats:?}"
    );
    assert!(
        whats.iter().any(|w| w.contains("which requests and keys")),
        "{whats:?}"
    );
    assert!(
        whats.iter().any(|w| w.contains("keys on several proxies")),
        "{whats:?}"
    );
    // The new policy's tier is listed (its limit is new), with no traffic.
    let ip = out.iter().find(|l| l.policy == "ip").unwrap();
    assert_eq!((ip.rate_before, ip.rate_after), (None, Some(5)));
    assert_eq!(ip.after_429_per_s, 0.0);
}
