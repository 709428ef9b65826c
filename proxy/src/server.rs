//! Assembles the Pingora server: the proxy service with its plaintext
//! (HTTP/1.1 + h2c) and TLS (HTTP/2 via ALPN, SNI certificates) listeners,
//! the admin listener, and the upkeep services (`crate::upkeep`); runs it,
//! and ends the process once a graceful shutdown has nothing left in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use edgesteer_health::DnsConfig;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{ExecutionPhase, RunArgs, Server};
use pingora_core::services::background::background_service;
use tokio::sync::broadcast::error::RecvError;

use crate::lifecycle::{RuntimeDir, Signals};
use crate::listener::AdminService;
use crate::proxy::EdgeProxy;
use crate::steer::Steering;
use crate::tls::{CertPair, SniResolver};
use crate::tls_deadline::HandshakeDeadline;

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
    /// SO_SNDBUF for each client connection (0: the kernel's autotuning).
    pub send_buffer: usize,
    /// The most a TLS client's connection holds encrypted for it in the
    /// proxy (rustls's send buffer; 0: rustls's default, 64 KiB).
    pub tls_send_buffer: usize,
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
    /// Authoritative GeoDNS (`--dns-listen`).
    pub geodns: Option<crate::geodns::GeoDnsOptions>,
}

/// The default `--tls-send-buffer`: one TLS record's plaintext (16 KiB), so
/// a client that stops reading holds one record in rustls, not four, also
/// where no pipe budget waits for rustls (vendor/README.md parts 14-15).
pub const TLS_SEND_BUFFER: usize = 16 * 1024;

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
            send_buffer: 0,
            tls_send_buffer: TLS_SEND_BUFFER,
            grace_period_secs: 5,
            runtime: None,
            upgrade: false,
            dns: DnsConfig::System,
            redis: None,
            geodns: None,
        }
    }
}

/// A proxy's Pingora server, with what its shutdown waits for.
pub struct ProxyServer {
    /// Add services here before [`run`].
    pub server: Server,
    drain: Drain,
}

/// What a graceful shutdown waits for: the proxy's client connections
/// (each in-flight request is on one; idle keep-alive connections close
/// when the listeners stop), TLS handshakes under way, and the admin and
/// metrics listeners' own drain.
#[derive(Clone)]
struct Drain {
    steer: Arc<Steering>,
    handshakes: Arc<HandshakeDeadline>,
}

impl Drain {
    fn idle(&self) -> bool {
        self.steer.metrics.connections_open.get() <= 0
            && self.handshakes.in_progress() == 0
            && crate::listener::serving() == 0
    }
}

