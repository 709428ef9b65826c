//! The `edgesteer` command line. `main.rs` (and the test harness's copy of
//! the binary) call [`main`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use edgesteer_config::{parse, ConfigError, RoutingTable, TableSpec};
use edgesteer_geo::GeoDb;
use pingora_core::services::background::background_service;

use crate::metrics::Metrics;
use crate::server::{self, ServeOptions};
use crate::steer::Steering;
use crate::tls::CertPair;

#[derive(Parser, Debug)]
#[command(
    name = "edgesteer",
    version,
    about = "Global traffic-steering edge proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy with a routing table file.
    Proxy(Box<ProxyArgs>),
    /// Check a routing table (TOML or JSON) and print a summary or every error.
    Validate {
        /// Table file; `.json` is read as JSON, anything else as TOML.
        file: PathBuf,
    },
    /// Start demo backends for all regions and the proxy with the covergen table.
    Demo(DemoArgs),
    /// Run the config service (versioned tables, audit, push to proxies).
    Control(ControlArgs),
    /// Ops CLI over the config service API.
    Ctl(crate::ctl::CtlArgs),
    /// Run one demo backend (for tests and experiments).
    Backend {
        #[arg(long)]
        region: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "stable")]
        track: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[derive(Args, Debug)]
struct ListenArgs {
    /// Plaintext listener (HTTP/1.1 and h2c); repeat for several.
    #[arg(long = "listen")]
    listen: Vec<String>,
    /// TLS listener (h2 and HTTP/1.1 by ALPN); repeat for several.
    #[arg(long = "tls-listen")]
    tls_listen: Vec<String>,
    /// Certificate and key as CERT.pem:KEY.pem; repeat for SNI.
    #[arg(long = "tls-cert")]
    tls_cert: Vec<CertPair>,
    /// Admin listener (/healthz, /metrics, /v1/...).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Token (NAME=SECRET) the admin listener's writes (block list) need;
    /// repeat for several. Without one, anyone who reaches it may write.
    #[arg(
        long = "admin-token",
        env = "EDGESTEER_ADMIN_TOKENS",
        value_delimiter = ','
    )]
    admin_tokens: Vec<edgesteer_control::Token>,
    /// Proxy worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds to keep serving after SIGTERM before closing listeners.
    #[arg(long, default_value_t = 5)]
    grace_period: u64,
    /// DNS server(s) for backend hostnames as IP:PORT (default: the system's).
    #[arg(long = "resolver")]
    resolver: Vec<SocketAddr>,
    /// Redis for `global` rate-limit policies, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "EDGESTEER_REDIS")]
    redis: Option<String>,
    /// How often global rate-limit counts are reconciled with Redis; the
    /// fleet's overshoot grows with it (see docs/design.md).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    redis_sync_ms: u64,
}

#[derive(Args, Debug)]
struct ControlArgs {
    /// API listener.
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: SocketAddr,
    /// Directory of the embedded store (one file per version).
    #[arg(long)]
    data: PathBuf,
    /// Write token as NAME=SECRET; NAME becomes the audit actor. Repeat for
    /// several; also read from EDGESTEER_TOKENS (comma-separated).
    #[arg(long = "token")]
    tokens: Vec<edgesteer_control::Token>,
    /// Table stored as version 1 when the store is empty.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = edgesteer_control::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
}

#[derive(Args, Debug)]
struct ProxyArgs {
    /// Routing table (TOML or JSON); with --control, only used when there
    /// is neither a cached table nor a reachable service.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Config service URL to watch for new tables.
    #[arg(long)]
    control: Option<String>,
    /// Where the last good table is saved (with --control).
    #[arg(long, default_value = ".edgesteer/last-good-table.json")]
    cache: PathBuf,
    /// This proxy's name in the fleet view (default: host:pid).
    #[arg(long)]
    name: Option<String>,
    /// How often per-track stats go to the config service (rollout gates).
    #[arg(long, default_value_t = 1000)]
    report_interval_ms: u64,
    /// MaxMind-format database; default: the bundled country database.
    #[arg(long)]
    geo_db: Option<PathBuf>,
    /// Extra trusted proxy CIDR for X-Forwarded-For (added to the table's).
    #[arg(long = "trust")]
    trust: Vec<String>,
    /// Skip recording request metrics (to measure their cost; /metrics stays up).
    #[arg(long)]
    no_request_metrics: bool,
    /// Access-log destination when the table enables it: `-` (stdout) or a file.
    #[arg(long, default_value = "-")]
    access_log: crate::access_log::Sink,
    #[command(flatten)]
    net: ListenArgs,
}

