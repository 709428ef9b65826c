//! The service and its client together, over a real socket: every endpoint
//! answers in the shape of its `api` type.

use std::sync::Arc;
use std::time::Duration;

use edgesteer_config::model::RolloutState;

use crate::rollout::state_of;
use crate::{router, Control, MemoryStore, DEFAULT_BODY_LIMIT};
use edgesteer_control_api::api::{Ack, PatchRegion, RolloutAction, RolloutCommand, StatsReport};
use edgesteer_control_api::client::{Client, ClientError};
use edgesteer_control_api::Token;

mod audit;
mod etcd;
mod impact;
mod input;
mod rollouts;

const SECRET: &str = "ops-secret-1";
const PROXY_SECRET: &str = "proxy-secret-1";
const READ_SECRET: &str = "read-secret-1";

async fn serve() -> (Arc<Control>, Client) {
    let seed = edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap();
    let tokens = vec![
        Token {
            role: edgesteer_control_api::auth::Role::Ops,
            name: "ops".into(),
            secret: SECRET.into(),
        },
        "proxy:fleet=proxy-secret-1".parse().unwrap(),
        "read:viewer=read-secret-1".parse().unwrap(),
    ];
    let control = Control::open(Arc::new(MemoryStore::default()), tokens, Some(seed))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(control.clone(), DEFAULT_BODY_LIMIT);
    let served = control.clone();
    tokio::spawn(async move {
        crate::state::serve(
            listener,
            served,
            app,
            edgesteer_listener::Transport::default(),
            std::future::pending(),
        )
        .await
    });
    (
        control,
        Client::new(&format!("http://{addr}"), Some(SECRET.into())),
    )
}

/// The same service with another token (or none).
fn with_token(api: &Client, secret: Option<&str>) -> Client {
    Client::new(api.base(), secret.map(str::to_string))
}

/// An API error's status, code and the first field it names.
fn api_field(e: ClientError) -> (u16, String, Option<String>) {
    match e {
        ClientError::Api {
            status,
            code,
            errors,
            ..
        } => (
            status,
            code,
            errors.into_iter().next().map(|(path, _)| path),
        ),
        other => panic!("not an API error: {other}"),
    }
}

fn api_code(e: ClientError) -> (u16, String, String) {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => (status, code, message),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn table_writes_history_and_diff() {
    let (_c, api) = serve().await;
    let v1 = api.get().await.unwrap();
    assert_eq!((v1.version, v1.etag.as_str()), (1, "\"v1\""));
    assert_eq!(v1.audit.action, "seed");

    let change = PatchRegion {
        drain: Some(true),
        canary_bps: Some(0),
        reason: "maintenance".into(),
        ..PatchRegion::default()
    };
    let v2 = api.patch_region("us-east", &change).await.unwrap();
    assert_eq!(
        (v2.version, v2.audit.action.as_str()),
        (2, "set-canary+shift")
    );
    assert_eq!(v2.audit.actor, "ops");

    let stale = api.put(&v1.table, "old base", Some(1)).await.unwrap_err();
    assert_eq!(api_code(stale).1, "stale_version");
    let v3 = api.rollback(1, "undo").await.unwrap();
    assert_eq!(v3.audit.restored, Some(1));

    let h = api.history(2).await.unwrap();
    let versions: Vec<u64> = h.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [3, 2]);
    assert_eq!(h.versions[0].audit.action, "rollback");

    let d = api.diff(Some(1), Some(2)).await.unwrap();
    assert_eq!((d.from, d.to), (1, 2));
    assert!(
        d.changes
            .iter()
            .any(|l| l.contains("regions.us-east.drain")),
        "{d:?}"
    );
    let e = api.version(9).await.unwrap_err();
    assert_eq!(api_code(e).1, "unknown_version");
}

