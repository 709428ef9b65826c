//! Tests of the rollout figures: the window of a step, canary health,
//! the gates and the verdicts.

use super::*;

/// Found by `fuzz/fuzz_targets/control_api.rs`: bucket counts that each
/// fit a u64 summed past it in `p99_ms` (a panic in the rollout
/// controller with overflow checks, a wrong p99 gate without).
#[test]
fn huge_bucket_counts_do_not_overflow_p99() {
    let mut acc = Acc::default();
    let huge = TrackReport {
        requests: u64::MAX,
        errors: 0,
        buckets: vec![u64::MAX / 2 + 1, u64::MAX / 2 + 1, 5],
    };
    acc.add(&huge);
    acc.add(&huge);
    assert_eq!(acc.p99_ms(), LATENCY_BUCKETS_MS[1]);
    let mut small = Acc::default();
    small.add(&TrackReport {
        requests: 100,
        errors: 0,
        buckets: vec![98, 1, 1],
    });
    assert_eq!(small.p99_ms(), LATENCY_BUCKETS_MS[1]);
}

/// A table whose `us-east` runs one step held an hour, with these gates.
fn running(max_p99_ratio: f64, min_requests: u64) -> TableSpec {
    let mut t = TableSpec::default();
    t.regions.entry("us-east".into()).or_default().rollout = Some(RolloutSpec {
        state: "running".into(),
        steps: vec![edgesteer_config::wire::RolloutStep {
            canary_bps: 5000,
            hold_ms: 3_600_000,
        }],
        max_p99_ratio: Some(max_p99_ratio),
        min_requests: Some(min_requests),
        step_started_ms: now_ms(),
        ..RolloutSpec::default()
    });
    t
}

/// `n` requests, `errors` of them 5xx, all in latency bucket `bucket`.
fn track(n: u64, errors: u64, bucket: usize) -> TrackReport {
    let mut buckets = vec![0; LATENCY_BUCKETS_MS.len() + 1];
    buckets[bucket] = n;
    TrackReport {
        requests: n,
        errors,
        buckets,
    }
}

fn judged(t: &TableSpec, reports: &[(TrackReport, TrackReport)]) -> Option<(Verdict, String)> {
    let w = Windows::default();
    for (stable, canary) in reports {
        w.ingest(t, &report("p1", stable.clone(), canary.clone(), 0));
    }
    w.judge("us-east", &rollout(t))
}

const MS_2: usize = 1; // the 2 ms bucket
const MS_5: usize = 2;
const MS_500: usize = 8;

#[test]
fn the_p99_gate_rolls_back_a_canary_slower_than_the_ratio() {
    let t = running(1.5, 100);
    // 2 of 100 canary answers at 500 ms: its p99 is 500 ms.
    let mut canary = track(98, 0, MS_2);
    canary.buckets[MS_500] = 2;
    canary.requests = 100;
    let (v, why) = judged(&t, &[(track(200, 0, MS_2), canary)]).unwrap();
    assert_eq!(v, Verdict::RollBack);
    assert_eq!(
        why,
        "gate p99 failed at step 1: canary p99 500 ms > 1.5 x stable p99 2 ms"
    );
}

#[test]
fn the_p99_gate_spares_a_canary_within_the_ratio_or_one_slow_answer_in_a_hundred() {
    let t = running(3.0, 100);
    // 5 ms against 2 ms is within 3x.
    assert_eq!(
        judged(&t, &[(track(200, 0, MS_2), track(100, 0, MS_5))]),
        None
    );
    // One slow answer in 101 is above the p99.
    let mut canary = track(100, 0, MS_2);
    canary.buckets[MS_500] = 1;
    canary.requests = 101;
    assert_eq!(judged(&t, &[(track(200, 0, MS_2), canary)]), None);
}

