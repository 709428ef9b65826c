//! The health service following the live table (issue 33): probes restart
//! when their TLS or settings change under the same version, follow a state
//! re-created within one tick, and run per (region, address).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgesteer_config::model::HealthSettings;
use edgesteer_config::{parse, RoutingTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::service::{run, DnsConfig, PlanFn, ProbeTarget, SweepFn};
use crate::state::{BackendState, HealthRegistry};
use crate::tls::ProbeTls;

/// An HTTP server answering `200 OK` with `body`, counting requests.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start(body: &'static str) -> Server {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Server { addr, hits, task }
    }

    /// Stops accepting: later connections are refused.
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

fn table(regions: &[(&str, &[SocketAddr])]) -> RoutingTable {
    let mut text = format!("default_region = \"{}\"\n", regions[0].0);
    for (name, addrs) in regions {
        let list: Vec<String> = addrs
            .iter()
            .map(|a| format!("{{ address = \"{a}\" }}"))
            .collect();
        text.push_str(&format!(
            "[regions.{name}]\nbackends = [{}]\n",
            list.join(", ")
        ));
    }
    edgesteer_config::compile(&parse::from_toml(&text).unwrap()).unwrap()
}

pub(crate) fn fast() -> HealthSettings {
    HealthSettings {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(300),
        unhealthy_after: 1,
        healthy_after: 1,
        ..HealthSettings::default()
    }
}

type Plan = Arc<Mutex<(u64, Vec<ProbeTarget>)>>;

/// Binds `table` and makes its targets, each region's settings by name.
fn targets(
    reg: &HealthRegistry,
    t: &RoutingTable,
    settings: &dyn Fn(&str) -> HealthSettings,
) -> Vec<ProbeTarget> {
    let h = reg.bind(t);
    t.backends
        .iter()
        .zip(h.states())
        .map(|(b, s)| {
            let region = t.region(b.region).name.clone();
            ProbeTarget {
                settings: settings(&region),
                region,
                state: s.clone(),
                tls: None,
            }
        })
        .collect()
}

fn start(plan: &Plan) -> tokio::sync::watch::Sender<bool> {
    let p = plan.clone();
    let plan_fn: PlanFn = Arc::new(move || Some(p.lock().unwrap().clone()));
    let sweep: SweepFn = Arc::new(|_| {});
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(run(plan_fn, sweep, DnsConfig::System, rx));
    tx
}

fn probed(s: &BackendState) -> bool {
    s.endpoints()[0].with_detail(|d| d.last_probe.is_some())
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_backend_removed_and_added_again_within_a_tick_is_probed_in_its_new_state() {
    let x = Server::start("OK").await;
    let other = Server::start("OK").await;
    let reg = HealthRegistry::new();
    let same = |_: &str| fast();
    let v1 = targets(&reg, &table(&[("a", &[x.addr, other.addr])]), &same);
    let old = v1[0].state.clone();
    let plan: Plan = Arc::new(Mutex::new((1, v1)));
    let _stop = start(&plan);
    until("v1 is probed", || probed(&old)).await;

    // v2 drops X and v3 adds it back before the service's next tick.
    let _v2 = targets(&reg, &table(&[("a", &[other.addr])]), &same);
    let v3 = targets(&reg, &table(&[("a", &[x.addr, other.addr])]), &same);
    let new = v3[0].state.clone();
    assert!(!Arc::ptr_eq(&old, &new), "v3 should have a fresh state");
    *plan.lock().unwrap() = (3, v3);
    until("X's new state is probed", || probed(&new)).await;
    x.stop();
    until("X's new state turns unhealthy", || !new.is_available()).await;
}

#[tokio::test]
async fn probes_pick_up_new_tls_and_settings_under_the_same_version() {
    let x = Server::start("OK").await;
    let reg = HealthRegistry::new();
    let t = table(&[("a", &[x.addr])]);
    let v1 = targets(&reg, &t, &|_: &str| fast());
    let state = v1[0].state.clone();
    let plan: Plan = Arc::new(Mutex::new((7, v1.clone())));
    let _stop = start(&plan);
    until("probed over plain HTTP", || probed(&state)).await;
    assert!(state.is_available());

    // A certificate rotation installs the table again as version 7: the
    // region's probe TLS is new. Against a plain server a TLS probe fails.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut v1b = v1.clone();
    v1b[0].tls = Some(ProbeTls {
        config: Arc::new(config),
        name: rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        fingerprint: 2,
    });
    *plan.lock().unwrap() = (7, v1b);
    until("the probe speaks the new TLS", || !state.is_available()).await;
    let detail = state.endpoints()[0].with_detail(|d| d.last_probe.clone().unwrap().detail);
    assert!(detail.starts_with("tls:"), "{detail}");

    // Same version again, settings changed (expect another body).
    let mut v1c = v1.clone();
    v1c[0].settings.expect_body = Some("OK".into());
    *plan.lock().unwrap() = (7, v1c);
    until("the new settings probe", || state.is_available()).await;
}

#[tokio::test]
async fn a_backend_in_two_regions_is_probed_with_each_regions_settings() {
    let x = Server::start("alpha").await;
    let reg = HealthRegistry::new();
    let t = table(&[("a", &[x.addr]), ("b", &[x.addr])]);
    let per_region = |r: &str| HealthSettings {
        expect_body: Some(if r == "a" { "alpha" } else { "beta" }.into()),
        // Long: after the first round, no probe unless one restarts.
        interval: Duration::from_secs(30),
        ..fast()
    };
    let v1 = targets(&reg, &t, &per_region);
    let (a, b) = (v1[0].state.clone(), v1[1].state.clone());
    assert!(!Arc::ptr_eq(&a, &b), "each region has its own state");
    let plan: Plan = Arc::new(Mutex::new((1, v1)));
    let _stop = start(&plan);
    until("both probed", || probed(&a) && probed(&b)).await;
    assert!(a.is_available(), "region b's expect_body gated region a");
    assert!(!b.is_available());

    // New versions of the same table: nothing restarts, so no new probes.
    let hits = x.hits.load(Ordering::SeqCst);
    for v in 2..12 {
        *plan.lock().unwrap() = (v, targets(&reg, &t, &per_region));
        tokio::time::sleep(Duration::from_millis(110)).await;
    }
    assert_eq!(
        x.hits.load(Ordering::SeqCst),
        hits,
        "probes restarted on pushes"
    );
    assert!(a.is_available() && !b.is_available());
}
