//! Ejection races and decay (issue 33): the cap holds under concurrent
//! crossings, an endpoint is ejected once per streak, and the multiplier
//! decays after a healthy period.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edgesteer_config::model::OutlierSettings;
use edgesteer_config::{parse, BackendId, RegionId, RoutingTable};

use crate::state::{now_ms, HealthRegistry, Outcome};

fn table(n: u16) -> RoutingTable {
    let list: Vec<String> = (1..=n)
        .map(|p| format!("{{ address = \"127.0.0.1:{p}\" }}"))
        .collect();
    let text = format!(
        "default_region = \"a\"\n[regions.a]\nbackends = [{}]\n",
        list.join(", ")
    );
    edgesteer_config::compile(&parse::from_toml(&text).unwrap()).unwrap()
}

fn settings(percent: u32) -> OutlierSettings {
    OutlierSettings {
        consecutive_failures: 1,
        consecutive_5xx: 1,
        base_ejection: Duration::from_secs(10),
        max_ejection: Duration::from_secs(60),
        max_ejection_percent: percent,
    }
}

/// All threads leave `wait` together (spinning: a futex wake-up staggers
/// them by more than the window this looks for).
struct Gate(AtomicUsize, usize);

impl Gate {
    fn new(n: usize) -> Gate {
        Gate(AtomicUsize::new(0), n)
    }

    fn wait(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        while self.0.load(Ordering::SeqCst) < self.1 {
            std::hint::spin_loop();
        }
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn concurrent_crossings_never_eject_past_the_cap() {
    let threads = 4u16;
    for round in 0..300 {
        let reg = HealthRegistry::new();
        let h = reg.bind(&table(threads));
        // 1 of 4 endpoints may be ejected (25%).
        let s = settings(25);
        let gate = Gate::new(usize::from(threads));
        std::thread::scope(|scope| {
            for i in 0..threads {
                let (h, s, gate) = (&h, &s, &gate);
                scope.spawn(move || {
                    gate.wait();
                    let b = BackendId(u32::from(i));
                    h.report(b, addr(i + 1), Outcome::ConnectFailure, s, RegionId(0));
                });
            }
        });
        let ejected = h
            .states()
            .iter()
            .filter(|st| st.endpoints()[0].is_ejected())
            .count();
        assert!(
            ejected <= 1,
            "round {round}: {ejected} ejected past the cap"
        );
    }
}

#[test]
fn concurrent_reports_eject_once() {
    let threads = 4;
    for round in 0..300 {
        let reg = HealthRegistry::new();
        let h = reg.bind(&table(2));
        let s = settings(100);
        let gate = Gate::new(threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (h, s, gate) = (&h, &s, &gate);
                scope.spawn(move || {
                    gate.wait();
                    h.report(BackendId(0), addr(1), Outcome::Status(503), s, RegionId(0));
                });
            }
        });
        let ep = h.states()[0].endpoints()[0].clone();
        let k = ep.ejections.load(Ordering::SeqCst);
        assert_eq!(k, 1, "round {round}: the cool-down was multiplied");
        let left = ep.ejected_until_ms.load(Ordering::SeqCst) - now_ms();
        assert!(left <= 10_000, "round {round}: {left} ms");
    }
}

#[test]
fn the_multiplier_decays_after_a_healthy_period() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(2));
    let s = OutlierSettings {
        base_ejection: Duration::from_millis(10),
        max_ejection: Duration::from_millis(50),
        ..settings(100)
    };
    let eject = || {
        h.report(
            BackendId(0),
            addr(1),
            Outcome::ConnectFailure,
            &s,
            RegionId(0),
        )
    };
    let ep = h.states()[0].endpoints()[0].clone();
    let end = || {
        let until = ep.ejected_until_ms.load(Ordering::SeqCst);
        reg.sweep(until);
        assert!(!ep.is_ejected());
    };
    assert!(eject());
    end();
    assert!(eject());
    assert_eq!(ep.ejections.load(Ordering::SeqCst), 2);
    end();
    // Back in for two whole max_ejection periods: two steps fewer.
    std::thread::sleep(Duration::from_millis(170));
    assert!(eject());
    assert_eq!(
        ep.ejections.load(Ordering::SeqCst),
        1,
        "the multiplier did not decay"
    );
}

