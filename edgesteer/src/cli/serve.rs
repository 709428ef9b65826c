//! `edgesteer proxy`: its flags, the table it starts from, and the wiring
//! of a proxy server (Pingora server, config-service watch and stats
//! reports) that `edgesteer demo` uses too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use edgesteer_config::{RoutingTable, TableSpec};
use edgesteer_control_api::client::{Client, ClientTls};
use edgesteer_geo::GeoDb;
use pingora_core::services::background::background_service;

use super::table::{compile_or_explain, read_table, summary};
use edgesteer_proxy::metrics::Metrics;
use edgesteer_proxy::server::{self, ProxyServer, ServeOptions};
use edgesteer_proxy::steer::Steering;
use edgesteer_proxy::tls::CertPair;

#[derive(Args, Debug)]
pub(super) struct ListenArgs {
    /// Plaintext listener (HTTP/1.1 and h2c); repeat for several.
    #[arg(long = "listen")]
    pub(super) listen: Vec<String>,
    /// TLS listener (h2 and HTTP/1.1 by ALPN); repeat for several.
    #[arg(long = "tls-listen")]
    tls_listen: Vec<String>,
    /// Certificate and key as CERT.pem:KEY.pem; repeat for SNI.
    #[arg(long = "tls-cert")]
    tls_cert: Vec<CertPair>,
    /// Admin listener (/healthz, /metrics, /v1/...), plain HTTP. Off
    /// loopback it needs --admin-token and --insecure-admin-plaintext.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Serve the admin listener off loopback although it is plain HTTP: its
    /// tokens (an `ops` one changes the fleet's block list) cross the
    /// network in clear. Prefer loopback, reached over SSH or a local agent.
    #[arg(long)]
    insecure_admin_plaintext: bool,
    /// A listener with only /metrics and /healthz, for scrapers.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Token ([ROLE:]NAME=SECRET; `read` reads, `ops` also writes) the
    /// admin listener needs for everything but /healthz and /metrics;
    /// repeat for several. Without one the listener must be on loopback.
    // Parsed after clap (`admin_tokens`), so that a malformed token is
    // never echoed in clap's error, and its value never shown in --help.
    #[arg(
        long = "admin-token",
        env = "EDGESTEER_ADMIN_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    admin_tokens: Vec<String>,
    /// Proxy worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// One runtime whose worker threads steal tasks from each other,
    /// instead of the default: one single-threaded runtime per worker
    /// thread, each serving the connections it was given (at random, per
    /// connection), as nginx's and Envoy's workers do. Stealing lets a busy
    /// thread's work move to an idle one, for a few very busy connections;
    /// it costs about 6% more CPU per request (BENCHMARKS.md).
    #[arg(long)]
    work_stealing: bool,
    /// Bytes of read buffer per client connection under Pingora's own
    /// buffers (Pingora's default is 64 KiB per connection; 0 reads straight
    /// into them, which costs no more syscalls for API-sized requests and
    /// saves 64 KiB per held connection).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    read_buffer: u64,
    /// SO_SNDBUF for each client connection, in bytes (the kernel doubles
    /// it): what the kernel may hold for a client that reads slowly. 0
    /// (the default, as nginx and HAProxy) leaves it to the kernel's
    /// autotuning, up to net.ipv4.tcp_wmem's maximum (4 MiB) per client:
    /// 1000 stalled readers of 1 MiB answers then hold ~1.1 GB of kernel
    /// memory. A cap also limits one client's throughput to at most about
    /// 2 x this / RTT (BENCHMARKS.md, "Slow readers"). Linux clamps it to
    /// net.core.wmem_max (208 KiB by default; a warning at start says so).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=67_108_864))]
    send_buffer: u64,
    /// What each TLS client's connection may hold encrypted in the proxy, in
    /// bytes, waiting for the client to read (rustls's send buffer). An
    /// answer's body already waits for rustls to send each chunk on before
    /// the next is read; this caps the rest (heads, local answers, h2
    /// clients). The default is one TLS record (16 KiB); rustls's own is
    /// 64 KiB (0).
    #[arg(long, default_value_t = edgesteer_proxy::server::TLS_SEND_BUFFER as u64, value_parser = clap::value_parser!(u64).range(0..=16_777_216))]
    tls_send_buffer: u64,
    /// After SIGTERM (or SIGQUIT once a new process has the listeners): the
    /// listeners stop accepting at once, and in-flight requests get up to
    /// this many seconds to finish; the process exits when none is left.
    #[arg(long, default_value_t = 5)]
    grace_period: u64,
    /// Directory (mode 0700, this user's) of the upgrade socket and the pid
    /// file. Default: $RUNTIME_DIRECTORY (systemd), else
    /// $XDG_RUNTIME_DIR/edgesteer, else /run/edgesteer (root) or
    /// /tmp/edgesteer-UID. One per proxy instance on a host.
    #[arg(long, env = "EDGESTEER_RUNTIME_DIR")]
    runtime_dir: Option<PathBuf>,
    /// Start as the successor of the proxy running with the same
    /// --runtime-dir: take its listening sockets (it is sent SIGQUIT once
    /// this process is ready for them), then it drains and exits. If this
    /// process fails first, the old one keeps serving; with no running
    /// proxy named in the runtime directory (proxy.pid), it exits 1 at once.
    #[arg(long)]
    upgrade: bool,
    /// DNS server(s) for backend hostnames as IP:PORT (default: the system's).
    #[arg(long = "resolver")]
    resolver: Vec<SocketAddr>,
    #[command(flatten)]
    redis: super::redis_args::RedisArgs,
    #[command(flatten)]
    dns: super::dns_args::DnsArgs,
}

