//! `--preview` on the `ctl` writes: the change is sent to
//! `POST /v1/preview` instead of being written, and what it would do to
//! the fleet's traffic is printed. Nothing is committed.

use edgesteer_config::TableSpec;
use edgesteer_control_api::api::PatchRegion;
use edgesteer_control_api::client::Client;
use edgesteer_control_api::preview::{Preview, PreviewRequest};

/// Previews a region change.
pub(super) async fn patch(
    c: &Client,
    as_json: bool,
    region: &str,
    change: PatchRegion,
) -> anyhow::Result<()> {
    let req = PreviewRequest {
        table: None,
        region: Some(region.to_string()),
        patch: Some(change),
        window_s: None,
    };
    show(&c.preview(&req).await?, as_json)
}

/// Previews a whole table.
pub(super) async fn table(c: &Client, as_json: bool, spec: TableSpec) -> anyhow::Result<()> {
    let req = PreviewRequest {
        table: Some(spec),
        region: None,
        patch: None,
        window_s: None,
    };
    show(&c.preview(&req).await?, as_json)
}

fn show(p: &Preview, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return super::print::json(p);
    }
    outln!(
        "preview against version {} (nothing was committed): {} requests from {} {} in the last {} s, {:.1} requests/s modeled",
        p.version,
        p.requests_seen,
        p.proxies,
        if p.proxies == 1 { "proxy" } else { "proxies" },
        p.window_s,
        p.total_rps
    );
    if p.moves.is_empty() {
        outln!("no traffic changes region");
    } else {
        outln!("moves:");
        for m in &p.moves {
            outln!(
                "  {:<14} -> {:<14} {:>9.1} req/s  {:>5.1}%",
                m.from,
                m.to,
                m.rps,
                m.share * 100.0
            );
        }
    }
    if !p.countries.is_empty() {
        outln!("countries that change region:");
        for c in p.countries.iter().take(20) {
            let who = match (&c.country[..], &c.pin) {
                ("", None) => "(unknown)".to_string(),
                (country, None) => country.to_string(),
                (country, Some(pin)) => format!("{country} via {pin}"),
            };
            outln!("  {who:<24} {} -> {}  {:.1} req/s", c.from, c.to, c.rps);
        }
        if p.countries.len() > 20 {
            outln!("  ... and {} more", p.countries.len() - 20);
        }
    }
    outln!("regions (req/s before -> after, canary bps):");
    for (name, r) in &p.regions {
        let canary = if r.canary_bps_before == r.canary_bps_after {
            format!("canary {}", r.canary_bps_before)
        } else {
            format!("canary {} -> {}", r.canary_bps_before, r.canary_bps_after)
        };
        let capacity = r
            .capacity
            .map(|c| format!("  capacity {c:.0}"))
            .unwrap_or_default();
        outln!(
            "  {name:<14} {:>9.1} -> {:>9.1}  {canary}{capacity}{}",
            r.before_rps,
            r.after_rps,
            r.capacity_warning
                .as_ref()
                .map(|w| format!("  WARNING: {w}"))
                .unwrap_or_default()
        );
    }
    outln!("zone crossings: {:.1} req/s", p.zone_crossings);
    if !p.limits.is_empty() {
        outln!("rate limits (429/s: now, then projected before -> after):");
        for l in &p.limits {
            let limit = |rate: Option<u32>, burst: Option<u32>| match (rate, burst) {
                (Some(r), Some(b)) => format!("{r}/s burst {b}"),
                _ => "none".to_string(),
            };
            let (before, after) = (
                limit(l.rate_before, l.burst_before),
                limit(l.rate_after, l.burst_after),
            );
            let change = if before == after {
                format!("limit {before}")
            } else {
                format!("limit {before} -> {after}")
            };
            outln!(
                "  {}/{:<12} {:>9.1} req/s from {:.1} keys on average  429/s {:.1}, {:.1} -> {:.1}  {change}",
                l.policy,
                l.tier,
                l.requests_per_s,
                l.keys_seen,
                l.observed_429_per_s,
                l.before_429_per_s,
                l.after_429_per_s
            );
        }
    }
    for u in &p.unmodeled {
        outln!("not modeled: {} ({:.1} req/s): {}", u.what, u.rps, u.why);
    }
    Ok(())
}