#[test]
fn the_p99_gate_waits_for_min_requests_on_both_tracks() {
    let t = running(1.5, 100);
    let slow = track(100, 0, MS_500);
    // Stable has 99: no verdict yet, however slow the canary.
    assert_eq!(judged(&t, &[(track(99, 0, MS_2), slow.clone())]), None);
    // The canary has 99: none either.
    assert_eq!(
        judged(&t, &[(track(200, 0, MS_2), track(99, 0, MS_500))]),
        None
    );
    // One more stable request, in a later report: the gate fires.
    let v = judged(
        &t,
        &[
            (track(99, 0, MS_2), slow),
            (track(1, 0, MS_2), TrackReport::default()),
        ],
    );
    assert_eq!(v.map(|(v, _)| v), Some(Verdict::RollBack));
}

#[test]
fn the_error_gate_is_judged_before_the_p99_gate() {
    let t = running(1.5, 100);
    let (v, why) = judged(&t, &[(track(200, 0, MS_2), track(100, 5, MS_500))]).unwrap();
    assert_eq!(v, Verdict::RollBack);
    assert!(why.starts_with("gate error_rate failed at step 1"), "{why}");
}

/// A report of `proxy` for us-east, with `unhealthy` canary backends.
fn report(proxy: &str, stable: TrackReport, canary: TrackReport, unhealthy: u32) -> StatsReport {
    let mut r = StatsReport {
        proxy: proxy.into(),
        ..StatsReport::default()
    };
    r.regions.insert(
        "us-east".into(),
        edgesteer_control_api::api::RegionReport {
            stable,
            canary,
            canary_unhealthy: unhealthy,
            ..Default::default()
        },
    );
    r
}

fn rollout(t: &TableSpec) -> RolloutSpec {
    t.regions["us-east"].rollout.clone().unwrap()
}

#[test]
fn a_window_holds_its_own_step_only() {
    let mut t = running(1.5, 100);
    let w = Windows::default();
    w.ingest(&t, &report("p1", track(40, 0, MS_2), track(60, 3, MS_2), 0));
    let f = w.figures("us-east", &rollout(&t)).unwrap();
    assert_eq!((f.stable_requests, f.canary_requests), (40, 60));
    assert!(
        (f.canary_error_rate - 0.05).abs() < 1e-9,
        "{}",
        f.canary_error_rate
    );
    assert_eq!(w.figures("eu-west", &rollout(&t)), None);
    // The next step (or the same step restarted): nothing of the old one
    // is shown or judged.
    for edit in [
        |ro: &mut RolloutSpec| ro.step_started_ms += 1,
        |ro: &mut RolloutSpec| ro.step += 1,
    ] {
        let mut next = rollout(&t);
        edit(&mut next);
        assert_eq!(w.figures("us-east", &next), None);
    }
    t.regions
        .get_mut("us-east")
        .unwrap()
        .rollout
        .as_mut()
        .unwrap()
        .step_started_ms += 1;
    w.ingest(&t, &report("p1", track(1, 0, MS_2), track(2, 0, MS_2), 0));
    let f = w.figures("us-east", &rollout(&t)).unwrap();
    assert_eq!((f.stable_requests, f.canary_requests), (1, 2));
}

#[test]
fn a_report_cannot_grow_the_window_past_the_known_buckets() {
    let mut acc = Acc::default();
    let known = LATENCY_BUCKETS_MS.len() + 1;
    let mut buckets = vec![0; known + 3];
    buckets[known - 1] = 10; // slower than the last bound
    buckets[known + 2] = 1_000; // no such bucket
    acc.add(&TrackReport {
        requests: 10,
        errors: 50,
        buckets,
    });
    assert_eq!(acc.buckets.len(), known);
    assert_eq!(acc.p99_ms(), f64::INFINITY);
    assert_eq!(acc.errors, 10, "errors are at most the requests");
    assert_eq!(acc.error_rate(), 1.0);
}