#[derive(Args, Debug)]
pub(super) struct ProxyArgs {
    /// Routing table (TOML or JSON); with --control, only used when there
    /// is neither a cached table nor a reachable service.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Config service URL to watch for new tables.
    #[arg(long)]
    control: Option<String>,
    /// Where the last good table is saved (with --control). Default:
    /// $STATE_DIRECTORY (systemd), else /var/lib/edgesteer (root), else
    /// $XDG_STATE_HOME or ~/.local/state, under edgesteer/.
    #[arg(long, env = "EDGESTEER_CACHE")]
    cache: Option<PathBuf>,
    /// Token (role `proxy`) for the config service. Prefer the environment
    /// or --control-token-file: the command line shows in `ps`.
    #[arg(long, env = "EDGESTEER_CONTROL_TOKEN", hide_env_values = true)]
    control_token: Option<String>,
    /// File whose first line is the config-service token.
    #[arg(long, conflicts_with = "control_token")]
    control_token_file: Option<PathBuf>,
    /// CA (PEM) that the config service's certificate must chain to; only
    /// it is trusted, not the system roots. Needs an https:// --control.
    #[arg(long, env = "EDGESTEER_CONTROL_CA")]
    control_ca: Option<PathBuf>,
    /// Client certificate (PEM) shown to a config service that asks for one (mTLS).
    #[arg(long, requires = "control_key")]
    control_cert: Option<PathBuf>,
    /// Private key (PEM) of --control-cert.
    #[arg(long, requires = "control_cert")]
    control_key: Option<PathBuf>,
    /// This proxy's name in the fleet view and to the config service (default:
    /// the host name); a `proxy` token must carry the same name.
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
    /// Turn off the edge checks (the request-head deadline, framing and
    /// size checks, per-request keep-alive/read/write limits) to price them
    /// in a benchmark. Never in production: slowloris and smuggling-shaped
    /// requests get through.
    #[arg(long)]
    unsafe_no_edge_checks: bool,
    /// Access-log destination when the table enables it: `-` (stdout) or a file.
    #[arg(long, default_value = "-")]
    access_log: edgesteer_proxy::access_log::Sink,
    #[command(flatten)]
    net: ListenArgs,
}

/// A config service a proxy follows: new tables by watch, per-track
/// stats by report.
pub(super) struct Follow {
    pub url: String,
    /// The store epoch of the first table, if it came from the service.
    pub epoch: Option<String>,
    /// The `proxy`-role token the service wants.
    pub token: Option<String>,
    /// This proxy's name in the fleet view.
    pub name: String,
    /// Where the last good table is saved; `None` keeps it in memory only.
    pub cache: Option<PathBuf>,
    pub report_every: Duration,
    /// Trusted-proxy CIDRs added to every table received.
    pub extra_trust: Vec<String>,
}

/// The live steering state for a first table, with its metrics registry.
pub(super) fn steering(
    version: u64,
    spec: TableSpec,
    table: RoutingTable,
    geo: GeoDb,
) -> anyhow::Result<Steering> {
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    Ok(Steering::new(version, spec, table, Arc::new(geo), metrics))
}

/// The Pingora server for `steer` with `opts`' listeners, following a
/// config service when given one.
pub(super) fn proxy_server(
    steer: Arc<Steering>,
    opts: &ServeOptions,
    follow: Option<Follow>,
) -> anyhow::Result<ProxyServer> {
    proxy_server_with_tls(steer, opts, follow, &ClientTls::default())
}

