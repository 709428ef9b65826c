//! The `ctl` writes that edit the current table and put it back
//! (`set-limit`, `set-key`, with `If-Match`), and the report after every
//! write: the new version, its audit, and how much of the fleet applied it.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use edgesteer_config::wire::RateLimitSpec;
use edgesteer_config::TableSpec;
use edgesteer_control_api::api::Audit;
use edgesteer_control_api::client::{Client, Versioned};
use serde::Serialize;

// The arguments of `ctl set-limit` (its help is the variant's doc comment).
#[derive(Args, Debug)]
pub(super) struct SetLimit {
    policy: String,
    /// Requests per second.
    #[arg(long)]
    rate: Option<u32>,
    #[arg(long)]
    burst: Option<u32>,
    /// The tier to change, for tiered policies.
    #[arg(long)]
    tier: Option<String>,
    #[arg(long, default_value = "")]
    reason: String,
    /// Show what the change would do to traffic; commit nothing.
    #[arg(long)]
    preview: bool,
}

// The arguments of `ctl set-key`.
#[derive(Args, Debug)]
pub(super) struct SetKey {
    policy: String,
    key: String,
    /// Tier name (required unless --remove).
    tier: Option<String>,
    #[arg(long)]
    remove: bool,
    /// Store only the key's SHA-256 (`sha256:<hex>`), so the table, the
    /// config service and the proxies never hold the key itself.
    #[arg(long)]
    hash: bool,
    #[arg(long, default_value = "")]
    reason: String,
}

pub(super) async fn set_limit(c: &Client, as_json: bool, a: SetLimit) -> anyhow::Result<()> {
    let current = c.get().await?;
    let mut spec = current.table;
    let p = policy_mut(&mut spec, &a.policy)?;
    let policy = &a.policy;
    match a.tier {
        None if !p.tiers.is_empty() => anyhow::bail!(
            "policy {policy} has tiers ({}); name one with --tier",
            p.tiers.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        None => {
            if a.rate.is_some() {
                p.rate = a.rate;
            }
            if a.burst.is_some() {
                p.burst = a.burst;
            }
        }
        Some(t) => {
            let names = p.tiers.keys().cloned().collect::<Vec<_>>().join(", ");
            let tier = p
                .tiers
                .get_mut(&t)
                .with_context(|| format!("policy {policy} has no tier {t}; tiers: {names}"))?;
            if let Some(r) = a.rate {
                tier.rate = r;
            }
            if a.burst.is_some() {
                tier.burst = a.burst;
            }
        }
    }
    if a.preview {
        return super::preview::table(c, as_json, spec).await;
    }
    let v = c.put(&spec, &a.reason, Some(current.version)).await?;
    written(c, as_json, v).await
}

pub(super) async fn set_key(c: &Client, as_json: bool, a: SetKey) -> anyhow::Result<()> {
    let current = c.get().await?;
    let mut spec = current.table;
    let p = policy_mut(&mut spec, &a.policy)?;
    let hashed = edgesteer_config::ratelimit::hashed_key(&a.key);
    let plain = a.key;
    let key = if a.hash {
        hashed.clone()
    } else {
        plain.clone()
    };
    match (a.remove, a.tier) {
        (true, _) => {
            // Either spelling of the key goes.
            let had = p.keys.remove(&plain).is_some() | p.keys.remove(&hashed).is_some();
            anyhow::ensure!(had, "that key is not in policy {}", a.policy);
        }
        (false, Some(t)) => {
            // One spelling per key: the service stores a plain key hashed,
            // so a key moved to another tier replaces whichever is there.
            p.keys.remove(&hashed);
            p.keys.remove(&plain);
            p.keys.insert(key, t);
        }
        (false, None) => anyhow::bail!("name the tier (or pass --remove)"),
    }
    let v = c.put(&spec, &a.reason, Some(current.version)).await?;
    written(c, as_json, v).await
}

fn policy_mut<'a>(spec: &'a mut TableSpec, name: &str) -> anyhow::Result<&'a mut RateLimitSpec> {
    let names: Vec<String> = spec.rate_limits.iter().map(|p| p.name.clone()).collect();
    spec.rate_limits
        .iter_mut()
        .find(|p| p.name == name)
        .with_context(|| {
            format!(
                "no rate-limit policy {name}; policies: {}",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
}

/// What `--json` prints after a write.
#[derive(Serialize)]
struct Written<'a> {
    version: u64,
    audit: &'a Audit,
    applied_by: usize,
    proxies: usize,
}

/// After a write: print it, then wait (up to 5 s) for the fleet to apply it.
pub(super) async fn written(c: &Client, as_json: bool, v: Versioned) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut applied = (0, 0);
    while start.elapsed() < Duration::from_secs(5) {
        let fleet = c.fleet().await?;
        let watching: Vec<_> = fleet.proxies.iter().filter(|p| p.watching).collect();
        let done = watching
            .iter()
            .filter(|p| p.applied_version.is_some_and(|a| a >= v.version))
            .count();
        applied = (done, watching.len());
        if done == watching.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if as_json {
        return super::print::json(&Written {
            version: v.version,
            audit: &v.audit,
            applied_by: applied.0,
            proxies: applied.1,
        });
    }
    outln!("version {} committed by {}", v.version, v.audit.actor);
    for line in &v.audit.summary {
        outln!("  {line}");
    }
    outln!(
        "applied by {}/{} watching proxies after {} ms",
        applied.0,
        applied.1,
        start.elapsed().as_millis()
    );
    Ok(())
}

/// Refuses a table that would change a running or paused rollout: a file
/// exported before the controller moved would set it back (or end it).
pub(super) fn keeps_rollouts(
    current: &edgesteer_config::TableSpec,
    new: &edgesteer_config::TableSpec,
) -> anyhow::Result<()> {
    for (name, region) in &current.regions {
        let Some(ro) = region.rollout.as_ref() else {
            continue;
        };
        if !matches!(ro.state.as_str(), "running" | "paused") {
            continue;
        }
        if new.regions.get(name).and_then(|r| r.rollout.as_ref()) != Some(ro) {
            anyhow::bail!(
                "the file would change the {} rollout in {name} (now at step {}); \
                 take the current table (`ctl get --toml`), or pass --force",
                ro.state,
                ro.step + 1
            );
        }
    }
    Ok(())
}
