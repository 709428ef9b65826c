//! The service and its client together, over a real socket: every endpoint
//! answers in the shape of its `api` type.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::api::{Ack, PatchRegion, RolloutAction, RolloutCommand, StatsReport};
use crate::client::{Client, ClientError};
use crate::{router, Control, MemoryStore, Token, DEFAULT_BODY_LIMIT};

const SECRET: &str = "ops-secret-1";

async fn serve() -> (Arc<Control>, Client) {
    let seed = edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap();
    let tokens = vec![Token {
        name: "ops".into(),
        secret: SECRET.into(),
    }];
    let control = Control::open(Arc::new(MemoryStore::default()), tokens, Some(seed))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(control.clone(), DEFAULT_BODY_LIMIT);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        control,
        Client::new(&format!("http://{addr}"), Some(SECRET.into())),
    )
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
    let rec = v1.record().unwrap();
    assert_eq!((rec.version, rec.etag.as_str()), (1, "\"v1\""));
    assert_eq!(rec.audit.action, "seed");

    let change = PatchRegion {
        drain: Some(true),
        canary_bps: Some(0),
        reason: "maintenance".into(),
        ..PatchRegion::default()
    };
    let v2 = api.patch_region("us-east", &change).await.unwrap();
    let audit = v2.record().unwrap().audit;
    assert_eq!((v2.version, audit.action.as_str()), (2, "set-canary+shift"));
    assert_eq!(v2.raw["audit"]["actor"], "ops");

    let stale = api.put(&v1.table, "old base", Some(1)).await.unwrap_err();
    assert_eq!(api_code(stale).1, "stale_version");
    let v3 = api.rollback(1, "undo").await.unwrap();
    assert_eq!(v3.record().unwrap().audit.restored, Some(1));

    let h = api.history(2).await.unwrap();
    let versions: Vec<u64> = h.value.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [3, 2]);
    assert_eq!(h["versions"][0]["audit"]["action"], "rollback");

    let d = api.diff(Some(1), Some(2)).await.unwrap();
    assert_eq!((d.value.from, d.value.to), (1, 2));
    assert!(
        d.value
            .changes
            .iter()
            .any(|l| l.contains("regions.us-east.drain")),
        "{d}"
    );
    let e = api.version(9).await.unwrap_err();
    assert_eq!(api_code(e).1, "unknown_version");
}

#[tokio::test]
async fn the_fleet_sees_watches_and_acks() {
    let (_c, api) = serve().await;
    let got = api
        .watch(0, "p1", Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(got.map(|v| v.version), Some(1));
    assert!(api
        .watch(1, "p1", Duration::from_millis(50))
        .await
        .unwrap()
        .is_none());
    let ack = |status: &str| Ack {
        proxy: "p1".into(),
        version: 1,
        status: status.into(),
        reason: Some("bad".into()),
    };
    api.ack(&ack(Ack::REJECTED)).await.unwrap();
    let e = api.ack(&ack("maybe")).await.unwrap_err();
    assert_eq!(api_code(e).1, "bad_status");
    let f = api.fleet().await.unwrap();
    assert_eq!(f.value.current_version, Some(1));
    let p = &f.value.proxies[0];
    assert_eq!(
        (p.proxy.as_str(), p.watching, p.rejected_version),
        ("p1", true, Some(1))
    );
    assert_eq!(f["proxies"][0]["last_status"], "rejected");
    api.report_stats(&StatsReport::default()).await.unwrap();
}

#[tokio::test]
async fn rollout_commands_move_the_state_machine() {
    let (control, api) = serve().await;
    let none = api.rollouts().await.unwrap();
    assert!(none.value.rollouts.is_empty());
    assert_eq!(none.value.version, Some(1));

    let start = RolloutCommand::new(RolloutAction::Start, "release".into());
    let r = api.rollout("us-east", &start).await.unwrap();
    assert_eq!(r["rollout"]["state"], "running");
    assert_eq!(r.value.rollout.map(|r| r.steps.len()), Some(5));
    let e = api.rollout("us-east", &start).await.unwrap_err();
    assert!(api_code(e).2.contains("already running"));

    let s = api.rollouts().await.unwrap();
    let st = &s.value.rollouts[0];
    assert_eq!(st.state, edgesteer_config::model::RolloutState::Running);
    assert_eq!((st.canary_bps, st.figures.is_none()), (500, true));
    assert!(st.next_step_in_ms.is_some());

    let pause = RolloutCommand::new(RolloutAction::Pause, String::new());
    api.rollout("us-east", &pause).await.unwrap();
    let e = api.rollout("us-east", &pause).await.unwrap_err();
    assert!(api_code(e)
        .2
        .contains("cannot pause a rollout that is paused"));
    let odd = api
        .rollout("us-east", json!({ "action": "jump" }))
        .await
        .unwrap_err();
    assert_eq!(api_code(odd).1, "bad_action");
    let abort = RolloutCommand::new(RolloutAction::Abort, "stop".into());
    let r = api.rollout("us-east", &abort).await.unwrap();
    let ro = r.value.rollout.unwrap();
    assert_eq!(ro.state, "aborted");
    assert_eq!(ro.reason.as_deref(), Some("aborted by ops: stop"));
    let h = api.history(1).await.unwrap();
    assert_eq!(h.value.versions[0].audit.action, "rollout-abort");
    control.tick_rollouts().await;
    assert_eq!(
        api.get().await.unwrap().table.regions["us-east"].canary_bps,
        0
    );
}
