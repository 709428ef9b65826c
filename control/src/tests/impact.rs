//! The impact preview's computation on its own (no socket): pins, refused
//! cells, the latency fallback and summed countries are shown as such.

use std::collections::{BTreeMap, BTreeSet};

use edgesteer_config::{compile, parse, Country, RoutingTable};

use crate::impact::{impact, Side, REFUSED};
use crate::live::FleetHealth;
use crate::traffic::{Cell, Observed, Place};

fn covergen() -> edgesteer_config::TableSpec {
    parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap()
}

fn cell(country: &str, pin: Option<&str>, rps: f64) -> Cell {
    Cell {
        place: match country {
            "other" => Place::Other,
            "" => Place::Unknown,
            c => Place::Country(Country::parse(c).unwrap()),
        },
        pin: pin.map(str::to_string),
        rps,
    }
}

fn run(
    before: &RoutingTable,
    after: &RoutingTable,
    cells: Vec<Cell>,
) -> edgesteer_control_api::preview::Preview {
    let none = BTreeMap::<String, BTreeSet<String>>::new();
    let hb = FleetHealth {
        table: before,
        unhealthy: &none,
    };
    let ha = FleetHealth {
        table: after,
        unhealthy: &none,
    };
    let observed = Observed {
        cells,
        requests: 1,
        proxies: 1,
    };
    impact(
        &Side {
            table: before,
            health: &hb,
        },
        &Side {
            table: after,
            health: &ha,
        },
        &observed,
        &BTreeMap::new(),
    )
}

#[test]
fn pinned_traffic_follows_its_pin_and_refusals_are_named() {
    let spec = covergen();
    let before = compile(&spec).unwrap();
    // Drain eu-west: EU clients go to eu-central; the eu pin's US clients
    // go down eu-west's failover too (inside the pin's zone).
    let mut drained = spec.clone();
    drained.regions.get_mut("eu-west").unwrap().drain = true;
    let after = compile(&drained).unwrap();
    let p = run(
        &before,
        &after,
        vec![
            cell("DE", None, 10.0),
            cell("US", Some("api-eu.covergen.ai"), 4.0),
            cell("JP", None, 6.0),
            cell("other", None, 3.0),
        ],
    );
    let moves: Vec<_> = p
        .moves
        .iter()
        .map(|m| (m.from.as_str(), m.to.as_str(), m.rps))
        .collect();
    assert_eq!(moves, vec![("eu-west", "eu-central", 14.0)]);
    assert_eq!(p.total_rps, 20.0);
    assert_eq!(p.countries.len(), 2);
    assert!(p
        .countries
        .iter()
        .any(|c| c.pin.as_deref() == Some("api-eu.covergen.ai")));
    assert_eq!(p.zone_crossings, 0.0);
    assert_eq!(p.unmodeled.len(), 1, "{:?}", p.unmodeled);
    assert_eq!(p.unmodeled[0].rps, 3.0);

    // A Chinese client on the eu pin is refused (421) either way: no move.
    let p = run(
        &before,
        &after,
        vec![cell("CN", Some("api-eu.covergen.ai"), 2.0)],
    );
    assert!(p.moves.is_empty(), "{:?}", p.moves);
    assert_eq!(p.regions["eu-west"].before_rps, 0.0);

    // Drain both cn regions: Chinese clients have nowhere to go (503).
    let mut cn = spec.clone();
    for r in ["cn-east", "cn-north"] {
        cn.regions.get_mut(r).unwrap().drain = true;
    }
    let after = compile(&cn).unwrap();
    let p = run(&before, &after, vec![cell("CN", None, 5.0)]);
    assert_eq!(p.moves[0].to, REFUSED);
    assert_eq!(p.zone_crossings, 0.0);

    // Drain us-east and us-west: US clients fall back by latency, which
    // the service cannot know; shown as unmodeled.
    let mut us = spec.clone();
    for r in ["us-east", "us-west"] {
        us.regions.get_mut(r).unwrap().drain = true;
    }
    let after = compile(&us).unwrap();
    let p = run(&before, &after, vec![cell("US", None, 7.0)]);
    assert!(
        p.unmodeled
            .iter()
            .any(|u| u.what == "latency fallback" && u.rps == 7.0),
        "{:?}",
        p.unmodeled
    );
}

