//! `edgesteer ctl`: the ops CLI over the config service API. Output is for
//! people by default and JSON with `--json`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use edgesteer_control::client::{Client, Versioned};
use serde_json::{json, Value};

/// Where the demo's config service listens; `ctl` talks to it by default.
pub const DEMO_CONTROL: &str = "http://127.0.0.1:9300";

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// Config service URL.
    #[arg(long, env = "EDGESTEER_CONTROL", default_value = DEMO_CONTROL)]
    control: String,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: CtlCommand,
}

#[derive(Subcommand, Debug)]
enum CtlCommand {
    /// Show the current table (regions, weights, canary, drain).
    Get {
        /// Print the whole table as TOML.
        #[arg(long)]
        toml: bool,
    },
    /// Replace the table with a file (TOML or JSON).
    Apply {
        file: PathBuf,
        #[arg(long, default_value = "")]
        reason: String,
        /// Only apply if the current version is still this one.
        #[arg(long)]
        if_match: Option<u64>,
    },
    /// Set one backend's weight (0 drains it).
    SetWeight {
        region: String,
        backend: String,
        weight: u32,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Set a region's canary share in basis points (0-10000).
    SetCanary {
        region: String,
        bps: u32,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Drain a region to its failover list (or bring it back with --undo).
    Shift {
        region: String,
        #[arg(long)]
        undo: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Change a rate-limit policy's rate/burst (of one tier with --tier).
    SetLimit {
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
    },
    /// Put an API key in a tier of a policy (or remove it with --remove).
    SetKey {
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
    },
    /// Make an earlier version current again (as a new version).
    Rollback {
        version: u64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Recent versions with who, when, what and why.
    History {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Every watching proxy and the version it runs.
    Fleet,
    /// Progressive canary rollouts: start, pause, resume, abort, status.
    Rollout {
        #[command(subcommand)]
        cmd: RolloutCmd,
    },
    /// Where a client would be routed right now, and why (asks a proxy's admin listener).
    Explain {
        /// Client address.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// Host header (for pins).
        #[arg(long)]
        host: Option<String>,
        /// Sticky key (e.g. the X-Api-Key value).
        #[arg(long)]
        key: Option<String>,
        /// The proxy's admin listener.
        #[arg(long, env = "EDGESTEER_ADMIN", default_value = "http://127.0.0.1:9090")]
        admin: String,
    },
    /// What changed between two versions (default: the last change).
    Diff {
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum RolloutCmd {
    /// Start a rollout; default plan 5% -> 10% -> 25% -> 50% -> 100%, 60 s each.
    Start {
        region: String,
        /// Steps as BPS:SECONDS, comma-separated (e.g. 500:60,1000:60,10000:60).
        #[arg(long)]
        steps: Option<String>,
        #[arg(long)]
        max_error_rate: Option<f64>,
        #[arg(long)]
        max_p99_ratio: Option<f64>,
        #[arg(long)]
        min_requests: Option<u64>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Pause {
        region: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Resume {
        region: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Stop and set the canary share to 0 at once.
    Abort {
        region: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Step, gate figures and time to the next step of every rollout.
    Status,
}

fn parse_steps(s: &str) -> anyhow::Result<Value> {
    let steps: anyhow::Result<Vec<Value>> = s
        .split(',')
        .map(|part| {
            let (bps, secs) = part
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("step `{part}` is not BPS:SECONDS"))?;
            let bps: u32 = bps
                .trim()
                .parse()
                .with_context(|| format!("step `{part}`: canary share"))?;
            let secs: f64 = secs
                .trim()
                .parse()
                .with_context(|| format!("step `{part}`: hold seconds"))?;
            Ok(json!({ "canary_bps": bps, "hold_ms": (secs * 1000.0) as u64 }))
        })
        .collect();
    Ok(Value::Array(steps?))
}

async fn rollout(c: &Client, as_json: bool, cmd: RolloutCmd) -> anyhow::Result<()> {
    let (region, body) = match cmd {
        RolloutCmd::Status => {
            let s = c.rollouts().await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            let list = s["rollouts"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no rollouts");
            }
            for r in list {
                let f = &r["figures"];
                println!(
                    "{}: {} at step {}/{} (canary {:.1}%){}",
                    r["region"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["step"].as_u64().unwrap_or(0) + 1,
                    r["steps"].as_array().map_or(0, |s| s.len()),
                    r["canary_bps"].as_f64().unwrap_or(0.0) / 100.0,
                    r["next_step_in_ms"]
                        .as_u64()
                        .map(|ms| format!(", next step in {:.1} s", ms as f64 / 1000.0))
                        .unwrap_or_default()
                );
                println!(
                    "  gates: 5xx <= {:.2}%, p99 <= {}x stable, >= {} canary requests",
                    r["gates"]["max_error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                    r["gates"]["max_p99_ratio"],
                    r["gates"]["min_requests"]
                );
                if !f.is_null() {
                    println!(
                        "  this step: {} canary requests, 5xx {:.2}%, p99 {} ms (stable {} ms over {}), unhealthy canary backends {}",
                        f["canary_requests"],
                        f["canary_error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                        f["canary_p99_ms"],
                        f["stable_p99_ms"],
                        f["stable_requests"],
                        f["unhealthy_canary_backends"]
                    );
                }
                if let Some(reason) = r["reason"].as_str() {
                    println!("  reason: {reason}");
                }
            }
            return Ok(());
        }
        RolloutCmd::Start {
            region,
            steps,
            max_error_rate,
            max_p99_ratio,
            min_requests,
            reason,
        } => {
            let mut body = json!({ "action": "start", "reason": reason });
            if let Some(s) = steps {
                body["steps"] = parse_steps(&s)?;
            }
            if let Some(v) = max_error_rate {
                body["max_error_rate"] = json!(v);
            }
            if let Some(v) = max_p99_ratio {
                body["max_p99_ratio"] = json!(v);
            }
            if let Some(v) = min_requests {
                body["min_requests"] = json!(v);
            }
            (region, body)
        }
        RolloutCmd::Pause { region, reason } => {
            (region, json!({ "action": "pause", "reason": reason }))
        }
        RolloutCmd::Resume { region, reason } => {
            (region, json!({ "action": "resume", "reason": reason }))
        }
        RolloutCmd::Abort { region, reason } => {
            (region, json!({ "action": "abort", "reason": reason }))
        }
    };
    let r = c.rollout(&region, body).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "version {}: rollout of {region} is {} at step {} (canary {:.1}%)",
            r["version"],
            r["rollout"]["state"].as_str().unwrap_or("?"),
            r["rollout"]["step"].as_u64().unwrap_or(0) + 1,
            r["rollout"]["steps"][r["rollout"]["step"].as_u64().unwrap_or(0) as usize]
                ["canary_bps"]
                .as_f64()
                .unwrap_or(0.0)
                / 100.0
        );
    }
    Ok(())
}

pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let token = std::env::var("EDGESTEER_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let client = Client::new(&args.control, token);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    rt.block_on(exec(client, args.json, args.cmd))
}

async fn exec(c: Client, as_json: bool, cmd: CtlCommand) -> anyhow::Result<()> {
    match cmd {
        CtlCommand::Get { toml } => {
            let v = c.get().await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&v.raw)?);
            } else if toml {
                print!("{}", edgesteer_config::parse::to_toml(&v.table)?);
            } else {
                print_table(&v);
            }
        }
        CtlCommand::Apply {
            file,
            reason,
            if_match,
        } => {
            let spec = crate::cli::read_table(&file)?
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let v = c.put(&spec, &reason, if_match).await?;
            written(&c, as_json, v).await?;
        }
        CtlCommand::SetWeight {
            region,
            backend,
            weight,
            reason,
        } => {
            let v = c
                .patch_region(
                    &region,
                    json!({ "weights": { backend: weight }, "reason": reason }),
                )
                .await?;
            written(&c, as_json, v).await?;
        }
        CtlCommand::SetCanary {
            region,
            bps,
            reason,
        } => {
            let v = c
                .patch_region(&region, json!({ "canary_bps": bps, "reason": reason }))
                .await?;
            written(&c, as_json, v).await?;
        }
        CtlCommand::Shift {
            region,
            undo,
            reason,
        } => {
            let v = c
                .patch_region(&region, json!({ "drain": !undo, "reason": reason }))
                .await?;
            written(&c, as_json, v).await?;
        }
        CtlCommand::SetLimit {
            policy,
            rate,
            burst,
            tier,
            reason,
        } => {
            let current = c.get().await?;
            let mut spec = current.table;
            let p = policy_mut(&mut spec, &policy)?;
            match tier {
                None if !p.tiers.is_empty() => anyhow::bail!(
                    "policy {policy} has tiers ({}); name one with --tier",
                    p.tiers.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                None => {
                    if rate.is_some() {
                        p.rate = rate;
                    }
                    if burst.is_some() {
                        p.burst = burst;
                    }
                }
                Some(t) => {
                    let names = p.tiers.keys().cloned().collect::<Vec<_>>().join(", ");
                    let tier = p.tiers.get_mut(&t).with_context(|| {
                        format!("policy {policy} has no tier {t}; tiers: {names}")
                    })?;
                    if let Some(r) = rate {
                        tier.rate = r;
                    }
                    if burst.is_some() {
                        tier.burst = burst;
                    }
                }
            }
            let v = c.put(&spec, &reason, Some(current.version)).await?;
            written(&c, as_json, v).await?;
        }
        CtlCommand::SetKey {
            policy,
            key,
            tier,
            remove,
            hash,
            reason,
        } => {
            let current = c.get().await?;
            let mut spec = current.table;
            let p = policy_mut(&mut spec, &policy)?;
            let hashed = edgesteer_config::ratelimit::hashed_key(&key);
            let key = if hash { hashed.clone() } else { key };
            match (remove, tier) {
                (true, _) => {
                    // Either spelling of the key goes.
                    let had = p.keys.remove(&key).is_some() | p.keys.remove(&hashed).is_some();
                    anyhow::ensure!(had, "that key is not in policy {policy}");
                }
                (false, Some(t)) => {
                    p.keys.insert(key, t);
                }
                (false, None) => anyhow::bail!("name the tier (or pass --remove)"),
            }
            let v = c.put(&spec, &reason, Some(current.version)).await?;
            written(&c, as_json, v).await?;
        }
        CtlCommand::Rollback { version, reason } => {
            let v = c.rollback(version, &reason).await?;
            written(&c, as_json, v).await?;
        }
        CtlCommand::History { limit } => {
            let h = c.history(limit).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                println!(
                    "{:>7}  {:<24}  {:<10} {:<14} REASON / CHANGES",
                    "VERSION", "WHEN", "WHO", "ACTION"
                );
                for v in h["versions"].as_array().into_iter().flatten() {
                    let a = &v["audit"];
                    let summary = a["summary"].as_array().map(|s| s.len()).unwrap_or(0);
                    let first = a["summary"][0].as_str().unwrap_or("");
                    println!(
                        "{:>7}  {:<24}  {:<10} {:<14} {}{}",
                        v["version"].as_u64().unwrap_or(0),
                        a["at"].as_str().unwrap_or(""),
                        a["actor"].as_str().unwrap_or(""),
                        a["action"].as_str().unwrap_or(""),
                        a["reason"]
                            .as_str()
                            .filter(|r| !r.is_empty())
                            .map(|r| format!("{r} | "))
                            .unwrap_or_default(),
                        if summary > 1 {
                            format!("{first} (+{} more)", summary - 1)
                        } else {
                            first.to_string()
                        }
                    );
                }
            }
        }
        CtlCommand::Fleet => {
            let f = c.fleet().await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                println!(
                    "current version: {}",
                    f["current_version"].as_u64().unwrap_or(0)
                );
                println!(
                    "{:<28} {:>8} {:<9} {:>10}  LAST REJECTION",
                    "PROXY", "APPLIED", "STATUS", "SEEN (ms)"
                );
                for p in f["proxies"].as_array().into_iter().flatten() {
                    println!(
                        "{:<28} {:>8} {:<9} {:>10}  {}",
                        p["proxy"].as_str().unwrap_or(""),
                        p["applied_version"]
                            .as_u64()
                            .map_or("-".to_string(), |v| v.to_string()),
                        p["last_status"].as_str().unwrap_or("-"),
                        p["last_seen_ms_ago"]
                            .as_u64()
                            .map_or("-".to_string(), |v| v.to_string()),
                        p["last_rejection"]
                            .as_str()
                            .map(|r| format!("v{}: {r}", p["rejected_version"]))
                            .unwrap_or_default()
                    );
                }
            }
        }
        CtlCommand::Rollout { cmd } => rollout(&c, as_json, cmd).await?,
        CtlCommand::Explain {
            ip,
            host,
            key,
            admin,
        } => {
            let mut q = vec![("ip", ip.to_string())];
            q.extend(host.map(|h| ("host", h)));
            q.extend(key.map(|k| ("key", k)));
            let url = format!("{}/v1/explain", admin.trim_end_matches('/'));
            let resp = reqwest::Client::new()
                .get(&url)
                .query(&q)
                .send()
                .await
                .with_context(|| format!("asking {url}"))?;
            let e: Value = resp.json().await.context("reading the explanation")?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print_explain(&e);
            }
        }
        CtlCommand::Diff { from, to } => {
            let d = c.diff(from, to).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!("v{} -> v{}", d["from"], d["to"]);
                for line in d["changes"].as_array().into_iter().flatten() {
                    println!("  {}", line.as_str().unwrap_or(""));
                }
            }
        }
    }
    Ok(())
}

fn policy_mut<'a>(
    spec: &'a mut edgesteer_config::TableSpec,
    name: &str,
) -> anyhow::Result<&'a mut edgesteer_config::wire::RateLimitSpec> {
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

/// After a write: print it, then wait (up to 5 s) for the fleet to apply it.
async fn written(c: &Client, as_json: bool, v: Versioned) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut applied = (0, 0);
    while start.elapsed() < Duration::from_secs(5) {
        let f = c.fleet().await?;
        let proxies: Vec<&Value> = f["proxies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["watching"] == true)
            .collect();
        let done = proxies
            .iter()
            .filter(|p| {
                p["applied_version"]
                    .as_u64()
                    .is_some_and(|a| a >= v.version)
            })
            .count();
        applied = (done, proxies.len());
        if done == proxies.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "version": v.version, "audit": v.raw["audit"], "applied_by": applied.0, "proxies": applied.1 })
            )?
        );
    } else {
        println!(
            "version {} committed by {}",
            v.version,
            v.raw["audit"]["actor"].as_str().unwrap_or("?")
        );
        for line in v.raw["audit"]["summary"].as_array().into_iter().flatten() {
            println!("  {}", line.as_str().unwrap_or(""));
        }
        println!(
            "applied by {}/{} watching proxies after {} ms",
            applied.0,
            applied.1,
            start.elapsed().as_millis()
        );
    }
    Ok(())
}

