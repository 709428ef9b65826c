//! The background health service: one probe task per backend of each
//! region (probing each of its endpoints), one DNS task per hostname
//! backend, and the sweep that ends passive ejections. It follows the live
//! table: every tick it asks for the current plan and starts, restarts or
//! stops tasks to match (a task follows its state object, settings and TLS
//! material, not the table version).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edgesteer_config::model::HealthSettings;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::probe::{jitter, probe};
use crate::state::{now_ms, BackendState};
pub use crate::tls::ProbeTls;

/// One backend to watch, with the settings of its region.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    pub region: String,
    pub state: Arc<BackendState>,
    pub settings: HealthSettings,
    /// TLS to the backend, as its region's upstream settings say.
    pub tls: Option<ProbeTls>,
}

/// Where hostnames are resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DnsConfig {
    /// `/etc/resolv.conf` and the hosts file.
    #[default]
    System,
    /// These name servers (UDP and TCP), e.g. `127.0.0.1:53`.
    Servers(Vec<SocketAddr>),
}

/// Supplies the current plan, `(table version, targets)`, or `None` when
/// nothing was installed since the last call (the service then only
/// restarts tasks that ended; at 20,000 backends, rebuilding the plan every
/// tick would allocate about 600,000 times a second for nothing).
pub type PlanFn = Arc<dyn Fn() -> Option<(u64, Vec<ProbeTarget>)> + Send + Sync>;
/// Ends expired ejections (called every tick).
pub type SweepFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A running probe: what it was started with, and its task.
struct Probe {
    state: Arc<BackendState>,
    settings: HealthSettings,
    tls: Option<ProbeTls>,
    handle: JoinHandle<()>,
}

impl Probe {
    /// Whether `t` asks for something else than this probe does: another
    /// state object (the backend was removed and added again), other
    /// settings, other TLS material (its fingerprint hashes the CA and
    /// client certificate, which a rotation changes under the same table
    /// version), or the task ended.
    fn differs(&self, t: &ProbeTarget) -> bool {
        !Arc::ptr_eq(&self.state, &t.state)
            || self.settings != t.settings
            || self.tls != t.tls
            || self.handle.is_finished()
    }
}

/// Probes and resolvers are per (region, address): a backend listed in two
/// regions is probed with each region's settings into each region's state.
type TaskKey = (String, String);

/// Runs until `shutdown` turns true.
pub async fn run(
    plan: PlanFn,
    sweep: SweepFn,
    dns: DnsConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut probes: HashMap<TaskKey, Probe> = HashMap::new();
    let mut resolvers: HashMap<TaskKey, (Arc<BackendState>, Duration, JoinHandle<()>)> =
        HashMap::new();
    let mut resolver: Option<TokioResolver> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        sweep(now_ms());
        // On every install, not only a new version: a certificate rotation
        // installs the table again under the same version.
        let Some((_version, targets)) = plan() else {
            restart_ended(&mut probes);
            continue;
        };
        let first_round = first_round(targets.len());
        let mut keep = std::collections::HashSet::new();
        for t in targets {
            let forget = t.settings.dns_forget_after;
            let key: TaskKey = (t.state.region.clone(), t.state.key.clone());
            if !keep.insert(key.clone()) {
                continue; // listed twice in one region: one probe
            }
            if probes.get(&key).is_none_or(|p| p.differs(&t)) {
                if let Some(old) = probes.remove(&key) {
                    old.handle.abort();
                }
                let handle = tokio::spawn(probe_loop(
                    t.state.clone(),
                    t.settings.clone(),
                    t.tls.clone(),
                    first_round,
                ));
                let probe = Probe {
                    state: t.state.clone(),
                    settings: t.settings,
                    tls: t.tls,
                    handle,
                };
                probes.insert(key.clone(), probe);
            }
            let Some((host, port)) = t.state.host.clone() else {
                continue;
            };
            let stale = resolvers.get(&key).is_none_or(|(s, f, h)| {
                !Arc::ptr_eq(s, &t.state) || *f != forget || h.is_finished()
            });
            if stale {
                let r = match &resolver {
                    Some(r) => r.clone(),
                    None => match build_resolver(&dns) {
                        Ok(r) => resolver.insert(r).clone(),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot build the DNS resolver; hostname backends stay unresolved");
                            continue;
                        }
                    },
                };
                let task = tokio::spawn(resolve_loop(t.state.clone(), host, port, r, forget));
                if let Some((_, _, old)) = resolvers.insert(key, (t.state.clone(), forget, task)) {
                    old.abort();
                }
            }
        }
        probes.retain(|k, p| {
            keep.contains(k) || {
                p.handle.abort();
                false
            }
        });
        resolvers.retain(|k, (_, _, h)| {
            keep.contains(k) || {
                h.abort();
                false
            }
        });
    }
    for p in probes.into_values() {
        p.handle.abort();
    }
    for (_, _, h) in resolvers.into_values() {
        h.abort();
    }
}