/// [`proxy_server`] reaching the config service with `tls` (CA, client
/// certificate).
fn proxy_server_with_tls(
    steer: Arc<Steering>,
    opts: &ServeOptions,
    follow: Option<Follow>,
    tls: &ClientTls,
) -> anyhow::Result<ProxyServer> {
    let mut proxy = server::build(steer.clone(), opts)?;
    let server = &mut proxy.server;
    if let Some(f) = follow {
        let client = Client::with_tls(&f.url, f.token, tls)?;
        server.add_service(background_service(
            "stats report",
            edgesteer_proxy::report::Reporter {
                steer: steer.clone(),
                client: client.clone(),
                name: f.name.clone(),
                interval: f.report_every,
            },
        ));
        let watcher = edgesteer_proxy::watch::Watcher {
            steer,
            client,
            name: f.name,
            cache: f.cache,
            extra_trust: f.extra_trust,
            epoch: f.epoch,
        };
        server.add_service(background_service("control watch", watcher));
    }
    Ok(proxy)
}

fn serve_options(
    net: ListenArgs,
    default_listen: &str,
    redis: Option<edgesteer_ratelimit::global::SyncConfig>,
) -> ServeOptions {
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
        metrics: net.metrics,
        threads: net.threads.unwrap_or(defaults.threads),
        work_stealing: net.work_stealing,
        read_buffer: net.read_buffer as usize,
        send_buffer: net.send_buffer as usize,
        tls_send_buffer: net.tls_send_buffer as usize,
        grace_period_secs: net.grace_period,
        runtime: None,
        upgrade: net.upgrade,
        dns: if net.resolver.is_empty() {
            edgesteer_health::DnsConfig::System
        } else {
            edgesteer_health::DnsConfig::Servers(net.resolver)
        },
        redis,
        geodns: net.dns.options(),
    }
}

pub(super) fn run_proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let admin_tokens = super::parse_tokens(
        "--admin-token (or EDGESTEER_ADMIN_TOKENS)",
        &args.net.admin_tokens,
    )?;
    let redis = args.net.redis.sync_config()?;
    let token = match &args.control_token_file {
        Some(p) => Some(edgesteer_control_api::read_secret_file(p).map_err(anyhow::Error::msg)?),
        None => args.control_token.clone(),
    };
    if args.control.is_some() && token.is_none() && args.control_cert.is_none() {
        tracing::warn!("--control without a token (--control-token-file or EDGESTEER_CONTROL_TOKEN) or client certificate (--control-cert): the config service will refuse this proxy");
    }
    let name = args.name.clone().unwrap_or_else(super::local::default_name);
    let tls = ClientTls {
        ca: args.control_ca.clone(),
        identity: args.control_cert.clone().zip(args.control_key.clone()),
    };
    if args.control.is_none() && (tls.ca.is_some() || tls.identity.is_some()) {
        anyhow::bail!("--control-ca/--control-cert are for the link to a config service: give --control https://HOST:PORT too");
    }
    let runtime_path = args
        .net
        .runtime_dir
        .clone()
        .unwrap_or_else(edgesteer_proxy::lifecycle::RuntimeDir::default_path);
    let runtime = edgesteer_proxy::lifecycle::RuntimeDir::prepare(&runtime_path)?;
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(super::local::default_cache);
    let start = initial_table(&args, &cache, token.clone(), &name, &tls)?;
    let mut spec = start.spec.clone();
    spec.client_ip
        .trusted_proxies
        .extend(args.trust.iter().cloned());
    let table = compile_or_explain(&spec)?;
    if start.from_service {
        save_first(&cache, &start);
    }
    let (version, epoch) = (start.version, start.epoch);
    let geo = match &args.geo_db {
        Some(p) => GeoDb::open(p)?,
        None => GeoDb::bundled()?,
    };
    tracing::info!(version, table = %summary(&table), geo = ?geo.info(), "starting proxy");
    let mut steering = steering(version, spec, table, geo)?;
    steering.access_log = Some(
        edgesteer_proxy::access_log::AccessLog::start(
            args.access_log.clone(),
            steering.metrics.access_log_dropped.clone(),
        )
        .context("opening the access log")?,
    );
    steering.record_metrics = !args.no_request_metrics;
    steering.edge_checks = !args.unsafe_no_edge_checks;
    if args.unsafe_no_edge_checks {
        tracing::warn!(
            "--unsafe-no-edge-checks: no head deadline, framing or size checks (benchmarks only)"
        );
    }
    steering.admin_tokens = admin_tokens;
    let steer = Arc::new(steering);
    let insecure_admin_plaintext = args.net.insecure_admin_plaintext;
    let mut opts = serve_options(args.net, "0.0.0.0:8080", redis);
    opts.runtime = Some(runtime.clone());
    if let Some(admin) = opts.admin.filter(|a| !a.ip().is_loopback()) {
        if steer.admin_tokens.is_empty() {
            anyhow::bail!("the admin listener on {admin} is not on loopback and has no --admin-token: anyone who reaches it could read the routing table and change the block list; give --admin-token (or EDGESTEER_ADMIN_TOKENS), or bind it to 127.0.0.1");
        }
        if !insecure_admin_plaintext {
            anyhow::bail!("the admin listener on {admin} is plain HTTP off loopback: its tokens would cross the network in clear; bind it to 127.0.0.1 (reach it over SSH or a local agent), or pass --insecure-admin-plaintext to accept that");
        }
        tracing::warn!(%admin, "admin listener off loopback in plain HTTP (--insecure-admin-plaintext): its tokens cross the network unencrypted");
    }
    if !opts.tls_listen.is_empty() && opts.tls_certs.is_empty() {
        anyhow::bail!("--tls-listen needs at least one --tls-cert CERT.pem:KEY.pem");
    }
    let follow = args.control.map(|url| Follow {
        url,
        epoch,
        token,
        name,
        cache: Some(cache),
        report_every: Duration::from_millis(args.report_interval_ms.max(50)),
        extra_trust: args.trust,
    });
    let server = proxy_server_with_tls(steer, &opts, follow, &tls)?;
    server::run(server, Some(runtime))
}

