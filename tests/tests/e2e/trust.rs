//! Control-plane trust with real processes: roles on every endpoint, a
//! fleet view that shows rejections, store epochs, the data-directory lock,
//! and an admin listener that will not face the network without a token.

use std::time::Duration;

use edgesteer_config::TableSpec;
use edgesteer_control::api::{Ack, PatchRegion};
use edgesteer_control::client::Client;
use edgesteer_tests::*;
use reqwest::Method;

async fn service() -> (
    Workdir,
    TableSpec,
    Vec<edgesteer::demo::DemoBackend>,
    ControlProc,
) {
    let wd = Workdir::new().unwrap();
    let (mut spec, backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(&wd.path("control-data"), Some(&seed), &[])
        .await
        .unwrap();
    (wd, spec, backends, control)
}

/// Status of a request to the service with `token`.
async fn status(c: &ControlProc, method: Method, path: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .request(method, c.url(path))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_endpoint_needs_a_token_and_the_right_role() {
    let (_wd, _spec, _b, control) = service().await;
    let endpoints = [
        (Method::GET, "/v1/table"),
        (Method::PUT, "/v1/table"),
        (Method::PATCH, "/v1/regions/us-east"),
        (Method::POST, "/v1/rollback"),
        (Method::GET, "/v1/history"),
        (Method::GET, "/v1/versions/1"),
        (Method::GET, "/v1/diff"),
        (Method::GET, "/v1/watch?after=0&timeout_ms=10"),
        (Method::GET, "/v1/fleet"),
        (Method::POST, "/v1/fleet/ack"),
        (Method::POST, "/v1/stats"),
        (Method::GET, "/v1/rollouts"),
        (Method::POST, "/v1/rollouts/us-east"),
        (Method::GET, "/metrics"),
    ];
    for (m, path) in &endpoints {
        assert_eq!(
            status(&control, m.clone(), path, None).await,
            401,
            "{m} {path}"
        );
        let wrong = status(&control, m.clone(), path, Some("not-a-token-here")).await;
        assert_eq!(wrong, 401, "{m} {path} with an unknown token");
    }
    assert_eq!(status(&control, Method::GET, "/healthz", None).await, 200);
    // Wrong roles: a proxy token cannot write or read tables; a read token
    // cannot write; an ops token cannot forge acks or stats.
    let forbidden = [
        (Method::PUT, "/v1/table", PROXY_TOKEN),
        (Method::GET, "/v1/table", PROXY_TOKEN),
        (Method::PATCH, "/v1/regions/us-east", READ_TOKEN),
        (Method::POST, "/v1/rollouts/us-east", READ_TOKEN),
        (Method::POST, "/v1/stats", OPS_TOKEN),
        (Method::POST, "/v1/fleet/ack", OPS_TOKEN),
        (Method::POST, "/v1/stats", READ_TOKEN),
    ];
    for (m, path, token) in &forbidden {
        assert_eq!(
            status(&control, m.clone(), path, Some(token)).await,
            403,
            "{m} {path}"
        );
    }
    // Nothing refused changed anything.
    let api = control.client();
    let v = api.get().await.unwrap();
    assert_eq!(v.version, 1);
    assert!(api.fleet().await.unwrap().proxies.is_empty());
    // Refusals are counted.
    let metrics = reqwest::Client::new()
        .get(control.url("/metrics"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |reason: &str| {
        metric(
            &metrics,
            &format!("edgesteer_control_auth_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    assert!(
        count("unauthenticated") >= 2.0 * endpoints.len() as f64,
        "{metrics}"
    );
    assert!(count("forbidden") >= forbidden.len() as f64, "{metrics}");
}

#[tokio::test]
async fn a_rejection_stays_in_the_fleet_view_until_a_later_version_applies() {
    let (_wd, _spec, _b, control) = service().await;
    let ops = control.client();
    let proxy = Client::new(&control.base(), Some(PROXY_TOKEN.into()));
    for v in 2..=3 {
        let change = PatchRegion {
            canary_bps: Some(v * 10),
            reason: format!("v{v}"),
            ..PatchRegion::default()
        };
        ops.patch_region("us-east", &change).await.unwrap();
    }
    let ack = |version: u64, status: &str| Ack {
        proxy: "p1".into(),
        version,
        status: status.into(),
        reason: (status == Ack::REJECTED).then(|| "does not compile here".into()),
        epoch: None,
    };
    proxy.ack(&ack(2, Ack::APPLIED)).await.unwrap();
    proxy.ack(&ack(3, Ack::REJECTED)).await.unwrap();
    // The proxy keeps serving 2 and says so: 3 stays rejected.
    proxy.ack(&ack(2, Ack::APPLIED)).await.unwrap();
    let p = ops.fleet().await.unwrap().proxies.remove(0);
    assert_eq!(p.applied_version, Some(2));
    assert_eq!(p.rejected_version, Some(3));
    assert_eq!(p.last_status.as_deref(), Some(Ack::REJECTED));
    assert_eq!(p.last_rejection.as_deref(), Some("does not compile here"));
    // `ctl fleet` shows it too.
    let out = std::process::Command::new(binary())
        .args(["ctl", "--control", &control.base(), "fleet"])
        .env("EDGESTEER_TOKEN", OPS_TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("rejected"), "{text}");
    // A later version applied clears it.
    ops.patch_region(
        "us-east",
        &PatchRegion {
            canary_bps: Some(0),
            reason: "v4".into(),
            ..PatchRegion::default()
        },
    )
    .await
    .unwrap();
    proxy.ack(&ack(4, Ack::APPLIED)).await.unwrap();
    let p = ops.fleet().await.unwrap().proxies.remove(0);
    assert_eq!(
        (
            p.applied_version,
            p.rejected_version,
            p.last_status.as_deref()
        ),
        (Some(4), None, Some(Ack::APPLIED))
    );
}

#[tokio::test]
async fn after_the_store_is_wiped_proxies_take_the_new_epoch() {
    let (wd, spec, _b, mut control) = service().await;
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: follow(&control, &wd.path("p1.cache.json"), "p1"),
        ..Default::default()
    })
    .await
    .unwrap();
    let api = control.client();
    for i in 0..4u32 {
        let change = PatchRegion {
            canary_bps: Some(i),
            reason: format!("push {i}"),
            ..PatchRegion::default()
        };
        api.patch_region("us-east", &change).await.unwrap();
    }
    let caught_up = wait_until(Duration::from_secs(10), || async {
        proxy.table_version().await == Some(5)
    })
    .await;
    assert!(caught_up.is_some(), "proxy did not reach version 5");

    // The store is lost; a new one is seeded with a different table.
    let addr = control.addr;
    control.kill9();
    std::fs::remove_dir_all(wd.path("control-data")).unwrap();
    let mut reseeded = spec.clone();
    reseeded.description = Some("reseeded".into());
    reseeded.regions.get_mut("eu-west").unwrap().drain = true;
    let seed = wd.write_table("reseed.toml", &reseeded).unwrap();
    let control = ControlProc::start_on(addr, &wd.path("control-data"), Some(&seed), &[])
        .await
        .unwrap();
    // Version 1 of the new epoch is lower than the proxy's 5, and still wins.
    let converged = wait_until(Duration::from_secs(15), || async {
        proxy.table_version().await == Some(1)
    })
    .await;
    assert!(converged.is_some(), "proxy kept its old epoch's version");
    let fleet = wait_until(Duration::from_secs(10), || async {
        control.client().fleet().await.is_ok_and(|f| {
            f.proxies
                .iter()
                .any(|p| p.proxy == "p1" && p.applied_version == Some(1) && p.epoch.is_some())
        })
    })
    .await;
    assert!(
        fleet.is_some(),
        "the ack did not name the new epoch's version"
    );
}

#[tokio::test]
async fn a_second_service_on_the_same_data_directory_refuses_to_start() {
    let (wd, _spec, _b, _control) = service().await;
    let out = std::process::Command::new(binary())
        .args(["control", "--listen", "127.0.0.1:0", "--data"])
        .arg(wd.path("control-data"))
        .args(["--token", "ops=another-secret-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another config service"), "{err}");
}

#[tokio::test]
async fn an_admin_listener_off_loopback_needs_a_token() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let table = wd.write_table("t.toml", &spec).unwrap();
    let out = std::process::Command::new(binary())
        .args(["proxy", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
        .arg("--config")
        .arg(&table)
        .env_remove("EDGESTEER_ADMIN_TOKENS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token"), "{err}");
}
