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