#[test]
fn canary_health_is_the_worst_fresh_report_of_each_proxy() {
    let t = running(1.5, 100);
    let w = Windows::default();
    let none = TrackReport::default;
    w.ingest(&t, &report("p2", none(), none(), 2));
    w.ingest(&t, &report("p1", none(), none(), 0));
    let unhealthy = || {
        w.figures("us-east", &rollout(&t))
            .unwrap()
            .unhealthy_canary_backends
    };
    assert_eq!(unhealthy(), 2);
    assert_eq!(w.reporters("us-east"), ["p1", "p2"]);
    assert!(w.reporters("eu-west").is_empty());
    // p2 recovered: its latest report replaces its last.
    w.ingest(&t, &report("p2", none(), none(), 0));
    assert_eq!(unhealthy(), 0);
    // A report older than HEALTH_FRESH no longer counts, and leaves at
    // the next ingest.
    let old = Instant::now().checked_sub(HEALTH_FRESH * 2).unwrap();
    {
        let mut windows = w.0.lock().unwrap();
        let win = windows.get_mut("us-east").unwrap();
        win.canary_health.insert("p3".into(), (old, 5));
    }
    assert_eq!(unhealthy(), 0);
    w.ingest(&t, &report("p1", none(), none(), 0));
    assert_eq!(w.reporters("us-east"), ["p1", "p2"]);
}

#[test]
fn past_the_reporter_cap_a_new_proxy_counts_but_is_not_tracked() {
    let t = running(1.5, 100);
    let w = Windows::default();
    w.ingest(
        &t,
        &report("p0", track(1, 0, MS_2), TrackReport::default(), 0),
    );
    {
        let mut windows = w.0.lock().unwrap();
        let win = windows.get_mut("us-east").unwrap();
        for i in 1..MAX_REPORTERS {
            win.canary_health
                .insert(format!("q{i}"), (Instant::now(), 0));
        }
    }
    w.ingest(
        &t,
        &report("new", track(1, 0, MS_2), TrackReport::default(), 9),
    );
    let f = w.figures("us-east", &rollout(&t)).unwrap();
    assert_eq!(f.stable_requests, 2, "its figures count");
    assert_eq!(f.unhealthy_canary_backends, 0, "its health is not tracked");
    assert_eq!(w.reporters("us-east").len(), MAX_REPORTERS);
    // A proxy already tracked still updates.
    w.ingest(
        &t,
        &report("p0", TrackReport::default(), TrackReport::default(), 4),
    );
    assert_eq!(
        w.figures("us-east", &rollout(&t))
            .unwrap()
            .unhealthy_canary_backends,
        4
    );
}

#[test]
fn a_step_advances_once_held_with_enough_requests_and_healthy_canaries() {
    let mut t = running(1.5, 100);
    {
        let ro = t
            .regions
            .get_mut("us-east")
            .unwrap()
            .rollout
            .as_mut()
            .unwrap();
        ro.steps[0].hold_ms = 5_000;
        ro.step_started_ms = now_ms() - 10_000;
    }
    let w = Windows::default();
    w.ingest(
        &t,
        &report("p1", track(100, 0, MS_2), track(100, 0, MS_2), 1),
    );
    // One canary backend down: held long enough, but not advanced.
    assert_eq!(w.judge("us-east", &rollout(&t)), None);
    w.ingest(
        &t,
        &report("p1", TrackReport::default(), TrackReport::default(), 0),
    );
    let (v, why) = w.judge("us-east", &rollout(&t)).unwrap();
    assert_eq!(v, Verdict::Advance);
    assert!(
        why.starts_with("step 1 (5000 bps) held 5000 ms: 100 canary requests"),
        "{why}"
    );
    // Not yet held: no verdict.
    t.regions
        .get_mut("us-east")
        .unwrap()
        .rollout
        .as_mut()
        .unwrap()
        .step_started_ms = now_ms();
    let w = Windows::default();
    w.ingest(
        &t,
        &report("p1", track(100, 0, MS_2), track(100, 0, MS_2), 0),
    );
    assert_eq!(w.judge("us-east", &rollout(&t)), None);
}

