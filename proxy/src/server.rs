//! Assembles the Pingora server: the proxy service with its plaintext
//! (HTTP/1.1 + h2c) and TLS (HTTP/2 via ALPN, SNI certificates) listeners,
//! the admin listener, and the maintenance task (geo reload, DNS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use edgesteer_health::service::{PlanFn, SweepFn};
use edgesteer_health::{DnsConfig, ProbeTarget};
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};

use crate::lifecycle::{RuntimeDir, Signals};
use crate::listener::AdminService;
use crate::proxy::EdgeProxy;
use crate::steer::Steering;
use crate::tls::{CertPair, SniResolver};

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Plaintext listeners (HTTP/1.1 and h2c).
    pub listen: Vec<String>,
    /// TLS listeners (HTTP/2 and HTTP/1.1 by ALPN).
    pub tls_listen: Vec<String>,
    pub tls_certs: Vec<CertPair>,
    pub admin: Option<SocketAddr>,
    /// A listener with only `/metrics` and `/healthz`, for scrapers that
    /// should not reach the admin API.
    pub metrics: Option<SocketAddr>,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Threads steal work from each other (one multi-threaded runtime);
    /// `false` (the default): one single-threaded runtime per thread, each
    /// given connections at random.
    pub work_stealing: bool,
    /// Read buffer per client connection beneath Pingora's own header and
    /// body buffers (0: none; Pingora's default is 64 KiB).
    pub read_buffer: usize,
    /// After SIGTERM (or SIGQUIT, once the listeners are handed over):
    /// seconds in-flight requests and keep-alive connections get to finish.
    /// The listeners stop accepting at once.
    pub grace_period_secs: u64,
    /// Where the upgrade socket and the pid file live; `None` (the demo)
    /// means no upgrades.
    pub runtime: Option<RuntimeDir>,
    /// Take the listeners over from the running process (`--upgrade`).
    pub upgrade: bool,
    /// Where backend hostnames are resolved.
    pub dns: DnsConfig,
    /// The shared store for `global` rate-limit policies.
    pub redis: Option<edgesteer_ratelimit::global::SyncConfig>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: vec!["0.0.0.0:8080".into()],
            tls_listen: Vec::new(),
            tls_certs: Vec::new(),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            metrics: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            work_stealing: false,
            read_buffer: 0,
            grace_period_secs: 5,
            runtime: None,
            upgrade: false,
            dns: DnsConfig::System,
            redis: None,
        }
    }
}

/// Builds the server. Fails early (before serving) on bad TLS material or a
/// taken admin port.
pub fn build(steer: Arc<Steering>, opts: &ServeOptions) -> anyhow::Result<Server> {
    // Before serving: global policies count for the syncer from the first
    // request, and fail_closed ones do not refuse while it starts.
    if let Some(r) = &opts.redis {
        steer.limiter.expect_store(r.interval);
    }
    steer
        .limiter
        .warn_if_unsynced(&steer.current().table.rate_limits);
    let upgrade_sock = match &opts.runtime {
        Some(dir) => dir.upgrade_sock(),
        None if opts.upgrade => anyhow::bail!("--upgrade needs a runtime directory"),
        // Never used: without a runtime directory SIGQUIT hands nothing over.
        None => std::path::PathBuf::from("/nonexistent/edgesteer-upgrade.sock"),
    };
    let conf = ServerConf {
        threads: opts.threads.max(1),
        work_stealing: opts.work_stealing,
        grace_period_seconds: Some(opts.grace_period_secs),
        graceful_shutdown_timeout_seconds: Some(opts.grace_period_secs.max(1)),
        upgrade_sock: upgrade_sock.to_string_lossy().into_owned(),
        // Pingora's default pid file is in /tmp; ours is in the runtime
        // directory (written by `run`).
        pid_file: String::new(),
        // Pingora's fast timeouts read the clock each time an I/O is
        // wrapped (to check their timer thread), pending or not, and that
        // thread ticks every 10 ms. Every timeout the proxy sets is a
        // second or more, so all of them go to tokio's timer instead, which
        // costs nothing until a read or write actually waits
        // (BENCHMARKS.md, issue 16).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    if let (true, Some(dir)) = (opts.upgrade, &opts.runtime) {
        crate::lifecycle::request_handoff(dir);
    }
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    // With --upgrade, this waits for the running process's listeners (and
    // exits 1 if none come, leaving that process serving).
    server.bootstrap();

    let mut app = pingora_proxy::http_proxy(&server.configuration, EdgeProxy::new(steer.clone()));
    // The limits Pingora takes only per listener apply at start, from the
    // first table (docs/design.md lists which apply live).
    let limits = steer.current().table.limits.clone();
    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    server_options.h2_idle_timeout = Some(limits.h2_idle);
    app.server_options = Some(server_options);
    // Behind the connection cap ([limits] max_connections, live).
    // TLS handshakes have the table's deadline (Pingora's own is 60 s).
    let handshakes = crate::tls_deadline::HandshakeDeadline::new(steer.clone());
    let mut proxy = pingora_core::services::listening::Service::new(
        "edgesteer".to_string(),
        crate::conn_cap::Capped::new(app, steer.clone(), handshakes.clone()),
    );
    proxy.endpoints().set_pre_tls_callback(handshakes);
    // Pingora reads each client connection through a 64 KiB buffer by
    // default, allocated when the connection is accepted: 64 MB for 1000
    // idle or slow clients. Its header (4 KiB) and body buffers are enough.
    let l4_buffer = L4BufferSettings::default().read(opts.read_buffer);
    for addr in &opts.listen {
        proxy.add_listener(ListenerConfig::tcp(addr.as_str()).l4_buffer(l4_buffer));
    }
    if !opts.tls_listen.is_empty() {
        let resolver =
            Arc::new(SniResolver::load(&opts.tls_certs).context("loading TLS certificates")?);
        tracing::info!(names = ?resolver.names(), "TLS certificates loaded");
        for addr in &opts.tls_listen {
            let mut tls = TlsSettings::intermediate("", "").context("TLS settings")?;
            tls.set_cert_resolver(resolver.clone());
            tls.enable_h2();
            proxy.add_listener(
                ListenerConfig::tcp(addr.as_str())
                    .tls(tls)
                    .l4_buffer(l4_buffer),
            );
        }
    }
    server.add_service(proxy);

    if let Some(addr) = opts.admin {
        let app = crate::admin::AdminApp::new(steer.clone());
        let admin = AdminService::new("admin", addr, app, opts.upgrade)
            .with_context(|| format!("binding the admin listener on {addr}"))?;
        server.add_service(admin);
    }
    if let Some(addr) = opts.metrics {
        let app = crate::admin::AdminApp::metrics_only(steer.clone());
        let listener = AdminService::new("metrics", addr, app, opts.upgrade)
            .with_context(|| format!("binding the metrics listener on {addr}"))?;
        server.add_service(listener);
    }
    server.add_service(background_service(
        "maintenance",
        Maintenance {
            steer,
            dns: opts.dns.clone(),
            redis: opts.redis.clone(),
        },
    ));
    Ok(server)
}