fn print_explain(e: &Value) {
    let c = &e["client"];
    let s = |v: &Value| v.as_str().map_or("-".to_string(), str::to_string);
    println!(
        "client {}: country {} ({}), lookup {}, zone {}, home {} (via {}), allowed [{}]",
        s(&c["ip"]),
        s(&c["country"]),
        s(&c["continent"]),
        s(&c["lookup"]),
        s(&c["zone"]),
        s(&c["home"]),
        s(&c["home_via"]),
        c["allowed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(p) = e["pin"].as_str() {
        println!("host pin: {p}");
    }
    println!(
        "table version {}, sticky bucket {} (from {})",
        e["table_version"],
        e["sticky"]["bucket"],
        s(&e["sticky"]["key"])
    );
    println!("candidates, in order:");
    for (i, k) in e["candidates"].as_array().into_iter().flatten().enumerate() {
        let up = k["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["available"] == true)
            .count();
        let all = k["backends"].as_array().map_or(0, |b| b.len());
        println!(
            "  {}. {:<13} as {:<16} {:<11} {}/{} backends up  rtt {}  track {}{}",
            i + 1,
            s(&k["region"]),
            s(&k["as"]),
            if k["available"] == true {
                "available"
            } else {
                "unavailable"
            },
            up,
            all,
            k["rtt_ms"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.2} ms")),
            s(&k["track"]),
            if k["drained"] == true {
                "  (drained)"
            } else {
                ""
            }
        );
    }
    let d = &e["decision"];
    match d["outcome"].as_str() {
        Some("route") => println!(
            "decision: {} -> {} / {} ({}, {}{})",
            d["status"],
            s(&d["region"]),
            s(&d["backend"]),
            s(&d["track"]),
            s(&d["reason"]),
            if d["track_fallback"] == true {
                ", track fallback"
            } else {
                ""
            }
        ),
        _ => println!(
            "decision: {} {} (zone {})",
            d["status"],
            s(&d["reason"]),
            s(&d["zone"])
        ),
    }
}

fn print_table(v: &Versioned) {
    let a = &v.raw["audit"];
    println!(
        "version {} ({}), {} by {} at {}{}",
        v.version,
        v.raw["etag"].as_str().unwrap_or(""),
        a["action"].as_str().unwrap_or(""),
        a["actor"].as_str().unwrap_or(""),
        a["at"].as_str().unwrap_or(""),
        a["reason"]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    );
    println!(
        "{:<13} {:<5} {:>7} {:<6} {:<24} BACKENDS (weight, track)",
        "REGION", "ZONE", "CANARY", "DRAIN", "FAILOVER"
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
        println!(
            "{:<13} {:<5} {:>6.1}% {:<6} {:<24} {}",
            name,
            r.zone.as_deref().unwrap_or("-"),
            f64::from(r.canary_bps) / 100.0,
            if r.drain { "yes" } else { "-" },
            r.failover.join(","),
            backends.join("  ")
        );
    }
}