#[derive(Args, Debug)]
struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
    /// Where the demo's config service listens.
    #[arg(long, default_value = "127.0.0.1:9300")]
    control: SocketAddr,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Entry point shared by every copy of the binary.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate { file } => return validate(&file),
        Command::Proxy(args) => run_proxy(*args),
        Command::Demo(args) => run_demo(args),
        Command::Control(args) => run_control(args),
        Command::Ctl(args) => crate::ctl::run(args),
        Command::Backend {
            region,
            name,
            track,
            listen,
        } => run_backend(region, name, track, listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgesteer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Reads a table file as TOML, or JSON when it ends in `.json`.
pub fn read_table(path: &Path) -> anyhow::Result<Result<TableSpec, ConfigError>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(if path.extension().is_some_and(|e| e == "json") {
        parse::from_json(text.as_bytes())
    } else {
        parse::from_toml(&text)
    })
}

fn validate(path: &Path) -> ExitCode {
    let spec = match read_table(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgesteer: {e:#}");
            return ExitCode::from(2);
        }
    };
    match spec.and_then(|s| edgesteer_config::compile(&s)) {
        Ok(t) => {
            println!("ok: {}: {}", path.display(), summary(&t));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("invalid: {}: {} error(s)", path.display(), e.errors().len());
            for err in e.errors() {
                eprintln!("  {}: {}", err.path, err.reason);
            }
            ExitCode::FAILURE
        }
    }
}

/// One line describing a table.
pub fn summary(t: &RoutingTable) -> String {
    let zones: Vec<String> = t
        .zones
        .iter()
        .map(|z| format!("{}{}", z.name, if z.isolated { " (isolated)" } else { "" }))
        .collect();
    format!(
        "{} regions, {} backends, zones [{}], {} host pins, default region {}, rate limits [{}]",
        t.regions.len(),
        t.backends.len(),
        zones.join(", "),
        t.pins().count(),
        t.region(t.default_region).name,
        t.rate_limits
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn compile_or_explain(spec: &TableSpec) -> anyhow::Result<RoutingTable> {
    edgesteer_config::compile(spec).map_err(|e| {
        let lines: Vec<String> = e
            .errors()
            .iter()
            .map(|f| format!("  {}: {}", f.path, f.reason))
            .collect();
        anyhow::anyhow!("the routing table is invalid:\n{}", lines.join("\n"))
    })
}

fn serve_options(net: ListenArgs, default_listen: &str) -> ServeOptions {
    let defaults = ServeOptions::default();
    ServeOptions {
        listen: if net.listen.is_empty() && net.tls_listen.is_empty() {
            vec![default_listen.to_string()]
        } else {
            net.listen
        },
        tls_listen: net.tls_listen,
        tls_certs: net.tls_cert,
        admin: net.admin.or(defaults.admin),
        threads: net.threads.unwrap_or(defaults.threads),
        grace_period_secs: net.grace_period,
        dns: if net.resolver.is_empty() {
            edgesteer_health::DnsConfig::System
        } else {
            edgesteer_health::DnsConfig::Servers(net.resolver)
        },
        redis: net
            .redis
            .map(|url| edgesteer_ratelimit::global::SyncConfig {
                url,
                interval: std::time::Duration::from_millis(net.redis_sync_ms.max(1)),
            }),
    }
}

fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let (version, mut spec) = initial_table(&args)?;
    spec.client_ip
        .trusted_proxies
        .extend(args.trust.iter().cloned());
    let table = compile_or_explain(&spec)?;
    let geo = match &args.geo_db {
        Some(p) => GeoDb::open(p)?,
        None => GeoDb::bundled()?,
    };
    tracing::info!(version, table = %summary(&table), geo = ?geo.info(), "starting proxy");
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let mut steering = Steering::new(version, spec, table, Arc::new(geo), metrics.clone());
    steering.access_log = Some(
        crate::access_log::AccessLog::start(
            args.access_log.clone(),
            metrics.access_log_dropped.clone(),
        )
        .context("opening the access log")?,
    );
    steering.record_metrics = !args.no_request_metrics;
    steering.admin_tokens = args.net.admin_tokens.clone();
    let steer = Arc::new(steering);
    let opts = serve_options(args.net, "0.0.0.0:8080");
    if let Some(admin) = opts.admin.filter(|a| !a.ip().is_loopback()) {
        if steer.admin_tokens.is_empty() {
            tracing::warn!(%admin, "the admin listener is not on loopback and has no --admin-token: anyone who reaches it can lift or add blocks");
        }
    }
    if !opts.tls_listen.is_empty() && opts.tls_certs.is_empty() {
        anyhow::bail!("--tls-listen needs at least one --tls-cert CERT.pem:KEY.pem");
    }
    let mut server = server::build(steer.clone(), &opts)?;
    if let Some(url) = &args.control {
        let name = args.name.unwrap_or_else(default_name);
        let client = edgesteer_control::client::Client::new(url, None);
        server.add_service(background_service(
            "stats report",
            crate::stats::Reporter {
                steer: steer.clone(),
                client: client.clone(),
                name: name.clone(),
                interval: Duration::from_millis(args.report_interval_ms.max(50)),
            },
        ));
        let watcher = crate::watch::Watcher {
            steer,
            client,
            name,
            cache: Some(args.cache),
            extra_trust: args.trust,
        };
        server.add_service(background_service("control watch", watcher));
    }
    server.run_forever()
}

fn default_name() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "proxy".into());
    format!("{}:{}", host.trim(), std::process::id())
}