/// Builds the server. Fails early (before serving) on bad TLS material, a
/// taken admin port, or `--upgrade` with no proxy to take over from.
pub fn build(steer: Arc<Steering>, opts: &ServeOptions) -> anyhow::Result<ProxyServer> {
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
    let conf = server_conf(opts, &upgrade_sock);
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    // What can fail on this host's files or ports is done before the
    // running process is asked to hand its listeners over (`--upgrade`):
    // a bad certificate then exits 1 with that process still serving. It
    // was loaded after the hand-off, and the old process drained and exited
    // behind a successor that had just failed.
    let edge_tls = EdgeTls::load(opts)?;
    let geodns = match &opts.geodns {
        Some(g) => Some(crate::geodns::GeoDnsService::bind(steer.clone(), g)?),
        None => None,
    };
    if let (true, Some(dir)) = (opts.upgrade, &opts.runtime) {
        crate::lifecycle::request_handoff(dir)?;
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
    let handshakes = HandshakeDeadline::new(steer.clone()).context("the TLS handshake gauge")?;
    let drain = Drain {
        steer: steer.clone(),
        handshakes: handshakes.clone(),
    };
    let mut proxy = pingora_core::services::listening::Service::new(
        "edgesteer".to_string(),
        crate::conn_cap::Capped::new(app, steer.clone(), handshakes.clone()),
    );
    proxy.endpoints().set_pre_tls_callback(handshakes);
    add_listeners(&mut proxy, opts, edge_tls)?;
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
    if let Some(service) = geodns {
        let mut dns = background_service("geodns", service);
        // UDP is served on its own threads (one per socket); this runtime
        // has TCP and the edge probes.
        dns.threads = Some(1);
        server.add_service(dns);
    }
    crate::upkeep::add_services(&mut server, &steer, opts.dns.clone(), opts.redis.clone());
    Ok(ProxyServer { server, drain })
}

/// Pingora's server settings for these options.
fn server_conf(opts: &ServeOptions, upgrade_sock: &std::path::Path) -> ServerConf {
    ServerConf {
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
    }
}

/// Linux clamps `SO_SNDBUF` to `net.core.wmem_max` without an error:
/// say so at start rather than let ops believe a larger cap holds.
fn warn_if_clamped(send_buffer: usize) {
    const WMEM_MAX: &str = "/proc/sys/net/core/wmem_max";
    if send_buffer == 0 {
        return;
    }
    let max = std::fs::read_to_string(WMEM_MAX)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    if let Some(max) = max.filter(|&max| send_buffer > max) {
        tracing::warn!(
            send_buffer,
            wmem_max = max,
            "--send-buffer is above net.core.wmem_max: the kernel clamps each client's send \
             buffer to {max} bytes (raise the sysctl to use more)"
        );
    }
}

/// The proxy's plaintext and TLS listeners.
/// The edge's TLS material, loaded (and checked) before anything serves.
struct EdgeTls {
    resolver: Arc<SniResolver>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

impl EdgeTls {
    /// `None` without TLS listeners.
    fn load(opts: &ServeOptions) -> anyhow::Result<Option<EdgeTls>> {
        if opts.tls_listen.is_empty() {
            return Ok(None);
        }
        let resolver =
            Arc::new(SniResolver::load(&opts.tls_certs).context("loading TLS certificates")?);
        tracing::info!(names = ?resolver.names(), "TLS certificates loaded");
        // Stateless session tickets, so a returning client resumes without
        // a full handshake whatever the number of clients (the rustls
        // default is a stateful cache of 256 sessions). One ticketer for
        // every TLS listener, so a ticket resumes on any of them; its keys
        // are this process's own, rotated every 6 hours: a ticket does not
        // resume on another proxy or after an upgrade.
        let ticketer = rustls::crypto::ring::Ticketer::new().context("TLS session tickets")?;
        Ok(Some(EdgeTls { resolver, ticketer }))
    }
}

fn add_listeners<A>(
    proxy: &mut pingora_core::services::listening::Service<A>,
    opts: &ServeOptions,
    edge_tls: Option<EdgeTls>,
) -> anyhow::Result<()> {
    // Pingora reads each client connection through a 64 KiB buffer by
    // default, allocated when the connection is accepted: 64 MB for 1000
    // idle or slow clients. Its header (4 KiB) and body buffers are enough.
    let l4_buffer = L4BufferSettings::default().read(opts.read_buffer);
    // A capped send buffer bounds what the kernel holds for a client that
    // reads slowly (Pingora sets it on each accepted connection).
    warn_if_clamped(opts.send_buffer);
    let tcp = |addr: &str| {
        let config = ListenerConfig::tcp(addr).l4_buffer(l4_buffer);
        if opts.send_buffer == 0 {
            return config;
        }
        let mut socket = TcpSocketOptions::default();
        socket.tcp_snd_buf = Some(opts.send_buffer);
        config.tcp_socket_options(socket)
    };
    for addr in &opts.listen {
        proxy.add_listener(tcp(addr));
    }
    if let Some(EdgeTls { resolver, ticketer }) = edge_tls {
        for addr in &opts.tls_listen {
            let mut tls = TlsSettings::intermediate("", "").context("TLS settings")?;
            tls.set_cert_resolver(resolver.clone());
            tls.enable_h2();
            let ticketer = ticketer.clone();
            tls.set_server_config_tune(Box::new(move |config| config.ticketer = ticketer));
            // What rustls holds encrypted for a client that stopped reading
            // (vendor/README.md part 14); the rest waits in the pipe and upstream.
            if opts.tls_send_buffer > 0 {
                tls.set_send_buffer_limit(Some(opts.tls_send_buffer));
            }
            proxy.add_listener(tcp(addr).tls(tls));
        }
    }
    Ok(())
}

/// Serves until a signal ends it (see [`crate::lifecycle`]), then exits 0.
/// The pid file (in the runtime directory) names this process while it
/// serves, so `edgesteer proxy --upgrade` finds it.
pub fn run(proxy: ProxyServer, runtime: Option<RuntimeDir>) -> ! {
    let ProxyServer { server, drain } = proxy;
    if let Some(dir) = &runtime {
        if let Err(e) = dir.write_pid() {
            tracing::warn!(pid_file = %dir.pid_file().display(), error = %e, "cannot write the pid file; `edgesteer proxy --upgrade` will not find this process (check the runtime directory)");
        }
    }
    exit_when_drained(&server, drain, runtime.clone());
    crate::lifecycle::notify_ready();
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals::new(runtime.as_ref())),
    });
    finish(runtime.as_ref(), "all connections drained; exiting")
}

