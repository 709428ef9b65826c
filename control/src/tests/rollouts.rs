//! Rollouts are run by their commands only: a restore keeps the current
//! rollouts (and canary shares), and a table written whole cannot start,
//! resume or move one.

use edgesteer_control_api::api::{RolloutAction, RolloutCommand};

use super::{api_field, serve};

/// An aborted rollout restored by a rollback would run again from its old
/// step, its hold long past, and advance at once.
#[tokio::test]
async fn a_rollback_keeps_the_current_rollouts() {
    let (_control, api) = serve().await;
    let start = RolloutCommand::new(RolloutAction::Start, "release".into());
    let running = api.rollout("us-east", &start).await.unwrap().version;
    let abort = RolloutCommand::new(RolloutAction::Abort, "outside signal".into());
    api.rollout("us-east", &abort).await.unwrap();
    // Something else changes, then ops restore the version the rollout
    // was running in.
    let mut t = api.get().await.unwrap();
    t.table.regions.get_mut("eu-west").unwrap().drain = true;
    api.put(&t.table, "drain eu-west", Some(t.version))
        .await
        .unwrap();
    api.rollback(running, "undo the drain").await.unwrap();
    let now = api.get().await.unwrap().table;
    let us = &now.regions["us-east"];
    assert_eq!(
        us.rollout.as_ref().map(|r| r.state.as_str()),
        Some("aborted")
    );
    assert_eq!(us.canary_bps, 0);
    assert!(!now.regions["eu-west"].drain, "the routing was restored");
    // Back to before the release: no rollout then, and that share.
    let v1 = api.version(1).await.unwrap().table;
    api.rollback(1, "undo the release").await.unwrap();
    let now = api.get().await.unwrap().table;
    assert_eq!(
        now.regions["us-east"].rollout,
        v1.regions["us-east"].rollout
    );
    assert_eq!(
        now.regions["us-east"].canary_bps,
        v1.regions["us-east"].canary_bps
    );
}

/// A table exported while a rollout ran, applied after the controller
/// moved it: refused naming the rollout, nothing written.
#[tokio::test]
async fn a_table_cannot_start_or_move_a_rollout() {
    let (_control, api) = serve().await;
    let start = RolloutCommand::new(RolloutAction::Start, "release".into());
    api.rollout("us-east", &start).await.unwrap();
    let cur = api.get().await.unwrap();
    let mut stale = cur.table.clone();
    if let Some(ro) = stale
        .regions
        .get_mut("us-east")
        .and_then(|r| r.rollout.as_mut())
    {
        ro.step_started_ms -= 1;
    }
    let err = api.put(&stale, "stale", None).await.unwrap_err();
    let (status, code, field) = api_field(err);
    assert_eq!((status, code.as_str()), (409, "rollout_in_progress"));
    assert_eq!(field.as_deref(), Some("regions.us-east.rollout"));
    assert_eq!(api.get().await.unwrap().version, cur.version);
}
