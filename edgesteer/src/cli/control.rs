//! `edgesteer control`: the config service's flags, and the start-up of a
//! service (store, API listener, rollout controller) that `edgesteer demo`
//! uses too.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use edgesteer_config::TableSpec;
use edgesteer_control::{Control, Store};
use edgesteer_control_api::Token;
use edgesteer_listener::{Limits, Transport};

use super::table::read_table;

#[derive(Args, Debug)]
pub(super) struct ControlArgs {
    /// API listener. Off loopback it needs --tls-cert (or
    /// --insecure-plaintext).
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: SocketAddr,
    /// Serve plain HTTP on an address other than loopback: bearer tokens
    /// and tables then cross the network unencrypted. Only behind a
    /// TLS-terminating proxy or on a link encrypted otherwise.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Directory of the embedded store (one file per version); the default
    /// store, for one replica.
    #[arg(long, required_unless_present = "store")]
    data: Option<PathBuf>,
    /// A store shared by several replicas instead of --data:
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX (etcds:// for TLS). Any
    /// replica answers reads and takes writes; one (elected through an etcd
    /// lease) runs the rollout controller.
    #[arg(long, conflicts_with = "data")]
    store: Option<String>,
    /// This replica's name in audit records (default: host:pid).
    #[arg(long)]
    replica: Option<String>,
    /// etcd's own user as USER:PASSWORD (prefer the environment).
    #[arg(long, env = "EDGESTEER_ETCD_USER", hide_env_values = true)]
    etcd_user: Option<String>,
    /// CA (PEM) that etcd's certificate must chain to (etcds://).
    #[arg(long)]
    etcd_ca: Option<PathBuf>,
    /// Token as [ROLE:]NAME=SECRET, ROLE `ops` (the default: every write),
    /// `proxy` (watch, acks, stats) or `read`; NAME becomes the audit actor.
    /// Repeat for several; also read from EDGESTEER_TOKENS (comma-separated).
    /// Prefer --token-file: the command line shows in `ps`.
    // Parsed after clap (`all_tokens`): its error would print the secret.
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// File of tokens, one [ROLE:]NAME=SECRET per line (`#` comments).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Table stored as version 1 when the store is empty.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = edgesteer_control::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Serve HTTPS with this certificate (PEM, chain allowed); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Ask clients for a certificate signed by this CA (PEM; mTLS, needs
    /// --tls-cert). Clients without one still need a token.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// A client-certificate name (subject CN or a DNS SAN) that acts with
    /// the `proxy` role without a token; repeat for several. Needs --client-ca.
    #[arg(long = "cert-proxy", requires = "client_ca")]
    cert_proxies: Vec<String>,
    /// Open connections at most; more are closed at accept and counted
    /// (edgesteer_control_connections_refused_total).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Seconds in-flight requests may run on after SIGTERM or Ctrl-C
    /// (open watches are ended at once).
    #[arg(long, default_value_t = 5)]
    grace_period: u64,
    /// Seconds a proxy that stopped watching, acking and reporting stays
    /// in the fleet view.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    fleet_expiry_s: u64,
    /// The MaxMind-format database the console's explain
    /// (`GET /v1/explain`) classifies clients with: give the proxies' file;
    /// default: the bundled country database, as for proxies.
    #[arg(long)]
    geo_db: Option<PathBuf>,
}

/// How often the rollout controller judges running rollouts.
const ROLLOUT_TICK: Duration = Duration::from_millis(250);

/// A config service on `listen` over `store`, seeded with `seed` when the
/// store is empty. The returned future serves the API (and runs the
/// rollout controller) until `shutdown` resolves.
pub(super) async fn start_control(
    store: Arc<dyn Store>,
    tokens: Vec<Token>,
    seed: Option<TableSpec>,
    listen: SocketAddr,
    body_limit: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Arc<Control>, impl Future<Output = std::io::Result<()>>)> {
    start_control_with(
        store,
        tokens,
        seed,
        listen,
        body_limit,
        Transport::default(),
        shutdown,
    )
    .await
}

/// [`start_control`] with a transport: TLS and listener limits.
async fn start_control_with(
    store: Arc<dyn Store>,
    tokens: Vec<Token>,
    seed: Option<TableSpec>,
    listen: SocketAddr,
    body_limit: usize,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Arc<Control>, impl Future<Output = std::io::Result<()>>)> {
    let control = Control::open(store, tokens, seed).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the config service on {listen}"))?;
    let app = edgesteer_control::router(control.clone(), body_limit);
    let rollouts = control.clone();
    let served_control = control.clone();
    let serve = async move {
        let controller = tokio::spawn(edgesteer_control::rollout::run(rollouts, ROLLOUT_TICK));
        let served =
            edgesteer_control::state::serve(listener, served_control, app, transport, shutdown)
                .await;
        controller.abort();
        served
    };
    Ok((control, serve))
}

/// Refuses plain HTTP off loopback unless asked for by name, as the admin
/// listener refuses to leave loopback without a token.
fn check_plaintext(args: &ControlArgs) -> anyhow::Result<()> {
    if args.tls_cert.is_some() || args.listen.ip().is_loopback() {
        return Ok(());
    }
    anyhow::ensure!(
        args.insecure_plaintext,
        "--listen {} is not a loopback address and there is no --tls-cert: every bearer token \
         would cross the network in clear text. Give --tls-cert and --tls-key (README: \
         \"The config service's certificate\"), listen on 127.0.0.1, or pass \
         --insecure-plaintext if a TLS-terminating proxy or an encrypted link is in front",
        args.listen
    );
    tracing::warn!(listen = %args.listen, "serving plain HTTP off loopback (--insecure-plaintext): tokens cross the network unencrypted");
    Ok(())
}

pub(super) fn run_control(args: ControlArgs) -> anyhow::Result<()> {
    check_plaintext(&args)?;
    let tokens = all_tokens(args.tokens.clone(), args.token_file.as_deref())?;
    if tokens.is_empty() {
        tracing::warn!(
            "no tokens configured: every request but /healthz will be refused (give --token-file or --token [ROLE:]NAME=SECRET)"
        );
    }
    let seed = match &args.seed {
        Some(p) => Some(read_table(p)?.map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?),
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(edgesteer_listener::server_tls(
            cert,
            key,
            args.client_ca.as_deref(),
        )?),
        _ => None,
    };
    let transport = Transport {
        name: "config service",
        tls,
        limits: Limits {
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            grace_period: Duration::from_secs(args.grace_period),
            ..Limits::default()
        },
    };
    let scheme = if transport.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (store, at) = open_store(&args).await?;
        let geo = Arc::new(match &args.geo_db {
            Some(path) => edgesteer_geo::GeoDb::open(path).with_context(|| {
                format!("--geo-db {}: cannot load the geo database", path.display())
            })?,
            None => edgesteer_geo::GeoDb::bundled()?,
        });
        let terminate = stop_signal()?;
        let (control, serve) = start_control_with(
            store,
            tokens,
            seed,
            args.listen,
            args.body_limit,
            transport,
            terminate,
        )
        .await?;
        control.set_cert_proxies(args.cert_proxies.clone());
        control.set_geo_db(geo);
        control.set_fleet_expiry(Duration::from_secs(args.fleet_expiry_s));
        tracing::info!(listen = %args.listen, scheme, store = %at, version = ?control.latest().map(|r| r.version), "config service started");
        serve.await?;
        tracing::info!("config service stopped");
        Ok(())
    })
}