/// Serves until a signal ends it (see [`crate::lifecycle`]), then exits 0.
/// The pid file (in the runtime directory) names this process while it
/// serves, so `edgesteer proxy --upgrade` finds it.
pub fn run(server: Server, runtime: Option<RuntimeDir>) -> ! {
    if let Some(dir) = &runtime {
        if let Err(e) = dir.write_pid() {
            tracing::warn!(pid_file = %dir.pid_file().display(), error = %e, "cannot write the pid file; `--upgrade` will need SIGQUIT sent by hand");
        }
    }
    crate::lifecycle::notify_ready();
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(runtime.as_ref())),
    });
    if let Some(dir) = &runtime {
        dir.remove_pid();
    }
    tracing::info!("all connections drained; exiting");
    std::process::exit(0)
}

/// Upkeep off the request path: the health service (probes, DNS,
/// ejection sweep) following the live table, geo database reloads and
/// origin certificate rotation.
struct Maintenance {
    steer: Arc<Steering>,
    dns: DnsConfig,
    redis: Option<edgesteer_ratelimit::global::SyncConfig>,
}

/// How often idle rate-limit keys and expired blocks are dropped.
const LIMIT_SWEEP: Duration = Duration::from_secs(1);

#[async_trait]
impl BackgroundService for Maintenance {
    async fn start(&self, shutdown: ShutdownWatch) {
        let steer = self.steer.clone();
        let plan: PlanFn = Arc::new(move || {
            let snap = steer.current();
            let targets = snap
                .table
                .backends
                .iter()
                .zip(snap.health.states())
                .zip(&snap.backend_hosts)
                .map(|((b, state), host)| {
                    let region = snap.table.region(b.region);
                    let tls = snap
                        .upstream
                        .get(b.region.index())
                        .and_then(|up| crate::origin::probe_tls(up, host));
                    ProbeTarget {
                        region: region.name.clone(),
                        state: state.clone(),
                        settings: region.health.clone(),
                        tls,
                    }
                })
                .collect();
            (snap.version, targets)
        });
        let steer = self.steer.clone();
        let sweep: SweepFn = Arc::new(move |now| steer.registry.sweep(now));
        let health = tokio::spawn(edgesteer_health::service::run(
            plan,
            sweep,
            self.dns.clone(),
            shutdown.clone(),
        ));

        let limiter = self.steer.limiter.clone();
        let sweeper = tokio::spawn(limiter.clone().run_sweeper(LIMIT_SWEEP));
        let syncer = self
            .redis
            .clone()
            .map(|cfg| tokio::spawn(edgesteer_ratelimit::global::run_sync(limiter, cfg)));

        let mut shutdown = shutdown;
        let mut certs = crate::cert_watch::CertWatch::default();
        certs.check(&self.steer);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = self.steer.geo.reload_if_changed() {
                tracing::warn!(error = %e, "geo database not reloaded; the previous one keeps serving");
            }
            certs.check(&self.steer);
        }
        sweeper.abort();
        if let Some(s) = syncer {
            s.abort();
        }
        let _ = health.await;
    }
}
