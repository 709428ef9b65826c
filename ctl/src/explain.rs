//! `ctl explain`: asks a proxy's admin listener where a client would be
//! routed right now and why, and prints the answer. The answer is read
//! through a typed view of the fields printed here.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use super::print::{json, json_text};

// The arguments of `ctl explain` (its help is the variant's doc comment).
#[derive(Args, Debug)]
pub(super) struct ExplainArgs {
    /// Client address (or give --subnet).
    #[arg(long, required_unless_present = "subnet")]
    ip: Option<std::net::IpAddr>,
    /// Also show what GeoDNS answers for this name, and whether it agrees
    /// with the HTTP decision.
    #[arg(long)]
    dns: Option<String>,
    /// The client's subnet as a resolver would send it (e.g.
    /// 202.96.128.0/24); its address locates the client.
    #[arg(long, conflicts_with = "ip")]
    subnet: Option<ipnet::IpNet>,
    /// Host header (for pins).
    #[arg(long)]
    host: Option<String>,
    /// Sticky key (e.g. the X-Api-Key value).
    #[arg(long)]
    key: Option<String>,
    /// The proxy's admin listener (not the config service).
    #[arg(long, env = "EDGESTEER_ADMIN", default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// The secret of a token the admin listener takes (a proxy started
    /// with --admin-token [ROLE:]NAME=SECRET); prefer the environment.
    #[arg(long, env = "EDGESTEER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// How long the admin listener has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(a: ExplainArgs, as_json: bool) -> anyhow::Result<()> {
    let ip = match (a.ip, a.subnet) {
        (Some(ip), _) => ip,
        (None, Some(net)) => net.network(),
        (None, None) => anyhow::bail!("give --ip or --subnet"),
    };
    let mut q = vec![("ip", ip.to_string())];
    q.extend(a.dns.map(|d| ("dns", d)));
    q.extend(a.host.map(|h| ("host", h)));
    q.extend(a.key.map(|k| ("key", k)));
    let url = format!("{}/v1/explain", a.admin.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .get(&url)
        .query(&q)
        .timeout(ASK_TIMEOUT);
    if let Some(t) = a.admin_token.as_deref().filter(|t| !t.is_empty()) {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("asking the proxy's admin listener at {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await.context("reading the explanation")?;
    if !status.is_success() {
        anyhow::bail!("{}", refusal(&url, status, &body));
    }
    let e: Value = serde_json::from_slice(&body).context("reading the explanation")?;
    if as_json {
        return json(&e);
    }
    let e = Explanation::deserialize(&e).context("reading the explanation")?;
    print(&e)
}

/// What a non-2xx answer of the admin listener means, and what to do.
fn refusal(url: &str, status: reqwest::StatusCode, body: &[u8]) -> String {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let said = match (doc["error"].as_str(), doc["message"].as_str()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ => String::from_utf8_lossy(&body[..body.len().min(300)])
            .trim()
            .to_string(),
    };
    let hint = match status.as_u16() {
        401 => {
            "; give a token the admin listener takes with --admin-token or EDGESTEER_ADMIN_TOKEN"
        }
        403 => "; that token's role may not ask this",
        404 => "; is --admin a proxy's admin listener (not the config service)?",
        _ => "",
    };
    format!("{url} answered {status}: {said}{hint}")
}

/// The admin listener's `/v1/explain` answer, as far as it is printed.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Explanation {
    table_version: Option<u64>,
    client: ClientView,
    pin: Option<String>,
    sticky: Sticky,
    candidates: Vec<Candidate>,
    decision: DecisionView,
    dns: Option<DnsView>,
}

/// `dns`: the GeoDNS answer beside the HTTP decision.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DnsView {
    name: Option<String>,
    answer: Option<String>,
    region: Option<String>,
    state: Option<String>,
    ttl: Option<u32>,
    addresses: Vec<String>,
    why: Option<String>,
    http_region: Option<String>,
    agrees_with_http: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClientView {
    ip: Option<String>,
    country: Option<String>,
    continent: Option<String>,
    lookup: Option<String>,
    zone: Option<String>,
    home: Option<String>,
    home_via: Option<String>,
    allowed: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Sticky {
    key: Option<String>,
    bucket: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Candidate {
    region: Option<String>,
    #[serde(rename = "as")]
    chosen_as: Option<String>,
    available: bool,
    drained: bool,
    rtt_ms: Option<f64>,
    track: Option<String>,
    backends: Vec<BackendView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BackendView {
    available: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DecisionView {
    outcome: Option<String>,
    status: Option<u64>,
    region: Option<String>,
    backend: Option<String>,
    track: Option<String>,
    reason: Option<String>,
    zone: Option<String>,
    track_fallback: bool,
}

/// A text field, or `-` when there is none.
fn s(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn print(e: &Explanation) -> anyhow::Result<()> {
    let c = &e.client;
    outln!(
        "client {}: country {} ({}), lookup {}, zone {}, home {} (via {}), allowed [{}]",
        s(&c.ip),
        s(&c.country),
        s(&c.continent),
        s(&c.lookup),
        s(&c.zone),
        s(&c.home),
        s(&c.home_via),
        c.allowed.join(", ")
    );
    if let Some(p) = &e.pin {
        outln!("host pin: {p}");
    }
    outln!(
        "table version {}, sticky bucket {} (from {})",
        json_text(&e.table_version),
        json_text(&e.sticky.bucket),
        s(&e.sticky.key)
    );
    outln!("candidates, in order:");
    for (i, k) in e.candidates.iter().enumerate() {
        let up = k.backends.iter().filter(|b| b.available).count();
        outln!(
            "  {}. {:<13} as {:<16} {:<11} {}/{} backends up  rtt {}  track {}{}",
            i + 1,
            s(&k.region),
            s(&k.chosen_as),
            if k.available {
                "available"
            } else {
                "unavailable"
            },
            up,
            k.backends.len(),
            k.rtt_ms.map_or("-".into(), |r| format!("{r:.2} ms")),
            s(&k.track),
            if k.drained { "  (drained)" } else { "" }
        );
    }
    let d = &e.decision;
    match d.outcome.as_deref() {
        Some("route") => outln!(
            "decision: {} -> {} / {} ({}, {}{})",
            json_text(&d.status),
            s(&d.region),
            s(&d.backend),
            s(&d.track),
            s(&d.reason),
            if d.track_fallback {
                ", track fallback"
            } else {
                ""
            }
        ),
        _ => outln!(
            "decision: {} {} (zone {})",
            json_text(&d.status),
            s(&d.reason),
            s(&d.zone)
        ),
    }
    if let Some(dn) = &e.dns {
        print_dns(dn)?;
    }
    Ok(())
}

fn print_dns(d: &DnsView) -> anyhow::Result<()> {
    let agree = match d.agrees_with_http {
        Some(true) => "agrees with HTTP",
        Some(false) => "DISAGREES with HTTP",
        None => "",
    };
    match d.answer.as_deref() {
        Some("addresses") => outln!(
            "dns: {} -> {} edges [{}] ttl {} ({}); {} ({})",
            s(&d.name),
            s(&d.region),
            d.addresses.join(", "),
            json_text(&d.ttl),
            s(&d.state),
            agree,
            s(&d.http_region)
        ),
        other => outln!(
            "dns: {} -> {} ({}) {}",
            s(&d.name),
            other.unwrap_or("-"),
            s(&d.why),
            agree
        ),
    }
    Ok(())
}
