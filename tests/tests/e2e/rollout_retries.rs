//! Rollout gates judge every attempt, not only the last (issue 31): a
//! canary that hangs is retried on stable, so its users see 200s, yet each
//! failed attempt counts against the canary and the error-rate gate rolls
//! it back. Passive ejection is off here, so the health gate cannot be
//! what catches it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use edgesteer_config::model::RolloutState;
use edgesteer_control_api::api::RolloutCommand;
use edgesteer_tests::*;

use crate::rollout::{gated, load, rollout_state, setup_with, track_of};

#[tokio::test]
async fn a_canary_hidden_by_retries_still_fails_its_error_gate() {
    let s = setup_with(|spec| {
        spec.retry.per_try_timeout_ms = Some(300);
        spec.retry.total_timeout_ms = Some(3000);
        spec.outlier.consecutive_failures = Some(0);
        spec.outlier.consecutive_5xx = Some(0);
    })
    .await;
    let p = s.proxy("p1").await;
    let api = s.control.client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let l = load(p.url("/v1/covers"), stop.clone());
    let release = RolloutCommand {
        reason: "release with a hang".into(),
        ..gated(20, &[(5000, 60_000), (10_000, 1000)])
    };
    api.rollout("us-east", &release).await.unwrap();
    let judged = wait_until(Duration::from_secs(10), || async {
        rollout_state(&api, "us-east")
            .await
            .and_then(|r| r.figures)
            .is_some_and(|f| f.canary_requests >= 20)
    })
    .await;
    assert!(
        judged.is_some(),
        "{:?}",
        rollout_state(&api, "us-east").await
    );

    // The canary's API hangs (its health endpoint still answers).
    s.canary("us-east")
        .fail_status
        .store(edgesteer::demo::HANG, Ordering::Relaxed);
    // Its users are answered by stable after the 300 ms try: all 200.
    let client = reqwest::Client::new();
    let mut canary_users = 0;
    for k in 0..40 {
        let key = format!("user-{k}");
        let (status, track) = track_of(&client, &p, &key).await;
        assert_eq!(status, 200, "{key}");
        canary_users += usize::from(
            track == "stable"
                && s.spec
                    .release
                    .salt
                    .as_deref()
                    .is_some_and(|salt| documented_bucket(salt, &key) < 5000),
        );
    }
    assert!(canary_users > 0, "no canary user was retried onto stable");
    // Yet the gate saw the canary fail and rolled it back.
    let back = wait_until(Duration::from_secs(10), || async {
        rollout_state(&api, "us-east")
            .await
            .is_some_and(|r| r.state == RolloutState::RolledBack)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    l.await.unwrap();
    assert!(
        back.is_some(),
        "not rolled back: {:?}",
        rollout_state(&api, "us-east").await
    );
    let history = api.history(5).await.unwrap();
    let reason = &history.versions[0].audit.reason;
    assert!(reason.contains("gate error_rate failed"), "{reason}");
    s.canary("us-east").fail_status.store(0, Ordering::Relaxed);
}