#[test]
fn capacity_warns_above_the_observed_peak_and_canary_follows_the_share() {
    let spec = covergen();
    let before = compile(&spec).unwrap();
    let mut more = spec.clone();
    more.regions.get_mut("us-east").unwrap().canary_bps = 5000;
    more.regions.get_mut("ap-southeast").unwrap().drain = true;
    let after = compile(&more).unwrap();
    let none = BTreeMap::<String, BTreeSet<String>>::new();
    let (hb, ha) = (
        FleetHealth {
            table: &before,
            unhealthy: &none,
        },
        FleetHealth {
            table: &after,
            unhealthy: &none,
        },
    );
    let observed = Observed {
        cells: vec![
            cell("US", None, 100.0),
            cell("JP", None, 50.0),
            cell("KR", None, 50.0),
        ],
        requests: 200,
        proxies: 1,
    };
    let peaks = BTreeMap::from([
        ("ap-northeast".to_string(), 60.0),
        ("us-east".to_string(), 100.0),
    ]);
    let p = impact(
        &Side {
            table: &before,
            health: &hb,
        },
        &Side {
            table: &after,
            health: &ha,
        },
        &observed,
        &peaks,
    );
    let east = &p.regions["us-east"];
    assert_eq!(
        (east.canary_bps_before, east.canary_bps_after),
        (1000, 5000)
    );
    assert!(
        (east.canary_rps_before - 10.0).abs() < 1e-9 && (east.canary_rps_after - 50.0).abs() < 1e-9
    );
    assert!(east.capacity_warning.is_none(), "same rate: {east:?}");
    let ne = &p.regions["ap-northeast"];
    assert_eq!(ne.after_rps, 100.0);
    assert!(
        ne.capacity_warning
            .as_deref()
            .unwrap_or("")
            .contains("167%"),
        "{ne:?}"
    );
}

#[test]
fn capacity_warns_above_80_percent_of_the_field_and_names_the_bound() {
    let mut spec = covergen();
    // us-east takes 100/s now; capacity 150 (warns above 120).
    spec.regions.get_mut("us-east").unwrap().capacity = Some(150.0);
    spec.regions.get_mut("us-west").unwrap().capacity = Some(1000.0);
    let before = compile(&spec).unwrap();
    let p = run(&before, &before, vec![cell("US", None, 100.0)]);
    let east = &p.regions["us-east"];
    assert_eq!(east.capacity, Some(150.0));
    assert!(east.capacity_warning.is_none(), "67%: {east:?}");
    // At 130/s (87%) it warns, though nothing moves: the bound is absolute.
    let p = run(&before, &before, vec![cell("US", None, 130.0)]);
    let east = &p.regions["us-east"];
    assert_eq!(east.capacity_bounds, vec!["capacity".to_string()]);
    let w = east.capacity_warning.as_deref().unwrap_or("");
    assert!(w.contains("87% of its capacity of 150.0"), "{w}");
    // Draining us-east moves 130/s to us-west: 13% of its 1000, under the
    // capacity bound, but over its observed peak (none: no peaks given).
    let mut drained = spec.clone();
    drained.regions.get_mut("us-east").unwrap().drain = true;
    let after = compile(&drained).unwrap();
    let p = run(&before, &after, vec![cell("US", None, 130.0)]);
    let west = &p.regions["us-west"];
    assert_eq!(west.capacity_bounds, vec!["peak".to_string()], "{west:?}");
    // A lower capacity in the proposed table is the one checked.
    drained.regions.get_mut("us-west").unwrap().capacity = Some(100.0);
    let after = compile(&drained).unwrap();
    let p = run(&before, &after, vec![cell("US", None, 130.0)]);
    let west = &p.regions["us-west"];
    assert_eq!(west.capacity, Some(100.0));
    assert_eq!(west.capacity_bounds, vec!["capacity", "peak"], "{west:?}");
    assert!(
        west.capacity_warning
            .as_deref()
            .unwrap_or("")
            .contains("130% of its capacity of 100.0"),
        "{west:?}"
    );
}
