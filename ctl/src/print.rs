//! Human output of the `ctl` reads (table, history, fleet, diff), and the
//! JSON printing every command shares under `--json`.

use edgesteer_control_api::api::{Diff, Fleet, History};
use edgesteer_control_api::client::Versioned;
use serde::Serialize;

/// Prints `v` as pretty JSON with its keys sorted, as the API's answers
/// have always been printed.
pub(super) fn json(v: &impl Serialize) -> anyhow::Result<()> {
    let v = serde_json::to_value(v)?;
    outln!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// A value as JSON text (`1.5`, `2.0`, `null`), the way figures are shown.
pub(super) fn json_text(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

pub(super) fn table(v: &Versioned, as_json: bool, toml: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    if toml {
        out!("{}", edgesteer_config::parse::to_toml(&v.table)?);
        return Ok(());
    }
    let a = &v.audit;
    outln!(
        "version {} ({}), {} by {} at {}{}",
        v.version,
        v.etag,
        a.action,
        a.actor,
        a.at,
        Some(&a.reason)
            .filter(|r| !r.is_empty())
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    outln!(
        "{:<13} {:<5} {:>7} {:<6} {:<24} BACKENDS (weight, track)",
        "REGION",
        "ZONE",
        "CANARY",
        "DRAIN",
        "FAILOVER"
    );
    for (name, r) in &v.table.regions {
        let backends: Vec<String> = r
            .backends
            .iter()
            .map(|b| {
                format!(
                    "{} ({}{})",
                    b.address,
                    b.weight,
                    b.track
                        .as_deref()
                        .map(|t| format!(", {t}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        outln!(
            "{:<13} {:<5} {:>6.1}% {:<6} {:<24} {}",
            name,
            r.zone.as_deref().unwrap_or("-"),
            f64::from(r.canary_bps) / 100.0,
            if r.drain { "yes" } else { "-" },
            r.failover.join(","),
            backends.join("  ")
        );
    }
    Ok(())
}

pub(super) fn history(h: &History, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(h);
    }
    outln!(
        "{:>7}  {:<24}  {:<10} {:<14} REASON / CHANGES",
        "VERSION",
        "WHEN",
        "WHO",
        "ACTION"
    );
    for v in &h.versions {
        let a = &v.audit;
        let first = a.summary.first().map_or("", String::as_str);
        outln!(
            "{:>7}  {:<24}  {:<10} {:<14} {}{}",
            v.version,
            a.at,
            a.actor,
            a.action,
            Some(&a.reason)
                .filter(|r| !r.is_empty())
                .map(|r| format!("{r} | "))
                .unwrap_or_default(),
            if a.summary.len() > 1 {
                format!("{first} (+{} more)", a.summary.len() - 1)
            } else {
                first.to_string()
            }
        );
    }
    Ok(())
}

pub(super) fn fleet(f: &Fleet, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(f);
    }
    let dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    outln!("current version: {}", f.current_version.unwrap_or(0));
    outln!(
        "{:<28} {:>8} {:<9} {:>10}  LAST REJECTION",
        "PROXY",
        "APPLIED",
        "STATUS",
        "SEEN (ms)"
    );
    for p in &f.proxies {
        outln!(
            "{:<28} {:>8} {:<9} {:>10}  {}",
            p.proxy,
            dash(p.applied_version),
            p.last_status.as_deref().unwrap_or("-"),
            dash(p.last_seen_ms_ago),
            p.last_rejection
                .as_deref()
                .map(|r| format!("v{}: {r}", json_text(&p.rejected_version)))
                .unwrap_or_default()
        );
    }
    Ok(())
}

pub(super) fn diff(d: &Diff, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(d);
    }
    outln!("v{} -> v{}", d.from, d.to);
    for line in &d.changes {
        outln!("  {line}");
    }
    Ok(())
}