#[test]
fn a_streak_is_consecutive_and_any_answer_below_500_ends_it() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(2));
    let s = OutlierSettings {
        consecutive_failures: 3,
        consecutive_5xx: 3,
        ..settings(100)
    };
    let report = |o| h.report(BackendId(0), addr(1), o, &s, RegionId(0));
    let ep = h.states()[0].endpoints()[0].clone();
    // Two of each, then one answer that is not a 5xx (a 499 is the
    // client's doing): both streaks start again.
    for o in [Outcome::Status(500), Outcome::Status(599)] {
        assert!(!report(o));
    }
    for o in [Outcome::ConnectFailure, Outcome::Reset] {
        assert!(!report(o));
    }
    assert!(!report(Outcome::Status(499)));
    for o in [Outcome::Status(503), Outcome::Status(503), Outcome::Reset] {
        assert!(!report(o));
    }
    assert!(!ep.is_ejected(), "a success did not end the streaks");
    // A connect failure and a reset are one streak; a 5xx another.
    assert!(!report(Outcome::ConnectFailure));
    assert!(report(Outcome::Reset), "the third failure in a row ejects");
    assert!(ep.is_ejected());
    assert!(h.states()[0].endpoints()[0].is_ejected());
    assert!(!h.states()[0].is_available());

    // On the other endpoint: 500 is a 5xx, with a threshold of one.
    let one = settings(100);
    assert!(!h.report(
        BackendId(1),
        addr(2),
        Outcome::Status(499),
        &one,
        RegionId(0)
    ));
    assert!(h.report(
        BackendId(1),
        addr(2),
        Outcome::Status(500),
        &one,
        RegionId(0)
    ));
}

#[test]
fn a_threshold_of_zero_turns_the_check_off() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(2));
    let off = OutlierSettings {
        consecutive_failures: 0,
        consecutive_5xx: 0,
        ..settings(100)
    };
    for _ in 0..10 {
        for o in [Outcome::Status(503), Outcome::ConnectFailure] {
            assert!(!h.report(BackendId(0), addr(1), o, &off, RegionId(0)));
        }
    }
    assert!(h.states()[0].is_available());
}

/// One step of decay per whole `max_ejection` spent back in, counted from
/// when the last ejection ended (a pure function of the clock given).
#[test]
fn each_whole_healthy_period_takes_one_step_off_the_multiplier() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(1));
    let ep = h.states()[0].endpoints()[0].clone();
    let s = OutlierSettings {
        max_ejection: Duration::from_millis(1_000),
        ..settings(100)
    };
    let at = |prev: u32, ended: u64, now: u64| {
        ep.ejections.store(prev, Ordering::SeqCst);
        ep.ejection_ended_ms.store(ended, Ordering::SeqCst);
        let k = crate::eject::multiplier(&ep, &s, now);
        assert_eq!(ep.ejections.load(Ordering::SeqCst), k, "kept for the next");
        k
    };
    assert_eq!(at(0, 0, 5_000), 1, "the first ejection");
    assert_eq!(at(3, 0, 50_000), 4, "never ended: no decay");
    assert_eq!(at(3, 10_000, 10_999), 4, "back for less than a period");
    assert_eq!(at(3, 10_000, 11_000), 3);
    assert_eq!(at(3, 10_000, 11_999), 3);
    assert_eq!(at(3, 10_000, 12_000), 2);
    assert_eq!(at(3, 10_000, 13_000), 1);
    assert_eq!(at(3, 10_000, 99_000), 1, "never below one");
}