/// How often a graceful shutdown looks at what is left in flight.
const DRAIN_POLL: Duration = Duration::from_millis(25);

/// Pingora sleeps the whole grace period once the listeners stop (after
/// SIGTERM, or after an upgrade's overlap), whether anything is in flight
/// or not. From the moment that period starts, this watches the proxy's
/// connections and TLS handshakes, and ends the process as soon as none
/// is left, so an idle proxy exits at once and a busy one when its last
/// request is answered. Pingora's sleep stays the upper bound.
fn exit_when_drained(server: &Server, drain: Drain, runtime: Option<RuntimeDir>) {
    let mut phases = server.watch_execution_phase();
    let spawned = std::thread::Builder::new()
        .name("drain-watch".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
            // Idle twice in a row: a connection between its handshake and
            // its first count is never missed.
            let mut idle = 0;
            while idle < 2 {
                std::thread::sleep(DRAIN_POLL);
                idle = if drain.idle() { idle + 1 } else { 0 };
            }
            // The access log's writer takes a finished line at once; this
            // gives it time to write the last ones.
            std::thread::sleep(Duration::from_millis(50));
            finish(
                runtime.as_ref(),
                "nothing in flight; exiting before the grace period ends",
            )
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the drain watch; a graceful shutdown will take the whole grace period");
    }
}

/// The end of the process: the pid file goes (if still ours), exit 0.
/// Called by whichever comes first, the drain watch or the end of
/// Pingora's grace period; the other waits here until the process is gone.
/// Directories removed when the process ends (the demo's scratch PKI).
static REMOVE_AT_EXIT: std::sync::Mutex<Vec<std::path::PathBuf>> =
    std::sync::Mutex::new(Vec::new());

/// Removes `dir` when this process ends through [`run`], on the exiting
/// thread itself, so no exit path can outrun it.
pub fn remove_at_exit(dir: std::path::PathBuf) {
    REMOVE_AT_EXIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(dir);
}

/// Removes `dir` whole, trying again briefly while the process's other
/// threads (still running until the exit) may write into it: a file
/// created during a removal makes it fail with "directory not empty".
pub fn remove_dir_settled(dir: &std::path::Path) {
    for _ in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return,
        }
    }
    tracing::warn!(dir = %dir.display(), "could not remove a temporary directory at exit");
}

fn finish(runtime: Option<&RuntimeDir>, why: &str) -> ! {
    static EXITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = EXITING.lock();
    if let Some(dir) = runtime {
        dir.remove_pid();
    }
    let dirs = std::mem::take(
        &mut *REMOVE_AT_EXIT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for d in dirs {
        remove_dir_settled(&d);
    }
    tracing::info!("{why}");
    std::process::exit(0)
}
