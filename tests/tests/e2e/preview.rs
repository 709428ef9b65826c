//! The impact preview (issue 29), end to end: two real proxies follow a
//! config service and carry paced traffic from eleven countries at known
//! rates, and two API keys of one rate-limit tier at known rates;
//! `POST /v1/preview` (and `ctl --preview`) then say where that traffic
//! would go under a change, which region would pass its `capacity`, and
//! how many 429s a new limit would answer; the store never changes.

use std::collections::BTreeMap;
use std::time::Duration;

use edgesteer_control_api::api::PatchRegion;
use edgesteer_control_api::client::ClientError;
use edgesteer_control_api::preview::{Preview, PreviewRequest};
use edgesteer_tests::*;

/// Each country's share of the paced load, in slots of [`SLOT_RPS`].
const MIX: &[(&str, usize)] = &[
    ("US", 4),
    ("CA", 1),
    ("BR", 1),
    ("DE", 2),
    ("FR", 1),
    ("GB", 1),
    ("JP", 2),
    ("SG", 1),
    ("AU", 1),
    ("ZA", 1),
    ("CN", 1),
];
/// Requests/s per slot of [`MIX`].
const SLOT_RPS: f64 = 5.0;
/// Two API keys of the `pro` tier (100/s per key), sent through
/// p1 only (the limit is per proxy) from Germany: (key, requests/s).
const KEYS: [(&str, u32); 2] = [("preview-key-a", 20), ("preview-key-b", 5)];
/// us-west's `capacity` in the test's table: below what a drain of
/// us-east would send it.
const WEST_CAPACITY: f64 = 20.0;

fn rate_of(countries: &[&str]) -> f64 {
    MIX.iter()
        .filter(|(c, _)| countries.contains(c))
        .map(|(_, n)| *n as f64 * SLOT_RPS)
        .sum()
}

fn near(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= want * tolerance
}

fn drain(region: &str) -> PreviewRequest {
    PreviewRequest {
        table: None,
        region: Some(region.into()),
        patch: Some(PatchRegion {
            drain: Some(true),
            ..PatchRegion::default()
        }),
        window_s: Some(5),
    }
}

fn whole(spec: &edgesteer_config::TableSpec) -> PreviewRequest {
    PreviewRequest {
        table: Some(spec.clone()),
        region: None,
        patch: None,
        window_s: Some(5),
    }
}