/// The table a proxy starts with: with --control, the cached last good
/// table, else the service's current one, else --config; without, --config.
fn initial_table(args: &ProxyArgs) -> anyhow::Result<(u64, TableSpec)> {
    // A file table is version 1 on its own; as a fallback while a service
    // is configured it is version 0, so the first watch fetches any version.
    let from_file = |path: &PathBuf, version: u64| -> anyhow::Result<(u64, TableSpec)> {
        let spec = read_table(path)?.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok((version, spec))
    };
    let Some(url) = &args.control else {
        return match &args.config {
            Some(p) => from_file(p, 1),
            None => {
                anyhow::bail!("give --config FILE, or --control URL to follow a config service")
            }
        };
    };
    if let Some(c) = crate::watch::load_cache(&args.cache) {
        if edgesteer_config::compile(&c.table).is_ok() {
            tracing::info!(version = c.version, cache = %args.cache.display(), "starting from the cached last good table");
            return Ok((c.version, c.table));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = edgesteer_control::client::Client::new(url, None);
    match rt.block_on(client.get()) {
        Ok(v) => Ok((v.version, v.table)),
        Err(e) => match &args.config {
            Some(p) => {
                tracing::warn!(error = %e, "config service unreachable and no cache; starting from --config");
                from_file(p, 0)
            }
            None => Err(anyhow::anyhow!(
                "no table to start with: {e}; no cached table at {}",
                args.cache.display()
            )),
        },
    }
}

fn run_control(args: ControlArgs) -> anyhow::Result<()> {
    let mut tokens = args.tokens;
    if let Ok(env) = std::env::var("EDGESTEER_TOKENS") {
        for t in env.split(',').filter(|t| !t.trim().is_empty()) {
            tokens.push(
                t.trim()
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("EDGESTEER_TOKENS: {e}"))?,
            );
        }
    }
    if tokens.is_empty() {
        tracing::warn!(
            "no write tokens configured: every write will be refused (give --token NAME=SECRET)"
        );
    }
    let seed = match &args.seed {
        Some(p) => Some(read_table(p)?.map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = Arc::new(edgesteer_control::FileStore::open(&args.data)?);
        let control = edgesteer_control::Control::open(store, tokens, seed).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding the config service on {}", args.listen))?;
        tracing::info!(listen = %args.listen, data = %args.data.display(), version = ?control.latest().map(|r| r.version), "config service started");
        tokio::spawn(edgesteer_control::rollout::run(control.clone(), Duration::from_millis(250)));
        axum::serve(listener, edgesteer_control::router(control, args.body_limit))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

/// The demo config service's write token (printed at start-up).
pub const DEMO_TOKEN: &str = "demo-token-not-secret";

fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let mut spec = parse::from_toml(edgesteer_config::COVERGEN_TOML)
        .map_err(|e| anyhow::anyhow!("embedded covergen table: {e}"))?;
    spec.description = Some("covergen demo (loopback backends)".into());
    spec.client_ip.trusted_proxies = vec!["127.0.0.0/8".into(), "::1".into()];
    spec.headers.track = true;
    spec.headers.version = true;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("demo-backends")
        .build()
        .context("starting the demo backends' runtime")?;
    let (spec, backends) = rt
        .block_on(crate::demo::spawn_for_spec(&spec))
        .context("starting demo backends")?;
    let table = compile_or_explain(&spec)?;

    // The config service, in memory, seeded with the demo table.
    let control_url = format!("http://{}", args.control);
    let control = rt.block_on(async {
        let tokens = vec![edgesteer_control::Token {
            name: "demo".into(),
            secret: DEMO_TOKEN.into(),
        }];
        let store = Arc::new(edgesteer_control::MemoryStore::default());
        let control = edgesteer_control::Control::open(store, tokens, Some(spec.clone())).await?;
        let listener = tokio::net::TcpListener::bind(args.control)
            .await
            .with_context(|| format!("binding the demo config service on {}", args.control))?;
        let app = edgesteer_control::router(control.clone(), edgesteer_control::DEFAULT_BODY_LIMIT);
        tokio::spawn(edgesteer_control::rollout::run(
            control.clone(),
            Duration::from_millis(250),
        ));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "demo config service stopped");
            }
        });
        anyhow::Ok(control)
    })?;
    let version = control.latest().map_or(1, |r| r.version);

    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let steer = Arc::new(Steering::new(
        version,
        spec,
        table,
        Arc::new(GeoDb::bundled()?),
        metrics,
    ));
    let opts = ServeOptions {
        listen: vec![args.listen.clone()],
        admin: Some(args.admin),
        threads: args.threads,
        ..ServeOptions::default()
    };
    let mut server = server::build(steer.clone(), &opts)?;
    server.add_service(background_service(
        "stats report",
        crate::stats::Reporter {
            steer: steer.clone(),
            client: edgesteer_control::client::Client::new(&control_url, None),
            name: "demo-proxy".into(),
            interval: Duration::from_secs(1),
        },
    ));
    server.add_service(background_service(
        "control watch",
        crate::watch::Watcher {
            steer,
            client: edgesteer_control::client::Client::new(&control_url, None),
            name: "demo-proxy".into(),
            cache: None,
            extra_trust: Vec::new(),
        },
    ));

    println!(
        "edgesteer demo: {} backends in 8 regions on loopback",
        backends.len()
    );
    for b in &backends {
        println!(
            "  {:<13} {:<16} {:<7} http://{}",
            b.id.region, b.id.backend, b.id.track, b.addr
        );
    }
    let base = format!("http://{}", args.listen);
    let us_east_1 = backends
        .iter()
        .find(|b| b.id.region == "us-east")
        .map(|b| b.addr.to_string())
        .unwrap_or_default();
    println!(
        "\nproxy:  {base}      admin: http://{}  (/metrics, /v1/health, /v1/table)",
        args.admin
    );
    println!("try:");
    println!(
        "  curl -s -H 'X-Forwarded-For: 80.128.0.1'    {base}/v1/covers   # Germany  -> eu-west"
    );
    println!(
        "  curl -s -H 'X-Forwarded-For: 8.8.8.8'       {base}/v1/covers   # US       -> us-east"
    );
    println!(
        "  curl -s -H 'X-Forwarded-For: 202.96.128.86' {base}/v1/covers   # China    -> cn-east"
    );
    println!("  curl -s -H 'X-Forwarded-For: 1.36.0.1'      {base}/v1/covers   # Hong Kong-> ap-southeast");
    println!("  curl -si -H 'Host: api-cn.covergen.ai' -H 'X-Forwarded-For: 8.8.8.8' {base}/  # pin across zone -> 421");
    println!("rate limits (local scope in the demo): per IP 10,000/s; X-Api-Key free 10/s, pro 100/s, enterprise 1,000/s");
    println!("  for i in $(seq 15); do curl -s -o /dev/null -w '%{{http_code}} ' -H 'X-Api-Key: cg-demo-free' {base}/v1/covers; done; echo   # 10 x 200, then 429");
    println!("  curl -si -H 'X-Api-Key: cg-demo-pro' {base}/v1/covers | grep -i ratelimit   # RateLimit-Policy / RateLimit headers");
    println!(
        "  curl -s http://{}/v1/ratelimit   # policies, keys tracked, Redis, block list",
        args.admin
    );
    println!("\nconfig service: {control_url}   token: {DEMO_TOKEN}");
    println!("  export EDGESTEER_TOKEN={DEMO_TOKEN}");
    println!("  edgesteer ctl get");
    println!("  edgesteer ctl set-weight us-east {us_east_1} 0 --reason 'drain one backend'");
    println!("  edgesteer ctl shift eu-west --reason maintenance     # EU traffic -> eu-central");
    println!("  edgesteer ctl history");
    // Keep the backends' runtime (and the config service) alive for as long as the server runs.
    let _keep = (rt, backends, control);
    server.run_forever()
}

fn run_backend(
    region: String,
    name: String,
    track: String,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    rt.block_on(async move {
        let id = crate::demo::Identity {
            region,
            backend: name,
            track,
        };
        let b = crate::demo::spawn_backend(id, listen).await?;
        println!("listening on {}", b.addr);
        tokio::signal::ctrl_c().await?;
        drop(b);
        Ok(())
    })
}
