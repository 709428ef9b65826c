//! GeoDNS in the proxy process (`edgesteer proxy --dns-listen`): the DNS
//! server reads the very snapshot HTTP requests read (table, health view,
//! version), so a push, a drain or a backend going down changes both
//! planes at the same instant. It runs as its own Pingora service, on its
//! own threads, so DNS load never queues behind HTTP or maintenance.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use edgesteer_config::model::RoutingTable;
use edgesteer_config::route::HealthView;
use edgesteer_dns::{Bound, DnsServer, Plane, TcpLimits};
use edgesteer_geo::GeoDb;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::steer::Steering;

/// `--dns-listen` and its settings.
#[derive(Clone, Debug)]
pub struct GeoDnsOptions {
    pub listen: SocketAddr,
    /// Threads, each with its own UDP socket.
    pub threads: usize,
    pub tcp: TcpLimits,
}

impl Plane for Steering {
    fn with_current<R>(&self, f: impl FnOnce(u64, &RoutingTable, &dyn HealthView) -> R) -> R {
        let snap = self.peek();
        f(snap.version, &snap.table, &snap.health)
    }
}

/// The DNS listeners as a Pingora service.
pub struct GeoDnsService {
    server: Arc<DnsServer<Steering, GeoDb>>,
    bound: Mutex<Option<Bound>>,
}

impl GeoDnsService {
    /// Binds the sockets now, so a taken port fails the start.
    pub fn bind(steer: Arc<Steering>, opts: &GeoDnsOptions) -> anyhow::Result<GeoDnsService> {
        let bound = Bound::bind(opts.listen, opts.threads).map_err(|e| {
            anyhow::anyhow!(
                "binding the DNS listener on {} (UDP and TCP): {e}",
                opts.listen
            )
        })?;
        let metrics = edgesteer_dns::metrics::DnsMetrics::new(&steer.metrics.registry)
            .map_err(|e| anyhow::anyhow!("registering DNS metrics: {e}"))?;
        let geo = steer.geo.clone();
        tracing::info!(listen = %opts.listen, threads = opts.threads, "GeoDNS listening (UDP and TCP)");
        Ok(GeoDnsService {
            server: Arc::new(DnsServer::new(steer, geo, metrics, opts.tcp)),
            bound: Mutex::new(Some(bound)),
        })
    }
}

#[async_trait]
impl BackgroundService for GeoDnsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let bound = self.bound.lock().ok().and_then(|mut b| b.take());
        let Some(bound) = bound else {
            tracing::error!(
                "the DNS service was started twice; its sockets serve the first start only"
            );
            return;
        };
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        edgesteer_dns::serve(self.server.clone(), bound, stop).await;
    }
}
