//! Control-plane trust with real processes: roles on every endpoint, a
//! fleet view that shows rejections, store epochs, API keys kept secret,
//! and rollouts a blind apply cannot reset. TLS on the control channel is
//! in `trust_tls`, the service's listener hygiene in `trust_listeners`;
//! both use the helpers here.

use std::time::Duration;

use edgesteer_config::TableSpec;
use edgesteer_control_api::api::{Ack, PatchRegion};
use edgesteer_control_api::client::Client;
use edgesteer_tests::*;
use reqwest::Method;

pub(crate) async fn service() -> (
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

/// The service's `/metrics`, read with the read token through `client`.
pub(crate) async fn service_metrics(client: reqwest::Client, control: &ControlProc) -> String {
    client
        .get(control.url("/metrics"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
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
    let metrics = service_metrics(reqwest::Client::new(), &control).await;
    let count = |reason: &str| {
        metric_value(
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
    // The proxy p1, with its own token (a proxy acks only as itself).
    let proxy = Client::new(&control.base(), Some(proxy_token("p1")));
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
        build: None,
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
    let out = control.ctl(&["fleet"]);
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
async fn a_plain_api_key_is_never_shown_or_logged() {
    const KEY: &str = "cg-live-plain-secret-7781";
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    // covergen's X-Api-Key policy (free/pro/enterprise tiers).
    let covergen = edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap();
    spec.rate_limits = covergen
        .rate_limits
        .into_iter()
        .filter(|p| p.name == "api-key")
        .collect();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control_log = wd.path("control.log");
    let control = ControlProc::start_logged(&wd.path("data"), Some(&seed), &control_log)
        .await
        .unwrap();
    let proxy_log = wd.path("proxy.log");
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: follow(&control, &wd.path("p.cache.json"), "p"),
        log: Some(proxy_log.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    // Ops add a plain key (no --hash), and a client uses it.
    let out = control.ctl(&["set-key", "api-key", KEY, "pro"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = control.client().get().await.unwrap().version;
    let applied = wait_until(Duration::from_secs(10), || async {
        proxy.table_version().await == Some(version)
    })
    .await;
    assert!(applied.is_some(), "the proxy did not apply the key");
    let r = reqwest::Client::new()
        .get(proxy.url("/v1/covers"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    let policy = r
        .headers()
        .get("ratelimit-policy")
        .map(|v| v.to_str().unwrap().to_string());
    // The key is in force (pro tier: 100/s) though stored only hashed.
    assert_eq!(policy.as_deref(), Some("\"api-key\";q=100;w=1"));
    // Moved to another tier, spelled plain again: the stored hashed entry
    // is replaced, not refused as a second spelling of the same key.
    let keys_of = |t: &edgesteer_config::TableSpec| {
        t.rate_limits
            .iter()
            .find(|p| p.name == "api-key")
            .map(|p| p.keys.clone())
            .unwrap_or_default()
    };
    let before = keys_of(&control.client().get().await.unwrap().table);
    let out = control.ctl(&["set-key", "api-key", KEY, "enterprise"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    shown += &String::from_utf8_lossy(&out.stdout);
    let keys = keys_of(&control.client().get().await.unwrap().table);
    let hashed = edgesteer_config::ratelimit::hashed_key(KEY);
    assert_eq!(keys.get(&hashed).map(String::as_str), Some("enterprise"));
    assert_eq!(keys.len(), before.len(), "one entry for the key: {keys:?}");
    // Every read of the service and of the proxy's admin API.
    let api = control.client();
    shown += &serde_json::to_string(&api.get().await.unwrap()).unwrap();
    shown += &serde_json::to_string(&api.history(50).await.unwrap()).unwrap();
    shown += &serde_json::to_string(&api.diff(None, None).await.unwrap()).unwrap();
    for path in ["/v1/table", "/v1/ratelimit", "/v1/explain?ip=8.8.8.8"] {
        shown += &reqwest::get(format!("http://{}{path}", proxy.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert!(
        shown.contains("sha256:"),
        "the hashed key is not shown at all"
    );
    drop(proxy);
    drop(control);
    let logs = std::fs::read_to_string(&control_log).unwrap()
        + &std::fs::read_to_string(&proxy_log).unwrap();
    assert!(
        logs.contains("table version committed"),
        "no service log captured"
    );
    for (what, text) in [("answers", &shown), ("logs", &logs)] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(KEY)).collect();
        assert!(
            lines.is_empty(),
            "a plain API key appears in the {what}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn a_blind_apply_cannot_reset_a_running_rollout() {
    use edgesteer_config::wire::RolloutStep;
    use edgesteer_control_api::api::{RolloutAction, RolloutCommand};
    let (wd, _spec, _b, control) = service().await;
    let api = control.client();
    // Ops export the table, then a rollout starts.
    let exported = api.get().await.unwrap().table;
    let file = wd.write_table("exported.toml", &exported).unwrap();
    let start = RolloutCommand {
        steps: Some(vec![RolloutStep {
            canary_bps: 500,
            hold_ms: 600_000,
        }]),
        ..RolloutCommand::new(RolloutAction::Start, "release".into())
    };
    api.rollout("us-east", &start).await.unwrap();
    let running = api.get().await.unwrap().version;
    let apply = |force: bool| {
        let mut cmd = std::process::Command::new(binary());
        cmd.args(["ctl", "--control", &control.base(), "apply"])
            .arg(&file)
            .env("EDGESTEER_TOKEN", OPS_TOKEN);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    // The stale file would end the rollout: refused, nothing written.
    let out = apply(false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rollout in us-east"), "{err}");
    assert_eq!(api.get().await.unwrap().version, running);
    // --force is the explicit way.
    let out = apply(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.get().await.unwrap().version, running + 1);
}