/// Every backend is probed within this long of the process starting ...
const FIRST_ROUND: Duration = Duration::from_millis(500);
/// ... unless there are so many that this much per backend is longer (at
/// most the interval): 5,000 backends and more start no faster than the
/// steady rate of 10,000 probes a second, instead of all at once.
const FIRST_ROUND_PER_BACKEND: Duration = Duration::from_micros(100);

/// How long the first round of probes is spread over for `n` backends.
fn first_round(n: usize) -> Duration {
    let per = FIRST_ROUND_PER_BACKEND.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
    FIRST_ROUND.max(per)
}

/// Restarts probe tasks that ended (a probe task ends only if it panicked).
fn restart_ended(probes: &mut HashMap<TaskKey, Probe>) {
    for p in probes.values_mut().filter(|p| p.handle.is_finished()) {
        tracing::warn!(backend = %p.state.key, "a probe task ended; restarting it (please report this)");
        p.handle = tokio::spawn(probe_loop(
            p.state.clone(),
            p.settings.clone(),
            p.tls.clone(),
            FIRST_ROUND,
        ));
    }
}

async fn probe_loop(
    state: Arc<BackendState>,
    settings: HealthSettings,
    tls: Option<ProbeTls>,
    first_round: Duration,
) {
    // Start at a random point of the first round (or of the interval, if
    // shorter), so probes do not move in lockstep and a process that just
    // started (an upgrade's new one knows no health state) has checked
    // every backend quickly.
    let first = settings
        .interval
        .min(first_round)
        .mul_f64(rand::thread_rng().gen_range(0.0..1.0));
    tokio::time::sleep(first).await;
    loop {
        let endpoints = state.endpoints();
        let mut set = tokio::task::JoinSet::new();
        for ep in endpoints.iter().cloned() {
            let host = match &state.host {
                Some((h, p)) => format!("{h}:{p}"),
                None => ep.addr.to_string(),
            };
            let settings = settings.clone();
            let tls = tls.clone();
            set.spawn(async move {
                let report = probe(ep.addr, &host, &settings, tls.as_ref()).await;
                (ep, report)
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((ep, report)) = done {
                state.record_probe(&ep, report, &settings);
            }
        }
        let seed: u64 = rand::thread_rng().gen();
        tokio::time::sleep(jitter(settings.interval, 0.1, seed)).await;
    }
}

/// Resolves a hostname backend for as long as it is in the table. A name
/// that answers "no such name" (or no addresses) `forget_after` after its
/// last good answer loses its last addresses (`[health]
/// dns_forget_after_ms`, default 300 s: the longest TTL kept); any other
/// failure keeps them (a resolver outage must not take backends down).
async fn resolve_loop(
    state: Arc<BackendState>,
    host: String,
    port: u16,
    resolver: TokioResolver,
    forget_after: Duration,
) {
    let mut last_ok = std::time::Instant::now();
    loop {
        let wait = match resolver.lookup_ip(host.as_str()).await {
            Ok(lookup) => {
                last_ok = std::time::Instant::now();
                let mut addrs: Vec<SocketAddr> =
                    lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                addrs.sort();
                addrs.dedup();
                if state.set_addrs(&addrs) {
                    tracing::info!(backend = %state.key, addrs = ?addrs, "backend resolved");
                }
                let ttl = lookup
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now());
                ttl.clamp(Duration::from_secs(1), Duration::from_secs(300))
            }
            Err(e)
                if (e.is_nx_domain() || e.is_no_records_found())
                    && last_ok.elapsed() >= forget_after =>
            {
                // The name is gone, not the resolver: stop sending there.
                if state.set_addrs(&[]) {
                    tracing::warn!(backend = %state.key, error = %e, after = ?forget_after, "backend's name no longer resolves; its last addresses expired");
                }
                Duration::from_secs(5)
            }
            Err(e) => {
                // Keep serving the last good addresses (a resolver outage
                // must not take hostname backends down); try again soon.
                tracing::warn!(backend = %state.key, error = %e, "cannot resolve backend; keeping its last addresses");
                Duration::from_secs(5)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn build_resolver(dns: &DnsConfig) -> Result<TokioResolver, String> {
    match dns {
        DnsConfig::System => TokioResolver::builder_tokio()
            .map_err(|e| format!("reading the system DNS configuration: {e}"))?
            .build()
            .map_err(|e| e.to_string()),
        DnsConfig::Servers(servers) => {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            let config = ResolverConfig::from_parts(None, vec![], name_servers);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .build()
                .map_err(|e| e.to_string())
        }
    }
}
