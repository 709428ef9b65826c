//! Upkeep off the request path, as three background services, each on a
//! runtime (thread) of its own, so bulk work cannot delay what is timed:
//! - `health`: probes, hostname resolution and the ejection sweep,
//!   following the live table (a probe's RTT is measured on a thread that
//!   nothing else keeps busy);
//! - `ratelimit`: the fleet store's sync (its staleness window is 1 s, and
//!   a late round turns `fail_closed` policies into 503s) and the sweep of
//!   idle keys (on the blocking pool: up to 32 maps of 1M keys);
//! - `maintenance`: geo database reloads and origin certificate rotation,
//!   every 5 s, their file reads on the blocking pool.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use edgesteer_health::service::{PlanFn, SweepFn};
use edgesteer_health::{DnsConfig, ProbeTarget};
use edgesteer_ratelimit::global::SyncConfig;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};

use crate::steer::{Snapshot, Steering};

/// Adds the three upkeep services to `server`, one thread each.
pub fn add_services(
    server: &mut Server,
    steer: &Arc<Steering>,
    dns: DnsConfig,
    redis: Option<SyncConfig>,
) {
    let health = HealthUpkeep {
        steer: steer.clone(),
        dns,
    };
    add_one_thread(server, "health", health);
    let limits = LimitUpkeep {
        steer: steer.clone(),
        redis,
    };
    add_one_thread(server, "ratelimit", limits);
    let files = FileUpkeep {
        steer: steer.clone(),
    };
    add_one_thread(server, "maintenance", files);
}

/// Adds `service` as a background service on a runtime of one thread.
fn add_one_thread<S: BackgroundService + Send + Sync + 'static>(
    server: &mut Server,
    name: &str,
    service: S,
) {
    let mut s = background_service(name, service);
    s.threads = Some(1);
    server.add_service(s);
}

/// What the health service probes: every backend of the live table with
/// its region's settings and TLS, rebuilt only when a table was installed
/// since the last call (a certificate rotation installs the same version
/// again, so the snapshot itself is compared, not its version).
pub fn probe_plan(steer: Arc<Steering>) -> PlanFn {
    let last: Mutex<Weak<Snapshot>> = Mutex::new(Weak::new());
    Arc::new(move || {
        let snap = steer.current();
        {
            let mut seen = last.lock().unwrap_or_else(|p| p.into_inner());
            if seen.upgrade().is_some_and(|s| Arc::ptr_eq(&s, &snap)) {
                return None;
            }
            *seen = Arc::downgrade(&snap);
        }
        Some((snap.version, targets(&snap)))
    })
}

/// Every backend of `snap` as a probe target (one allocation per target
/// and per string in it: the cost a plan rebuild has).
pub fn targets(snap: &Snapshot) -> Vec<ProbeTarget> {
    snap.table
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
        .collect()
}

struct HealthUpkeep {
    steer: Arc<Steering>,
    dns: DnsConfig,
}

#[async_trait]
impl BackgroundService for HealthUpkeep {
    async fn start(&self, shutdown: ShutdownWatch) {
        let steer = self.steer.clone();
        let sweep: SweepFn = Arc::new(move |now| steer.registry.sweep(now));
        let plan = probe_plan(self.steer.clone());
        edgesteer_health::service::run(plan, sweep, self.dns.clone(), shutdown).await;
    }
}

/// How often idle rate-limit keys and expired blocks are dropped.
const LIMIT_SWEEP: Duration = Duration::from_secs(1);

struct LimitUpkeep {
    steer: Arc<Steering>,
    redis: Option<SyncConfig>,
}

#[async_trait]
impl BackgroundService for LimitUpkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let limiter = self.steer.limiter.clone();
        let sweeper = tokio::spawn(limiter.clone().run_sweeper(LIMIT_SWEEP));
        let syncer = self
            .redis
            .clone()
            .map(|cfg| tokio::spawn(edgesteer_ratelimit::global::run_sync(limiter, cfg)));
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        sweeper.abort();
        if let Some(s) = syncer {
            s.abort();
        }
    }
}

struct FileUpkeep {
    steer: Arc<Steering>,
}

#[async_trait]
impl BackgroundService for FileUpkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut certs = crate::cert_watch::CertWatch::default();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut first = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            certs = reload_files(self.steer.clone(), certs, !first).await;
            first = false;
        }
    }
}

/// The files the live state is read from, checked for changes: the geo
/// database (unless `geo`) and the origin certificates. They are read off
/// the async runtime (a blocking-pool thread), as a table compile reads the
/// files it names.
async fn reload_files(
    steer: Arc<Steering>,
    mut certs: crate::cert_watch::CertWatch,
    geo: bool,
) -> crate::cert_watch::CertWatch {
    let checked = tokio::task::spawn_blocking(move || {
        if geo {
            if let Err(e) = steer.geo.reload_if_changed() {
                tracing::warn!(error = %e, "geo database not reloaded; the previous one keeps serving");
            }
        }
        certs.check(&steer);
        certs
    })
    .await;
    checked.unwrap_or_else(|e| {
        tracing::error!(error = %e, "checking the geo database and origin certificates failed; they are checked again at the next tick (please report this)");
        crate::cert_watch::CertWatch::default()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The plan is built on the first call and after every install (the
    /// same version installed again included), and not in between.
    #[test]
    fn the_probe_plan_is_rebuilt_only_after_an_install() {
        let steer = crate::steer::covergen_for_tests();
        let plan = super::probe_plan(steer.clone());
        let (version, targets) = plan().unwrap();
        assert_eq!(version, 1);
        assert_eq!(targets.len(), steer.current().table.backends.len());
        assert!(plan().is_none());
        assert!(plan().is_none());
        let snap = steer.current();
        let table = edgesteer_config::compile(&snap.spec).unwrap();
        steer.install(1, snap.spec.as_ref().clone(), table);
        assert!(
            plan().is_some_and(|(v, _)| v == 1),
            "a same-version install is planned"
        );
        assert!(plan().is_none());
    }
}