/// Saves the table a proxy starts with as the last good one, so that a
/// restart while the config service is away has it (the watch saves each
/// later version). A failure is logged: the proxy serves anyway.
fn save_first(cache: &std::path::Path, start: &Start) {
    match edgesteer_proxy::watch::save_cache(cache, start.version, start.epoch.clone(), &start.spec)
    {
        Ok(()) => {
            tracing::info!(version = start.version, cache = %cache.display(), "saved the first table as the last good one")
        }
        Err(e) => {
            tracing::warn!(version = start.version, cache = %cache.display(), error = %e, "cannot save the first table; a restart while the config service is away will not find it (check that the directory is writable, or give --cache)")
        }
    }
}

/// The table a proxy starts with, and where it came from.
struct Start {
    version: u64,
    /// The store epoch of `version`, when it came from a service.
    epoch: Option<String>,
    spec: TableSpec,
    /// From the config service just now (not the cache, not --config).
    from_service: bool,
}

/// The table a proxy starts with: with --control, the cached last good
/// table, else the service's current one, else --config; without, --config.
fn initial_table(
    args: &ProxyArgs,
    cache: &std::path::Path,
    token: Option<String>,
    name: &str,
    tls: &ClientTls,
) -> anyhow::Result<Start> {
    // A file table is version 1 on its own; as a fallback while a service
    // is configured it is version 0, so the first watch fetches any version.
    let from_file = |path: &PathBuf, version: u64| -> anyhow::Result<Start> {
        let spec = read_table(path)?.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Start {
            version,
            epoch: None,
            spec,
            from_service: false,
        })
    };
    let Some(url) = &args.control else {
        return match &args.config {
            Some(p) => from_file(p, 1),
            None => {
                anyhow::bail!("give --config FILE, or --control URL to follow a config service")
            }
        };
    };
    // Bad TLS settings are an error before any table is served.
    let client = Client::with_tls(url, token, tls)?;
    if let Some(c) = edgesteer_proxy::watch::load_cache(cache) {
        if edgesteer_config::compile(&c.table).is_ok() {
            tracing::info!(version = c.version, cache = %cache.display(), "starting from the cached last good table");
            return Ok(Start {
                version: c.version,
                epoch: c.epoch,
                spec: c.table,
                from_service: false,
            });
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A watch from version 0 answers with the current table at once, and
    // needs only the `proxy` role.
    let first = rt.block_on(client.watch(0, None, name, Duration::from_secs(2)));
    match first.and_then(|v| {
        v.ok_or(edgesteer_control_api::client::ClientError::Protocol(
            "the service has no table yet".into(),
        ))
    }) {
        Ok(v) => Ok(Start {
            version: v.version,
            epoch: (!v.epoch.is_empty()).then_some(v.epoch),
            spec: v.table,
            from_service: true,
        }),
        Err(e) => match &args.config {
            Some(p) => {
                tracing::warn!(error = %e, "config service unreachable and no cache; starting from --config");
                from_file(p, 0)
            }
            None => Err(anyhow::anyhow!(
                "no table to start with: {e}; no cached table at {}",
                cache.display()
            )),
        },
    }
}
