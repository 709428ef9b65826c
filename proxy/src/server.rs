//! Assembles the Pingora server: the proxy service with its plaintext
//! (HTTP/1.1 + h2c) and TLS (HTTP/2 via ALPN, SNI certificates) listeners,
//! the admin listener, and the maintenance task (geo reload, DNS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use edgesteer_config::model::BackendAddr;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};

use crate::admin::AdminService;
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
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Seconds to keep serving after SIGTERM/SIGQUIT before closing listeners.
    pub grace_period_secs: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: vec!["0.0.0.0:8080".into()],
            tls_listen: Vec::new(),
            tls_certs: Vec::new(),
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            grace_period_secs: 5,
        }
    }
}

/// Builds the server. Fails early (before serving) on bad TLS material or a
/// taken admin port.
pub fn build(steer: Arc<Steering>, opts: &ServeOptions) -> anyhow::Result<Server> {
    let conf = ServerConf {
        threads: opts.threads.max(1),
        grace_period_seconds: Some(opts.grace_period_secs),
        graceful_shutdown_timeout_seconds: Some(opts.grace_period_secs.max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(Opt::default()), conf);
    server.bootstrap();

    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        EdgeProxy::new(steer.clone()),
        "edgesteer",
    );
    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    if let Some(app) = proxy.app_logic_mut() {
        app.server_options = Some(server_options);
    }
    for addr in &opts.listen {
        proxy.add_tcp(addr);
    }
    if !opts.tls_listen.is_empty() {
        let resolver =
            Arc::new(SniResolver::load(&opts.tls_certs).context("loading TLS certificates")?);
        tracing::info!(names = ?resolver.names(), "TLS certificates loaded");
        for addr in &opts.tls_listen {
            let mut tls = TlsSettings::intermediate("", "").context("TLS settings")?;
            tls.set_cert_resolver(resolver.clone());
            tls.enable_h2();
            proxy.add_tls_with_settings(addr, None, tls);
        }
    }
    server.add_service(proxy);

    if let Some(addr) = opts.admin {
        let admin = AdminService::bind(addr, steer.clone())
            .with_context(|| format!("binding the admin listener on {addr}"))?;
        server.add_service(background_service("admin", admin));
    }
    server.add_service(background_service("maintenance", Maintenance { steer }));
    Ok(server)
}

/// Periodic upkeep off the request path: reload the geo database when its
/// file changes, and resolve backends named by hostname.
struct Maintenance {
    steer: Arc<Steering>,
}

#[async_trait]
impl BackgroundService for Maintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if n.is_multiple_of(5) {
                if let Err(e) = self.steer.geo.reload_if_changed() {
                    tracing::warn!(error = %e, "geo database not reloaded; the previous one keeps serving");
                }
            }
            if n.is_multiple_of(30) {
                resolve_hostnames(&self.steer).await;
            }
            n = n.wrapping_add(1);
        }
    }
}

async fn resolve_hostnames(steer: &Steering) {
    let snap = steer.current();
    for (b, state) in snap.table.backends.iter().zip(snap.health.states()) {
        let BackendAddr::Host { host, port } = &b.addr else {
            continue;
        };
        match tokio::net::lookup_host((host.as_str(), *port)).await {
            Ok(mut addrs) => {
                let first = addrs.next();
                if state.addr() != first {
                    tracing::info!(backend = %b.key, addr = ?first, "backend resolved");
                }
                state.set_addr(first);
            }
            Err(e) => {
                if state.addr().is_some() {
                    tracing::warn!(backend = %b.key, error = %e, "backend no longer resolves");
                }
                state.set_addr(None);
            }
        }
    }
}
