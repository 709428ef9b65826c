//! A region's rollout as a table gives it: steps that only raise the
//! share, bounded gates and holds, and a running (or paused) rollout's
//! share equal to its step's.

use super::{assert_one_error, covergen, region};
use crate::wire::{RolloutSpec, RolloutStep, TableSpec};

/// covergen with us-east running a two-step rollout at step 1.
fn running() -> TableSpec {
    let mut s = covergen();
    let r = region(&mut s, "us-east");
    r.canary_bps = 500;
    r.rollout = Some(RolloutSpec {
        state: "running".into(),
        steps: vec![
            RolloutStep {
                canary_bps: 500,
                hold_ms: 60_000,
            },
            RolloutStep {
                canary_bps: 10_000,
                hold_ms: 60_000,
            },
        ],
        ..RolloutSpec::default()
    });
    s
}

fn rollout(s: &mut TableSpec) -> &mut RolloutSpec {
    region(s, "us-east")
        .rollout
        .as_mut()
        .unwrap_or_else(|| unreachable!())
}

#[test]
fn a_running_rollout_compiles_and_its_rules_name_their_field() {
    assert!(crate::compile::compile(&running()).is_ok());

    let mut s = running();
    rollout(&mut s).steps[1].canary_bps = 100;
    assert_one_error(
        &s,
        "regions.us-east.rollout.steps[1].canary_bps",
        "only raise the share",
    );

    let mut s = running();
    rollout(&mut s).step = 2;
    assert_one_error(&s, "regions.us-east.rollout.step", "past the last step");

    let mut s = running();
    rollout(&mut s).min_requests = Some(2_000_000_000);
    assert_one_error(&s, "regions.us-east.rollout.min_requests", "outside");

    let mut s = running();
    rollout(&mut s).steps[0].hold_ms = 31 * 86_400_000;
    assert_one_error(&s, "regions.us-east.rollout.steps[0].hold_ms", "30 days");
}

/// The controller sets the share to its step's; a table that says
/// otherwise would be undone at the next step (or mean a stale file).
#[test]
fn a_live_rollouts_share_is_its_steps() {
    for state in ["running", "paused"] {
        let mut s = running();
        rollout(&mut s).state = state.into();
        region(&mut s, "us-east").canary_bps = 0;
        assert_one_error(&s, "regions.us-east.canary_bps", "step 1");
    }
    // Ended, the share is the operator's.
    for state in ["aborted", "rolled_back", "completed"] {
        let mut s = running();
        rollout(&mut s).state = state.into();
        region(&mut s, "us-east").canary_bps = 0;
        assert!(crate::compile::compile(&s).is_ok(), "{state}");
    }
}