#[tokio::test]
async fn the_fleet_sees_watches_and_acks() {
    let (_c, ops) = serve().await;
    let api = with_token(&ops, Some(PROXY_SECRET));
    let got = api
        .watch(0, None, "fleet", Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(got.map(|v| v.version), Some(1));
    assert!(api
        .watch(1, None, "fleet", Duration::from_millis(50))
        .await
        .unwrap()
        .is_none());
    let ack = |status: &str| Ack {
        proxy: "fleet".into(),
        version: 1,
        status: status.into(),
        reason: Some("bad".into()),
        epoch: None,
        build: None,
    };
    api.ack(&ack(Ack::REJECTED)).await.unwrap();
    let e = api.ack(&ack("maybe")).await.unwrap_err();
    assert_eq!(api_code(e).1, "bad_status");
    let f = ops.fleet().await.unwrap();
    assert_eq!(f.current_version, Some(1));
    let p = &f.proxies[0];
    assert_eq!(
        (p.proxy.as_str(), p.watching, p.rejected_version),
        ("fleet", true, Some(1))
    );
    assert_eq!(p.last_status.as_deref(), Some("rejected"));
    let report = StatsReport {
        proxy: "fleet".into(),
        ..StatsReport::default()
    };
    api.report_stats(&report).await.unwrap();
}

#[tokio::test]
async fn rollout_commands_move_the_state_machine() {
    let (control, api) = serve().await;
    let none = api.rollouts().await.unwrap();
    assert!(none.rollouts.is_empty());
    assert_eq!(none.version, Some(1));

    let start = RolloutCommand::new(RolloutAction::Start, "release".into());
    let r = api.rollout("us-east", &start).await.unwrap();
    assert_eq!(
        r.rollout.as_ref().map(state_of),
        Some(RolloutState::Running)
    );
    assert_eq!(r.rollout.map(|r| r.steps.len()), Some(5));
    let e = api.rollout("us-east", &start).await.unwrap_err();
    assert!(api_code(e).2.contains("already running"));

    let s = api.rollouts().await.unwrap();
    let st = &s.rollouts[0];
    assert_eq!(st.state, RolloutState::Running);
    assert_eq!((st.canary_bps, st.figures.is_none()), (500, true));
    assert!(st.next_step_in_ms.is_some());

    // While it runs, the controller owns the canary share: a share set
    // beside it would be set back at its next step, so it is refused.
    let canary = |bps| PatchRegion {
        canary_bps: Some(bps),
        reason: "incident".into(),
        ..PatchRegion::default()
    };
    let e = api.patch_region("us-east", &canary(0)).await.unwrap_err();
    let (status, code, message) = api_code(e);
    assert_eq!((status, code.as_str()), (409, "rollout_in_progress"));
    assert!(message.contains("ctl rollout abort us-east"), "{message}");

    let pause = RolloutCommand::new(RolloutAction::Pause, String::new());
    api.rollout("us-east", &pause).await.unwrap();
    let e = api.patch_region("us-east", &canary(0)).await.unwrap_err();
    assert_eq!(
        api_code(e).1,
        "rollout_in_progress",
        "paused: it may resume"
    );
    let e = api.rollout("us-east", &pause).await.unwrap_err();
    assert!(api_code(e)
        .2
        .contains("cannot pause a rollout that is paused"));
    let jump = RolloutCommand::new(RolloutAction::Other("jump".into()), String::new());
    let odd = api.rollout("us-east", &jump).await.unwrap_err();
    assert_eq!(api_code(odd).1, "bad_action");
    let abort = RolloutCommand::new(RolloutAction::Abort, "stop".into());
    let r = api.rollout("us-east", &abort).await.unwrap();
    let ro = r.rollout.unwrap();
    assert_eq!(ro.state, "aborted");
    assert_eq!(ro.reason.as_deref(), Some("aborted by ops: stop"));
    let h = api.history(1).await.unwrap();
    assert_eq!(h.versions[0].audit.action, "rollout-abort");
    control.tick_rollouts().await;
    assert_eq!(
        api.get().await.unwrap().table.regions["us-east"].canary_bps,
        0
    );
    // Ended, the share is the operator's again.
    api.patch_region("us-east", &canary(100)).await.unwrap();
}

#[tokio::test]
async fn every_endpoint_needs_a_token_of_the_right_role() {
    let (_c, ops) = serve().await;
    let anon = with_token(&ops, None);
    let wrong = with_token(&ops, Some("not-a-token-at-all"));
    let proxy = with_token(&ops, Some(PROXY_SECRET));
    let read = with_token(&ops, Some(READ_SECRET));
    let drain = PatchRegion {
        drain: Some(true),
        ..PatchRegion::default()
    };
    let ack = Ack {
        proxy: "fleet".into(),
        version: 1,
        status: Ack::APPLIED.into(),
        reason: None,
        epoch: None,
        build: None,
    };
    // No token, or an unknown one: 401 everywhere.
    for c in [&anon, &wrong] {
        assert_eq!(api_code(c.get().await.unwrap_err()).0, 401);
        assert_eq!(api_code(c.fleet().await.unwrap_err()).0, 401);
        assert_eq!(api_code(c.ack(&ack).await.unwrap_err()).0, 401);
        let stats = c.report_stats(&StatsReport::default()).await;
        assert_eq!(api_code(stats.unwrap_err()).0, 401);
        let w = c.watch(0, None, "p9", Duration::from_millis(50)).await;
        assert_eq!(api_code(w.unwrap_err()).0, 401);
        let p = c.patch_region("us-east", &drain).await;
        assert_eq!(api_code(p.unwrap_err()).0, 401);
    }
    // The wrong role: 403, naming the role.
    let (status, code, message) = api_code(proxy.get().await.unwrap_err());
    assert_eq!((status, code.as_str()), (403, "forbidden"), "{message}");
    assert!(message.contains("proxy"), "{message}");
    let put = proxy.put(&ops.get().await.unwrap().table, "x", None).await;
    assert_eq!(api_code(put.unwrap_err()).0, 403);
    assert_eq!(
        api_code(read.patch_region("us-east", &drain).await.unwrap_err()).0,
        403
    );
    assert_eq!(api_code(ops.ack(&ack).await.unwrap_err()).0, 403);
    let forged = ops.report_stats(&StatsReport::default()).await;
    assert_eq!(api_code(forged.unwrap_err()).0, 403);
    // The right role.
    assert!(read.fleet().await.is_ok());
    assert!(proxy.ack(&ack).await.is_ok());
    assert!(ops.patch_region("us-east", &drain).await.is_ok());
    // Nothing refused was applied: one write, one proxy.
    assert_eq!(ops.get().await.unwrap().version, 2);
    assert_eq!(ops.fleet().await.unwrap().proxies.len(), 1);
}

#[tokio::test]
async fn plain_api_keys_are_stored_hashed_and_never_read_back() {
    let (_c, ops) = serve().await;
    let mut table = ops.get().await.unwrap().table;
    let policy = table
        .rate_limits
        .iter_mut()
        .find(|p| !p.keys.is_empty())
        .expect("covergen has a keyed policy");
    let tier = policy.keys.values().next().unwrap().clone();
    policy.keys.insert("cg-plain-secret-key".into(), tier);
    let written = ops.put(&table, "add a key", None).await.unwrap();
    let text = serde_json::to_string(&written).unwrap();
    assert!(!text.contains("cg-plain-secret-key"), "{text}");
    let hashed = edgesteer_config::ratelimit::hashed_key("cg-plain-secret-key");
    assert!(text.contains(&hashed), "{text}");
    for read in [
        serde_json::to_string(&ops.get().await.unwrap()).unwrap(),
        serde_json::to_string(&ops.history(10).await.unwrap()).unwrap(),
        serde_json::to_string(&ops.diff(Some(1), Some(2)).await.unwrap()).unwrap(),
    ] {
        assert!(!read.contains("cg-plain-secret-key"), "{read}");
        assert!(!read.contains("cg-demo-free"), "{read}");
    }
}

#[tokio::test]
async fn a_watch_answer_over_the_limit_is_refused() {
    let (_c, ops) = serve().await;
    let proxy = Client::new(ops.base(), Some(PROXY_SECRET.into()));
    let whole = proxy
        .watch(0, None, "fleet", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(whole.is_some());
    let small = proxy.with_max_watch_body(512);
    let err = small
        .watch(0, None, "fleet", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::TooLarge { limit: 512, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("more than 512 bytes"), "{err}");
}

#[tokio::test]
async fn shutdown_ends_held_watches_and_drains() {
    let seed = edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap();
    let tokens = vec!["proxy:fleet=proxy-secret-1".parse().unwrap()];
    let control = Control::open(Arc::new(MemoryStore::default()), tokens, Some(seed))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(control.clone(), DEFAULT_BODY_LIMIT);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let transport = edgesteer_listener::Transport {
        name: "config service",
        tls: None,
        limits: edgesteer_listener::Limits {
            grace_period: Duration::from_secs(3),
            ..Default::default()
        },
    };
    let server = tokio::spawn(crate::state::serve(
        listener,
        control.clone(),
        app,
        transport,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let proxy = Client::new(&format!("http://{addr}"), Some(PROXY_SECRET.into()));
    let held =
        tokio::spawn(async move { proxy.watch(1, None, "fleet", Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished());
    let t = std::time::Instant::now();
    stop_tx.send(()).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), held)
        .await
        .expect("the watch was not ended")
        .unwrap();
    assert!(matches!(answer, Ok(None)), "{answer:?}");
    server.await.unwrap().unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_console_page_whoami_live_and_explain() {
    use edgesteer_geo::testdb::{self, sample_ip, Schema};
    let (control, api) = serve().await;
    let base = api.base().to_string();
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = http.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let get_json = |path: String| {
        let req = http.get(format!("{base}{path}")).bearer_auth(READ_SECRET);
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };

    // The page needs no token and carries its CSP; the data does.
    let page = get("/ui", None).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(page.text().await.unwrap().contains("/ui/app.js"));
    assert_eq!(get("/ui/app.js", None).await.unwrap().status(), 200);
    assert_eq!(get("/v1/live", None).await.unwrap().status(), 401);
    assert_eq!(get("/v1/whoami", None).await.unwrap().status(), 401);
    let me = get_json("/v1/whoami".into()).await;
    assert_eq!(me, serde_json::json!({ "name": "viewer", "role": "read" }));

    // Explain needs a geo database, and an address.
    let r = get("/v1/explain?ip=1.2.3.4", Some(READ_SECRET))
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    control.set_geo_db(Arc::new(
        edgesteer_geo::GeoDb::from_bytes(testdb::build(Schema::GeoIp2, testdb::SAMPLE)).unwrap(),
    ));
    let r = get("/v1/explain?ip=not-an-ip", Some(READ_SECRET))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["path"], "ip");

    // A proxy reports us-east traffic and one backend down: the live view
    // and explain both show it.
    let table = api.get().await.unwrap().table;
    let down = table.regions["us-east"].backends[0].address.clone();
    let report: StatsReport = serde_json::from_value(serde_json::json!({
        "proxy": "fleet", "version": 1,
        "regions": { "us-east": {
            "stable": { "requests": 50, "errors": 5, "buckets": [40, 10] },
            "canary": { "requests": 10, "errors": 0, "buckets": [10] },
            "canary_backends": 1, "canary_unhealthy": 0,
            "unhealthy": [down.clone()] },
          "nowhere": { "stable": { "requests": 1, "errors": 0, "buckets": [] },
            "canary": { "requests": 0, "errors": 0, "buckets": [] },
            "canary_backends": 0, "canary_unhealthy": 0 } }
    }))
    .unwrap();
    with_token(&api, Some(PROXY_SECRET))
        .report_stats(&report)
        .await
        .unwrap();
    let live: crate::console::LiveView =
        serde_json::from_value(get_json("/v1/live".into()).await).unwrap();
    assert_eq!(
        live.regions.len(),
        table.regions.len(),
        "only the table's regions"
    );
    assert_eq!(live.reporting_proxies, 1);
    let east = &live.regions["us-east"];
    assert_eq!(east.unhealthy, vec![down.clone()]);
    assert_eq!(east.backends, table.regions["us-east"].backends.len());
    let point = east.points.last().unwrap();
    assert_eq!(
        (point.requests, point.errors, point.canary_requests),
        (60, 5, 10)
    );
    assert_eq!(point.p99_ms, Some(2.0));
    assert_eq!(east.canary_changes.len(), 1, "the seed's share");

    let x = get_json(format!("/v1/explain?ip={}", sample_ip("US"))).await;
    assert_eq!(x["decision"]["region"], "us-east");
    assert_ne!(x["decision"]["backend"], down.as_str());
    let backends = x["candidates"][0]["backends"].as_array().unwrap();
    let shown = backends
        .iter()
        .find(|b| b["backend"] == down.as_str())
        .unwrap();
    assert_eq!(shown["available"], false);
    let x = get_json(format!("/v1/explain?ip={}", sample_ip("CN"))).await;
    assert_eq!(
        (&x["client"]["zone"], &x["decision"]["region"]),
        (&serde_json::json!("cn"), &serde_json::json!("cn-east"))
    );
}
