//! The etcd store against a real etcd (the `etcd` binary, started here on
//! free loopback ports): shared keys under a lease and deleted with their
//! proxy, old revisions compacted, and the rollout controller's lease
//! fenced (a local deadline, and commits that compare the lease).

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, PutOptions};

use crate::store::{Audit, Store, StoreError, VersionRecord};
use crate::{EtcdConfig, EtcdStore};

/// One etcd member; killed on drop.
struct Etcd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl Etcd {
    async fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (port, peer) = (free_port(), free_port());
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{port}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{port}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer}"),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the etcd binary (scripts/setup.sh installs etcd-server)");
        let etcd = Etcd {
            child,
            port,
            _dir: dir,
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(mut c) = Client::connect([etcd.url()], None).await {
                if c.get("probe", None).await.is_ok() {
                    return etcd;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd did not start on port {port}");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn client(&self) -> Client {
        Client::connect([self.url()], None).await.unwrap()
    }

    async fn store(&self, replica: &str, tune: impl FnOnce(&mut EtcdConfig)) -> EtcdStore {
        let url = format!("etcd://127.0.0.1:{}/t", self.port);
        let mut cfg = EtcdConfig::parse(&url, replica.into()).unwrap();
        tune(&mut cfg);
        EtcdStore::connect(&cfg).await.unwrap()
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    fn resume(&self) {
        self.signal("-CONT");
    }
}

fn record(v: u64) -> VersionRecord {
    VersionRecord {
        version: v,
        table: edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap(),
        audit: Audit {
            actor: "t".into(),
            at_ms: 0,
            at: String::new(),
            action: "replace".into(),
            summary: vec![],
            reason: String::new(),
            restored: None,
        },
    }
}

async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

#[tokio::test]
async fn shared_keys_live_under_a_lease_and_go_with_their_proxy() {
    let etcd = Etcd::start().await;
    let store = etcd.store("a", |_| {}).await;
    for p in ["p1", "p2"] {
        store.publish("fleet", p, b"{}".to_vec()).await;
        store.publish("stats", p, b"{}".to_vec()).await;
    }
    let mut c = etcd.client().await;
    let all = c
        .get("/t/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), 4);
    for kv in all.kvs() {
        assert_ne!(kv.lease(), 0, "{} has no lease", kv.key_str().unwrap());
        let ttl = c.lease_time_to_live(kv.lease(), None).await.unwrap().ttl();
        assert!((1..=15).contains(&ttl), "ttl {ttl}");
    }
    // p2 expired from the register: its keys go.
    let keep: HashSet<String> = ["p1".to_string()].into();
    store.retain_shared("fleet", &keep).await;
    store.retain_shared("stats", &keep).await;
    let left = c
        .get(
            "/t/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    let mut keys: Vec<&str> = left.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["/t/fleet/a/p1", "/t/stats/a/p1"]);
    // The replica leaves (its lease ends): its keys go with it.
    let lease = left.kvs()[0].lease();
    c.lease_revoke(lease).await.unwrap();
    let gone = c
        .get("/t/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(gone.kvs().is_empty());
    // And the next share grants a new lease rather than failing.
    store.publish("fleet", "p1", b"{}".to_vec()).await;
    let back = c.get("/t/fleet/a/p1", None).await.unwrap();
    assert!(back
        .kvs()
        .first()
        .is_some_and(|kv| kv.lease() != 0 && kv.lease() != lease));
}

#[tokio::test]
async fn the_leader_compacts_old_revisions() {
    let etcd = Etcd::start().await;
    let store = etcd
        .store("a", |cfg| {
            cfg.compact_every = Duration::from_millis(300);
            cfg.compact_margin = 5;
        })
        .await;
    let mut c = etcd.client().await;
    for i in 0..30 {
        c.put("/t/noise", format!("{i}"), None).await.unwrap();
    }
    let _follow = store.follow();
    let compacted = Instant::now();
    let mut old_read = Ok(());
    while compacted.elapsed() < Duration::from_secs(10) {
        old_read = c
            .get("/t/noise", Some(GetOptions::new().with_revision(2)))
            .await
            .map(|_| ());
        if old_read.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = old_read.expect_err("revision 2 was never compacted");
    assert!(e.to_string().contains("compacted"), "{e}");
}

#[tokio::test]
async fn a_replica_cut_off_from_etcd_stops_leading_within_its_lease() {
    let etcd = Etcd::start().await;
    let store = etcd.store("a", |_| {}).await;
    let _follow = store.follow();
    assert!(wait_for(Duration::from_secs(10), || store.is_leader()).await);
    // etcd stops answering (paused): keep-alives get no answer.
    etcd.signal("-STOP");
    let cut = Instant::now();
    // When it was last seen leading (the clock read before the check, so
    // a poll that wakes late cannot stretch it).
    let mut last_leading = cut;
    let stopped = wait_for(Duration::from_secs(8), || {
        let t = Instant::now();
        let leading = store.is_leader();
        if leading {
            last_leading = t;
        }
        !leading
    })
    .await;
    etcd.resume();
    assert!(stopped, "still the leader 8 s after etcd went silent");
    // The lease (3 s) was last renewed at most ~1 s before the cut.
    let led_on = last_leading - cut;
    assert!(
        led_on <= Duration::from_millis(3200),
        "led on for {led_on:?}"
    );
}

#[tokio::test]
async fn a_controller_commit_without_the_lease_is_refused_by_etcd() {
    let etcd = Etcd::start().await;
    let store = Arc::new(etcd.store("a", |_| {}).await);
    let _follow = store.follow();
    assert!(wait_for(Duration::from_secs(10), || store.is_leader()).await);
    store.append_as_leader(&record(1)).await.unwrap();
    // Another replica holds the key now (a's lease lapsed and b took it),
    // before a's local deadline has passed.
    let mut c = etcd.client().await;
    let other = c.lease_grant(30, None).await.unwrap().id();
    c.put("/t/leader", "b", Some(PutOptions::new().with_lease(other)))
        .await
        .unwrap();
    assert!(store.is_leader(), "the local deadline has not passed yet");
    let refused = store.append_as_leader(&record(2)).await;
    assert!(
        matches!(refused, Err(StoreError::NotLeader(_))),
        "{refused:?}"
    );
    assert_eq!(store.load().await.unwrap().len(), 1);
    // An operator's write does not need the lease.
    store.append(&record(2)).await.unwrap();
}

/// A history larger than one gRPC answer may hold (4 MiB by default) is
/// read a page at a time: a replica starts, and one far behind catches up
/// (both once failed with "decoded message length too large").
#[tokio::test]
async fn a_history_past_one_answers_limit_loads_in_pages() {
    let etcd = Etcd::start().await;
    let store = etcd.store("a", |_| {}).await;
    let big = |v: u64| {
        let mut r = record(v);
        r.table.description = Some(format!("{v}:{}", "x".repeat(200_000)));
        r
    };
    for v in 1..=40 {
        store.append(&big(v)).await.unwrap();
    }
    let fresh = etcd.store("b", |_| {}).await;
    let all = fresh.load().await.unwrap();
    let versions: Vec<u64> = all.iter().map(|r| r.version).collect();
    assert_eq!(versions, (1..=40).collect::<Vec<_>>());
    assert!(all[39]
        .table
        .description
        .as_deref()
        .unwrap()
        .starts_with("40:"));
    let after: Vec<u64> = fresh
        .load_after(3)
        .await
        .unwrap()
        .iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(after, (4..=40).collect::<Vec<_>>());
}

/// A write etcd does not answer may still commit: it is reported as
/// unconfirmed ("look at the history"), never as "not stored".
#[tokio::test]
async fn a_write_etcd_does_not_answer_is_unconfirmed() {
    let etcd = Etcd::start().await;
    let store = etcd.store("a", |_| {}).await;
    etcd.signal("-STOP");
    let r = store.append(&record(1)).await;
    etcd.resume();
    assert!(matches!(r, Err(StoreError::Unconfirmed(_))), "{r:?}");
}