/// The (from, to) pairs of a preview's moves.
fn pairs(p: &Preview) -> Vec<(&str, &str)> {
    p.moves
        .iter()
        .map(|m| (m.from.as_str(), m.to.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_shows_where_the_fleets_traffic_would_go_and_commits_nothing() {
    let _heavy = heavy().await;
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    spec.regions.get_mut("us-west").unwrap().capacity = Some(WEST_CAPACITY);
    // Covergen's API-key tiers (the harness drops its limits): `pro`
    // at 100/s per key; requests without a key get 1000/s per address.
    spec.rate_limits = vec![serde_json::from_value(serde_json::json!({
        "name": "api-key",
        "key": "header:x-api-key",
        "default_tier": "free",
        "tiers": {"free": {"rate": 1000}, "pro": {"rate": 100, "burst": 100}},
        "keys": {KEYS[0].0: "pro", KEYS[1].0: "pro"},
    }))
    .unwrap()];
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(&wd.path("data"), Some(&seed), &[])
        .await
        .unwrap();
    let p1 = wd.follower(&control, "p1").await.unwrap();
    let p2 = wd.follower(&control, "p2").await.unwrap();
    let api = control.client();
    let reader = control.client_as(READ_TOKEN);
    let v0 = api.get().await.unwrap().version;

    // Paced load through both proxies: 80 requests/s, 16 slots of 5/s.
    let ips = MIX
        .iter()
        .flat_map(|(c, n)| std::iter::repeat_n(sample_ip(c), *n))
        .collect::<Vec<_>>();
    let keyed: f64 = KEYS.iter().map(|(_, r)| f64::from(*r)).sum();
    let total = ips.len() as f64 * SLOT_RPS + keyed;
    let keyed_loads: Vec<_> = KEYS
        .iter()
        .map(|&(key, rate)| {
            tokio::spawn(send_paced(Pace {
                urls: vec![p1.url("/v1/covers")],
                ips: vec![sample_ip("DE")],
                headers: vec![("x-api-key".into(), key.into())],
                rate,
                duration: Duration::from_secs(15),
                conns: 2,
            }))
        })
        .collect();
    let load = tokio::spawn(send_paced(Pace {
        urls: vec![p1.url("/v1/covers"), p2.url("/v1/covers")],
        ips,
        headers: Vec::new(),
        rate: (total - keyed) as u32,
        duration: Duration::from_secs(15),
        conns: 8,
    }));
    // Long enough for a 5 s window (5 s buckets) to see only load.
    tokio::time::sleep(Duration::from_secs(11)).await;

    // Draining us-east: its clients (US, CA, BR) go to us-west, and
    // nothing else moves. A read token may ask.
    let p = reader.preview(&drain("us-east")).await.unwrap();
    let want = rate_of(&["US", "CA", "BR"]);
    assert_eq!(p.proxies, 2, "{p:?}");
    assert_eq!(pairs(&p), vec![("us-east", "us-west")], "{p:#?}");
    assert!(
        near(p.moves[0].rps, want, 0.07),
        "{} vs {want}: {p:#?}",
        p.moves[0].rps
    );
    assert!(near(p.total_rps, total, 0.07), "{} vs {total}", p.total_rps);
    assert!(near(p.moves[0].share, want / total, 0.07), "{p:#?}");
    let moved: BTreeMap<&str, &str> = p
        .countries
        .iter()
        .map(|c| (c.country.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(
        moved,
        BTreeMap::from([("BR", "us-west"), ("CA", "us-west"), ("US", "us-west")])
    );
    let east = &p.regions["us-east"];
    assert!(
        near(east.before_rps, want, 0.07) && east.after_rps == 0.0,
        "{east:?}"
    );
    let west = &p.regions["us-west"];
    assert!(near(west.after_rps, want, 0.07), "{p:#?}");
    // 30/s on a capacity of 20: the capacity bound (and its peak, none).
    assert_eq!(west.capacity, Some(WEST_CAPACITY));
    assert_eq!(west.capacity_bounds, vec!["capacity", "peak"], "{west:?}");
    let warning = west.capacity_warning.as_deref().unwrap_or("");
    let pct = 100.0 * west.after_rps / WEST_CAPACITY;
    assert!(
        warning.contains(&format!("{pct:.0}% of its capacity of 20.0")) && near(pct, 150.0, 0.07),
        "{warning}"
    );
    assert!(east.capacity_bounds.is_empty(), "{east:?}");
    assert!(
        east.peak_rps > 0.0 && east.peak_rps < want * 1.3,
        "{east:?}"
    );
    // The canary shares do not change, the canary rate does.
    assert_eq!(
        (east.canary_bps_before, east.canary_bps_after),
        (1000, 1000)
    );
    assert!(near(east.canary_rps_before, want / 10.0, 0.1), "{east:?}");
    assert_eq!(p.zone_crossings, 0.0);
    assert!(p.requests_seen > 0);
    for region in ["eu-west", "ap-southeast", "cn-east"] {
        let r = &p.regions[region];
        assert_eq!(r.before_rps, r.after_rps, "{region}: {r:?}");
        assert!(r.before_rps > 0.0, "{region}: {r:?}");
    }
    assert_eq!(api.get().await.unwrap().version, v0, "a preview committed");

    // A table that moves Japan to us-west moves Japan's rate, only it.
    let mut jp = spec.clone();
    jp.geo.countries.insert("JP".into(), "us-west".into());
    let p = api.preview(&whole(&jp)).await.unwrap();
    assert_eq!(pairs(&p), vec![("ap-southeast", "us-west")], "{p:#?}");
    assert_eq!(p.countries.len(), 1, "{p:#?}");
    assert_eq!(p.countries[0].country, "JP");
    assert!(near(p.countries[0].rps, rate_of(&["JP"]), 0.1), "{p:#?}");
    assert_eq!(api.get().await.unwrap().version, v0, "a preview committed");

    // `set-limit api-key --tier pro --rate 10`: key A's excess, 10/s, is
    // refused; nothing is now or would be under 100/s.
    let mut limited = spec.clone();
    let pro = limited
        .rate_limits
        .iter_mut()
        .find(|p| p.name == "api-key")
        .and_then(|p| p.tiers.get_mut("pro"))
        .unwrap();
    pro.rate = 10;
    pro.burst = Some(10);
    let p = api.preview(&whole(&limited)).await.unwrap();
    let pro = p
        .limits
        .iter()
        .find(|l| (l.policy.as_str(), l.tier.as_str()) == ("api-key", "pro"))
        .unwrap_or_else(|| panic!("{:#?}", p.limits));
    assert_eq!((pro.rate_before, pro.rate_after), (Some(100), Some(10)));
    assert!(near(pro.requests_per_s, keyed, 0.05), "{pro:?}");
    assert!(near(pro.keys_seen, 2.0, 0.05), "{pro:?}");
    assert_eq!((pro.observed_429_per_s, pro.before_429_per_s), (0.0, 0.0));
    assert!(near(pro.after_429_per_s, 10.0, 0.05), "{pro:?}");
    // Exactly A's excess as measured: everything but B's 5/s and A's 10/s.
    assert!(
        (pro.after_429_per_s - (pro.requests_per_s - 15.0)).abs() < 0.5,
        "{pro:?}"
    );
    assert!(p.moves.is_empty(), "{p:#?}");
    // The same through `ctl set-limit --preview`, in text.
    let out = control.ctl(&[
        "set-limit",
        "api-key",
        "--tier",
        "pro",
        "--rate",
        "10",
        "--burst",
        "10",
        "--preview",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("api-key/pro"))
        .unwrap_or("");
    assert!(
        out.status.success() && line.contains("limit 100/s burst 100 -> 10/s burst 10"),
        "{text}"
    );
    assert_eq!(api.get().await.unwrap().version, v0, "a preview committed");

    // A failover across zones is refused as the push itself is: 422,
    // with the same fields at fault.
    let mut cross = spec.clone();
    cross.regions.get_mut("eu-west").unwrap().failover = vec!["us-east".into()];
    let previewed = api.preview(&whole(&cross)).await.unwrap_err();
    let pushed = api.put(&cross, "cross-zone", None).await.unwrap_err();
    match (&previewed, &pushed) {
        (
            ClientError::Api {
                status: a,
                code: ca,
                errors: ea,
                ..
            },
            ClientError::Api {
                status: b,
                code: cb,
                errors: eb,
                ..
            },
        ) => {
            assert_eq!((*a, ca.as_str()), (422, "invalid_table"), "{previewed:?}");
            assert_eq!((a, ca), (b, cb));
            assert_eq!(format!("{ea:?}"), format!("{eb:?}"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(api.get().await.unwrap().version, v0, "a preview committed");

    // `ctl shift --preview --json` prints the API's answer and commits nothing.
    let out = control.ctl(&["--json", "shift", "us-east", "--preview"]);
    assert!(out.status.success(), "{out:?}");
    let p: Preview = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pairs(&p), vec![("us-east", "us-west")]);
    let out = control.ctl(&["set-canary", "eu-west", "2500", "--preview"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("canary 1000 -> 2500"),
        "{text}"
    );
    let out = control.ctl(&["shift", "us-east", "--preview"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let west = text
        .lines()
        .find(|l| l.trim_start().starts_with("us-west"))
        .unwrap_or("");
    assert!(
        west.contains("capacity 20")
            && west.contains("WARNING")
            && west.contains("of its capacity"),
        "{text}"
    );
    assert_eq!(api.get().await.unwrap().version, v0, "a preview committed");
    assert_eq!(api.history(100).await.unwrap().versions.len(), 1);

    for keyed in keyed_loads {
        let paced = keyed.await.unwrap();
        assert!(paced.other.is_empty() && paced.limited == 0, "{paced:?}");
    }
    let paced = load.await.unwrap();
    assert!(
        paced.other.is_empty(),
        "{:?}",
        &paced.other[..paced.other.len().min(5)]
    );
}