/// The tokens of `--token`, `EDGESTEER_TOKENS` and `--token-file`.
fn all_tokens(
    tokens: Vec<String>,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<Token>> {
    let mut tokens = super::parse_tokens("--token", &tokens)?;
    if let Ok(env) = std::env::var("EDGESTEER_TOKENS") {
        for t in env.split(',').filter(|t| !t.trim().is_empty()) {
            tokens.push(
                t.trim()
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("EDGESTEER_TOKENS: {e}"))?,
            );
        }
    }
    if let Some(path) = token_file {
        tokens.extend(edgesteer_control_api::read_token_file(path).map_err(anyhow::Error::msg)?);
    }
    Ok(tokens)
}

/// The store the service keeps its versions in, and where it is.
async fn open_store(args: &ControlArgs) -> anyhow::Result<(Arc<dyn Store>, String)> {
    Ok(match (&args.store, &args.data) {
        (Some(url), _) => {
            let replica = args
                .replica
                .clone()
                .unwrap_or_else(super::local::default_replica);
            let mut cfg =
                edgesteer_control::EtcdConfig::parse(url, replica).map_err(anyhow::Error::msg)?;
            cfg.ca = args.etcd_ca.clone();
            cfg.user = match &args.etcd_user {
                Some(u) => Some(
                    u.split_once(':')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .context("--etcd-user: give USER:PASSWORD")?,
                ),
                None => None,
            };
            let store = edgesteer_control::EtcdStore::connect(&cfg)
                .await
                .with_context(|| format!("connecting to etcd at {}", cfg.endpoints.join(",")))?;
            (Arc::new(store), url.clone())
        }
        (None, Some(dir)) => (
            Arc::new(edgesteer_control::FileStore::open(dir)?),
            dir.display().to_string(),
        ),
        (None, None) => anyhow::bail!("give --data DIR (one replica) or --store etcd://..."),
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
fn stop_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
