//! Issue 26's control-plane findings, over a real socket: proxy names are
//! checked and only proxies are registered, no proxy speaks for another,
//! the in-memory history is bounded, explain compiles once per version,
//! and a table naming a device as a file is refused with its field.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use edgesteer_control_api::api::{Ack, PatchRegion, StatsReport};

use super::{api_code, serve, with_token, PROXY_SECRET, READ_SECRET};

fn ack_as(proxy: &str) -> Ack {
    Ack {
        proxy: proxy.into(),
        version: 1,
        status: Ack::APPLIED.into(),
        reason: None,
        epoch: None,
        build: None,
    }
}

fn field_errors(e: edgesteer_control_api::client::ClientError) -> (u16, String, Vec<String>) {
    match e {
        edgesteer_control_api::client::ClientError::Api {
            status,
            message,
            errors,
            ..
        } => (
            status,
            message,
            errors.into_iter().map(|(p, _)| p).collect(),
        ),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn a_read_token_watches_without_registering_and_names_are_checked() {
    let (_c, ops) = serve().await;
    let read = with_token(&ops, Some(READ_SECRET));
    let proxy = with_token(&ops, Some(PROXY_SECRET));
    // 50 watches by a read token under long names used to leave 50
    // entries; now a well-formed name is served and not registered...
    for i in 0..5 {
        let got = read
            .watch(0, None, &format!("viewer-{i}"), Duration::from_millis(50))
            .await
            .unwrap();
        assert_eq!(got.map(|v| v.version), Some(1));
    }
    assert!(ops.fleet().await.unwrap().proxies.is_empty());
    // ... and a long or odd name is refused (400, field `proxy`), for any
    // role and on every proxy endpoint.
    let long = "x".repeat(4000);
    for name in [long.as_str(), "p 1", "p/1", ""] {
        let e = read
            .watch(0, None, name, Duration::from_millis(50))
            .await
            .unwrap_err();
        let (status, message, fields) = field_errors(e);
        assert_eq!(
            (status, fields.as_slice()),
            (400, &["proxy".to_string()][..]),
            "{message}"
        );
        assert!(message.starts_with("proxy: "), "{message}");
        let e = proxy.ack(&ack_as(name)).await.unwrap_err();
        assert_eq!(field_errors(e).0, 400);
        let report = StatsReport {
            proxy: name.into(),
            ..StatsReport::default()
        };
        assert_eq!(
            field_errors(proxy.report_stats(&report).await.unwrap_err()).0,
            400
        );
    }
    assert!(ops.fleet().await.unwrap().proxies.is_empty());
    // A proxy token's watch registers its proxy.
    proxy
        .watch(1, None, "fleet", Duration::from_millis(50))
        .await
        .unwrap();
    let names: Vec<String> = ops
        .fleet()
        .await
        .unwrap()
        .proxies
        .into_iter()
        .map(|p| p.proxy)
        .collect();
    assert_eq!(names, ["fleet"]);
}

#[tokio::test]
async fn a_proxy_token_speaks_only_for_its_own_proxy() {
    let (c, ops) = serve().await;
    let proxy = with_token(&ops, Some(PROXY_SECRET));
    let before = c.forbidden.load(Relaxed);
    let e = proxy.ack(&ack_as("someone-else")).await.unwrap_err();
    let (status, code, message) = api_code(e);
    assert_eq!((status, code.as_str()), (403, "forbidden"), "{message}");
    assert!(
        message.contains("`fleet`") && message.contains("`someone-else`"),
        "{message}"
    );
    let report = StatsReport {
        proxy: "someone-else".into(),
        ..StatsReport::default()
    };
    assert_eq!(
        api_code(proxy.report_stats(&report).await.unwrap_err()).0,
        403
    );
    let w = proxy
        .watch(0, None, "someone-else", Duration::from_millis(50))
        .await;
    assert_eq!(api_code(w.unwrap_err()).0, 403);
    assert_eq!(c.forbidden.load(Relaxed), before + 3);
    assert!(ops.fleet().await.unwrap().proxies.is_empty());
    // As itself, all of it is taken.
    proxy.ack(&ack_as("fleet")).await.unwrap();
    let report = StatsReport {
        proxy: "fleet".into(),
        ..StatsReport::default()
    };
    proxy.report_stats(&report).await.unwrap();
}

#[tokio::test]
async fn memory_keeps_the_newest_versions_and_says_so_for_older_ones() {
    let (c, ops) = serve().await;
    c.set_history_window(3);
    for i in 0..5 {
        let change = PatchRegion {
            drain: Some(i % 2 == 0),
            reason: format!("write {i}"),
            ..PatchRegion::default()
        };
        ops.patch_region("us-east", &change).await.unwrap();
    }
    assert_eq!(c.versions.len(), 3, "memory holds more than the window");
    let h = ops.history(50).await.unwrap();
    let versions: Vec<u64> = h.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [6, 5, 4]);
    // Older versions: a clear 410, for every endpoint that reads them.
    let (status, code, message) = api_code(ops.version(1).await.unwrap_err());
    assert_eq!(
        (status, code.as_str()),
        (410, "version_out_of_window"),
        "{message}"
    );
    assert!(
        message.contains("oldest kept is 4") && message.contains("v0000000001.json"),
        "{message}"
    );
    assert_eq!(
        api_code(ops.diff(Some(1), Some(6)).await.unwrap_err()).0,
        410
    );
    assert_eq!(api_code(ops.rollback(2, "old").await.unwrap_err()).0, 410);
    // Never stored is still 404; kept ones still read.
    assert_eq!(api_code(ops.version(99).await.unwrap_err()).0, 404);
    assert_eq!(ops.version(4).await.unwrap().version, 4);
    assert!(ops.diff(Some(4), Some(6)).await.is_ok());
}

#[tokio::test]
async fn explain_compiles_once_per_version() {
    use edgesteer_geo::testdb::{self, sample_ip, Schema};
    let (c, ops) = serve().await;
    c.set_geo_db(std::sync::Arc::new(
        edgesteer_geo::GeoDb::from_bytes(testdb::build(Schema::GeoIp2, testdb::SAMPLE)).unwrap(),
    ));
    let http = reqwest::Client::new();
    let explain = || {
        http.get(format!("{}/v1/explain?ip={}", ops.base(), sample_ip("US")))
            .bearer_auth(READ_SECRET)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(explain().await.unwrap().status(), 200);
    }
    assert_eq!(
        c.compiled.compiles.load(Relaxed),
        1,
        "explain compiled per request"
    );
    let change = PatchRegion {
        canary_bps: Some(100),
        ..PatchRegion::default()
    };
    ops.patch_region("us-east", &change).await.unwrap();
    for _ in 0..2 {
        let x: serde_json::Value = explain().await.unwrap().json().await.unwrap();
        assert_eq!(x["table_version"], 2);
    }
    assert_eq!(c.compiled.compiles.load(Relaxed), 2);
}

#[tokio::test]
async fn a_table_naming_a_device_is_refused_with_its_field_and_the_service_serves_on() {
    let (_c, ops) = serve().await;
    let mut table = ops.get().await.unwrap().table;
    let region = table.regions.get_mut("us-east").unwrap();
    region.upstream = Some(edgesteer_config::wire::UpstreamSpec {
        tls: Some(true),
        ca: Some("/dev/zero".into()),
        ..Default::default()
    });
    let e = ops.put(&table, "a device as a CA", None).await.unwrap_err();
    let (status, message, fields) = field_errors(e);
    assert!((400..500).contains(&status), "{status} {message}");
    assert!(
        fields.iter().any(|f| f == "regions.us-east.upstream.ca"),
        "{fields:?} {message}"
    );
    // Nothing stored; the service answers reads and writes as before.
    assert_eq!(ops.get().await.unwrap().version, 1);
    let change = PatchRegion {
        drain: Some(true),
        ..PatchRegion::default()
    };
    assert_eq!(
        ops.patch_region("us-east", &change).await.unwrap().version,
        2
    );
}

/// Another replica's seed lands between this one's look at the empty store
/// and its own commit of version 1.
struct SeededMeanwhile(crate::MemoryStore, std::sync::atomic::AtomicBool);

#[async_trait::async_trait]
impl crate::store::Store for SeededMeanwhile {
    async fn load(&self) -> Result<Vec<crate::store::VersionRecord>, crate::store::StoreError> {
        self.0.load().await
    }
    async fn append(
        &self,
        r: &crate::store::VersionRecord,
    ) -> Result<(), crate::store::StoreError> {
        if !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut theirs = r.clone();
            theirs.audit.actor = "other-replica".into();
            self.0.append(&theirs).await?;
        }
        self.0.append(r).await
    }
    async fn epoch(&self) -> Result<String, crate::store::StoreError> {
        self.0.epoch().await
    }
}

/// Replicas started together with the same `--seed`: the one that loses
/// the race for version 1 takes the winner's and starts (it exited with a
/// store error).
#[tokio::test]
async fn a_replica_that_loses_the_seed_race_takes_the_winners_version() {
    let seed = edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap();
    let store = SeededMeanwhile(crate::MemoryStore::default(), Default::default());
    let control = crate::Control::open(std::sync::Arc::new(store), Vec::new(), Some(seed))
        .await
        .expect("started");
    let v = control.latest().expect("a current version");
    assert_eq!((v.version, v.audit.actor.as_str()), (1, "other-replica"));
}