#[test]
fn the_gates_spare_a_canary_exactly_at_their_limits() {
    // A 5xx rate of exactly max_error_rate (1%).
    let t = running(1.5, 100);
    assert_eq!(
        judged(&t, &[(track(200, 0, MS_2), track(100, 1, MS_2))]),
        None
    );
    // A p99 of exactly max_p99_ratio times stable's: 20 ms against 2 ms.
    const MS_20: usize = 4;
    let t = running(10.0, 100);
    assert_eq!(
        judged(&t, &[(track(200, 0, MS_2), track(100, 0, MS_20))]),
        None
    );
    // A canary p99 in the first bucket never fails the gate, even with no
    // stable answers to compare (min_requests 0).
    let t = running(1.5, 0);
    assert_eq!(
        judged(&t, &[(TrackReport::default(), track(100, 0, 0))]),
        None
    );
}

/// A table whose us-east step (at `bps`) has been held past its hold.
fn held(min_requests: u64, bps: u32) -> TableSpec {
    let mut t = running(1.5, min_requests);
    let ro = t
        .regions
        .get_mut("us-east")
        .and_then(|r| r.rollout.as_mut())
        .unwrap();
    ro.steps[0] = edgesteer_config::wire::RolloutStep {
        canary_bps: bps,
        hold_ms: 5_000,
    };
    ro.step_started_ms = now_ms() - 10_000;
    t
}

fn verdict(t: &TableSpec, stable: TrackReport, canary: TrackReport) -> Option<Verdict> {
    judged(t, &[(stable, canary)]).map(|(v, _)| v)
}

#[test]
fn the_lower_bound_is_wilsons() {
    assert_eq!(error_rate_lower_bound(0, 100, ERROR_GATE_Z), 0.0);
    assert_eq!(error_rate_lower_bound(3, 0, ERROR_GATE_Z), 0.0);
    let b = error_rate_lower_bound(5, 100, ERROR_GATE_Z);
    assert!((b - 0.0186).abs() < 0.0005, "{b}");
    let all = error_rate_lower_bound(20, 20, ERROR_GATE_Z);
    assert!((all - 0.787).abs() < 0.001, "{all}");
}

/// The error gate rolls back on evidence, judged several times a second:
/// one unlucky answer in the first 20 (5% > 1%) neither rolls a canary
/// back nor lets it advance; a canary failing every request goes at its
/// 20th; one at 5x the limit within 100.
#[test]
fn the_error_gate_rolls_back_on_evidence_not_on_one_unlucky_answer() {
    let t = held(100, 5000);
    let stable = || track(200, 0, MS_2);
    assert_eq!(verdict(&t, stable(), track(20, 1, MS_2)), None);
    assert_eq!(
        verdict(&t, stable(), track(150, 1, MS_2)),
        Some(Verdict::Advance)
    );
    assert_eq!(verdict(&t, stable(), track(19, 19, MS_2)), None);
    assert_eq!(
        verdict(&t, stable(), track(20, 20, MS_2)),
        Some(Verdict::RollBack)
    );
    assert_eq!(
        verdict(&t, stable(), track(100, 5, MS_2)),
        Some(Verdict::RollBack)
    );
    // Within the limit's noise but over it: no verdict until more come.
    assert_eq!(verdict(&t, stable(), track(200, 3, MS_2)), None);
}

/// A step advances only when every gate was judged: the error gate's 20
/// requests even with `min_requests` 0, and the p99 gate (stable with
/// `min_requests`) unless the share is full and stable has no traffic.
#[test]
fn a_step_advances_only_when_every_gate_was_judged() {
    let t = held(0, 5000);
    assert_eq!(verdict(&t, track(200, 0, MS_2), track(19, 0, MS_2)), None);
    assert_eq!(
        verdict(&t, track(200, 0, MS_2), track(20, 0, MS_2)),
        Some(Verdict::Advance)
    );
    let t = held(100, 5000);
    assert_eq!(verdict(&t, track(99, 0, MS_2), track(100, 0, MS_2)), None);
    let t = held(100, 10_000);
    assert_eq!(
        verdict(&t, TrackReport::default(), track(100, 0, MS_2)),
        Some(Verdict::Advance)
    );
}
