//! `edgesteer-load`: the load driver (see `edgesteer_benches::load`).
//!
//! edgesteer-load --target 127.0.0.1:8080 --duration 10 --connections 32
//! edgesteer-load --target 127.0.0.1:8080 --rate 2000 --h2 --json

use std::time::Duration;

use clap::Parser;
use edgesteer_benches::load::{default_mix, run, Config};

#[derive(Parser)]
#[command(
    name = "edgesteer-load",
    about = "Global-traffic load driver for edgesteer"
)]
struct Args {
    /// Proxy address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: std::net::SocketAddr,
    /// Host header / :authority.
    #[arg(long, default_value = "api.covergen.ai")]
    host: String,
    #[arg(long, default_value = "/v1/covers")]
    path: String,
    /// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    #[arg(long)]
    h2: bool,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Open loop at this many requests/s (closed loop when absent).
    #[arg(long)]
    rate: Option<f64>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Extra request header as NAME:VALUE; repeat for several.
    #[arg(long, value_parser = parse_header)]
    header: Vec<Header>,
    /// Send every request from a new client address (X-Forwarded-For).
    #[arg(long)]
    distinct_clients: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let cfg = Config {
        target: a.target,
        host: a.host,
        path: a.path,
        h2: a.h2,
        connections: a.connections.max(1),
        duration: Duration::from_secs_f64(a.duration.clamp(0.1, 3600.0)),
        rate: a.rate,
        mix: default_mix(),
        timeout: Duration::from_secs_f64(a.timeout),
        distinct_clients: a.distinct_clients,
        headers: a
            .header
            .iter()
            .map(|h| (h.0.clone(), h.1.clone()))
            .collect(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edgesteer-load: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let report = rt.block_on(run(cfg));
    if a.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("edgesteer-load: {e}"),
        }
    } else {
        print!("{}", report.text());
    }
    std::process::ExitCode::SUCCESS
}

#[derive(Clone, Debug)]
struct Header(http::HeaderName, http::HeaderValue);

fn parse_header(s: &str) -> Result<Header, String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not NAME:VALUE"))?;
    let name =
        http::HeaderName::from_bytes(k.trim().as_bytes()).map_err(|e| format!("{k}: {e}"))?;
    let value = http::HeaderValue::from_str(v.trim()).map_err(|e| format!("{v}: {e}"))?;
    Ok(Header(name, value))
}
