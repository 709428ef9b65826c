//! What proxies report to the config service every second: per region
//! and release track, requests, errors and latency buckets (the rollout
//! gates and the console are computed from these), and the traffic model
//! the impact preview runs on: requests by country and host pin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Upper bounds (ms) of the latency buckets in a [`TrackReport`]; one
/// more bucket counts everything slower.
pub const LATENCY_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// One track's figures in a [`StatsReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackReport {
    pub requests: u64,
    pub errors: u64,
    /// Counts per latency bucket (see [`LATENCY_BUCKETS_MS`]).
    pub buckets: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionReport {
    pub stable: TrackReport,
    pub canary: TrackReport,
    pub canary_backends: u32,
    pub canary_unhealthy: u32,
    /// Backends (their table keys) this proxy holds unavailable now, by
    /// active or passive checks; what the console's region states and its
    /// explain are drawn from. Absent from older proxies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealthy: Vec<String>,
}

/// `POST /v1/stats`: what one proxy saw since its previous report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub proxy: String,
    pub version: u64,
    pub regions: BTreeMap<String, RegionReport>,
    /// Requests by (country, host pin) since the previous report; absent
    /// from older proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficReport>,
}

/// Countries a [`TrafficReport`] names; the rest are summed as
/// [`OTHER_COUNTRY`].
pub const TOP_COUNTRIES: usize = 64;
/// Most cells one [`TrafficReport`] carries (the service drops the rest).
pub const MAX_TRAFFIC_CELLS: usize = 4096;
/// The country of requests the geo database could not place.
pub const UNKNOWN_COUNTRY: &str = "";
/// The countries outside a report's top [`TOP_COUNTRIES`], summed.
pub const OTHER_COUNTRY: &str = "other";
/// The pin of requests that met a host pin a proxy (or the service) did
/// not count apart: past its cap of distinct pins.
pub const OTHER_PIN: &str = "*";
/// Longest host pin a report names (a DNS name: 253 characters).
pub const MAX_PIN_BYTES: usize = 253;
/// Longest backend key (`host:port`) a report names.
pub const MAX_BACKEND_KEY_BYTES: usize = 260;
/// Longest region or policy name (the table's own rule; tiers have theirs).
const MAX_NAME_BYTES: usize = 63;

impl StatsReport {
    /// Whether the report has the shape a proxy sends: names no longer
    /// than the table allows, and no more regions, cells, tiers or bins
    /// than a proxy ever sends. The service keeps parts of reports for
    /// minutes, so a report outside these bounds is refused whole, naming
    /// the field at fault (`(path, reason)`), rather than stored.
    pub fn check(&self) -> Result<(), (String, String)> {
        use edgesteer_config::model::MAX_REGIONS;
        let long = |path: String, s: &str, max: usize| {
            (s.len() > max).then(|| {
                (
                    path,
                    format!("at most {max} bytes; this one has {}", s.len()),
                )
            })
        };
        let many = |path: &str, n: usize, max: usize| {
            (n > max).then(|| {
                (
                    path.to_string(),
                    format!("at most {max} entries; this report has {n}"),
                )
            })
        };
        let fail = |e: Option<(String, String)>| e.map_or(Ok(()), Err);
        fail(many("regions", self.regions.len(), MAX_REGIONS))?;
        for (name, r) in &self.regions {
            fail(long(format!("regions.{name}"), name, MAX_NAME_BYTES))?;
            for (track, t) in [("stable", &r.stable), ("canary", &r.canary)] {
                let path = format!("regions.{name}.{track}.buckets");
                fail(many(&path, t.buckets.len(), LATENCY_BUCKETS_MS.len() + 1))?;
            }
            for (i, b) in r.unhealthy.iter().enumerate() {
                let path = format!("regions.{name}.unhealthy[{i}]");
                fail(long(path, b, MAX_BACKEND_KEY_BYTES))?;
            }
        }
        let Some(t) = &self.traffic else {
            return Ok(());
        };
        fail(many("traffic.cells", t.cells.len(), MAX_TRAFFIC_CELLS))?;
        for (i, c) in t.cells.iter().enumerate() {
            // An ISO code, "" or "other"; anything else the service skips.
            fail(long(
                format!("traffic.cells[{i}].country"),
                &c.country,
                OTHER_COUNTRY.len(),
            ))?;
            if let Some(pin) = &c.pin {
                fail(long(format!("traffic.cells[{i}].pin"), pin, MAX_PIN_BYTES))?;
            }
        }
        use crate::limits::{MAX_LIMIT_TIERS, RATE_BINS};
        fail(many("traffic.limits", t.limits.len(), MAX_LIMIT_TIERS))?;
        for (i, u) in t.limits.iter().enumerate() {
            fail(long(
                format!("traffic.limits[{i}].policy"),
                &u.policy,
                MAX_NAME_BYTES,
            ))?;
            fail(long(
                format!("traffic.limits[{i}].tier"),
                &u.tier,
                edgesteer_config::ratelimit::MAX_TIER_NAME,
            ))?;
            fail(many(
                &format!("traffic.limits[{i}].bins"),
                u.bins.len(),
                RATE_BINS,
            ))?;
        }
        Ok(())
    }
}

/// One proxy's requests since its previous report, by the inputs of the
/// routing decision that the table can change: the client's country and
/// the host pin the request met. Bounded: the top [`TOP_COUNTRIES`]
/// countries by requests, the rest summed as [`OTHER_COUNTRY`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// How long these counts took (ms since the previous report).
    pub interval_ms: u64,
    /// Non-zero cells only.
    pub cells: Vec<TrafficCell>,
    /// Rate-limit usage by (policy, tier), the busiest
    /// [`crate::limits::MAX_LIMIT_TIERS`]; absent from older proxies and
    /// when no key sent anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<crate::limits::TierUsage>,
}

/// Requests of one (country, pin) cell.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficCell {
    /// ISO code, [`UNKNOWN_COUNTRY`] or [`OTHER_COUNTRY`].
    pub country: String,
    /// The pinned host (as the table lists it), if the request met a pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    pub requests: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::limits::{RateBin, TierUsage, MAX_LIMIT_TIERS, RATE_BINS};

    /// Each bound refuses one past it, naming the field; at the bound the
    /// report passes.
    #[test]
    fn check_names_the_field_past_each_bound() {
        let tier = |policy: &str, tier: &str, bins: usize| TierUsage {
            policy: policy.into(),
            tier: tier.into(),
            bins: (0..bins)
                .map(|b| RateBin {
                    bin: b as u8,
                    ..RateBin::default()
                })
                .collect(),
            ..TierUsage::default()
        };
        let cell = |country: &str, pin: Option<String>| TrafficCell {
            country: country.into(),
            pin,
            requests: 1,
        };
        let region = |buckets: usize, unhealthy: &str| RegionReport {
            stable: TrackReport {
                buckets: vec![0; buckets],
                ..TrackReport::default()
            },
            unhealthy: vec![unhealthy.to_string()],
            ..RegionReport::default()
        };
        let report = |regions: Vec<(String, RegionReport)>, cells, limits| StatsReport {
            proxy: "p".into(),
            version: 1,
            regions: regions.into_iter().collect(),
            traffic: Some(TrafficReport {
                interval_ms: 1000,
                cells,
                limits,
            }),
        };
        let name = |n: usize| "a".repeat(n);
        let max_regions = edgesteer_config::model::MAX_REGIONS;
        let buckets = LATENCY_BUCKETS_MS.len() + 1;
        let ok = report(
            (0..max_regions)
                .map(|i| (format!("r{i}"), region(buckets, &name(260))))
                .collect(),
            vec![cell("other", Some(name(253))); MAX_TRAFFIC_CELLS],
            vec![tier(&name(63), &name(256), RATE_BINS); MAX_LIMIT_TIERS],
        );
        assert_eq!(ok.check(), Ok(()));
        let field = |r: StatsReport| r.check().err().map(|(path, _)| path);
        let at = |f: &dyn Fn(&mut StatsReport)| {
            let mut r = ok.clone();
            f(&mut r);
            field(r)
        };
        type Edit<'a> = Box<dyn Fn(&mut StatsReport) + 'a>;
        let cases: Vec<(&str, Edit<'_>)> = vec![
            (
                "regions",
                Box::new(|r| {
                    r.regions.insert("extra".into(), RegionReport::default());
                }),
            ),
            (
                "regions.r0.stable.buckets",
                Box::new(move |r| {
                    r.regions.insert("r0".into(), region(buckets + 1, "x"));
                }),
            ),
            (
                "regions.r0.unhealthy[0]",
                Box::new(move |r| {
                    r.regions.insert("r0".into(), region(1, &"b".repeat(261)));
                }),
            ),
            (
                "traffic.cells",
                Box::new(|r| {
                    r.traffic.as_mut().unwrap().cells.push(cell("DE", None));
                }),
            ),
            (
                "traffic.cells[3].country",
                Box::new(|r| {
                    r.traffic.as_mut().unwrap().cells[3].country = "others".into();
                }),
            ),
            (
                "traffic.cells[0].pin",
                Box::new(|r| {
                    r.traffic.as_mut().unwrap().cells[0].pin = Some("p".repeat(254));
                }),
            ),
            (
                "traffic.limits",
                Box::new(move |r| {
                    r.traffic.as_mut().unwrap().limits.push(tier("a", "b", 0));
                }),
            ),
            (
                "traffic.limits[1].policy",
                Box::new(|r| {
                    r.traffic.as_mut().unwrap().limits[1].policy = "p".repeat(64);
                }),
            ),
            (
                "traffic.limits[2].tier",
                Box::new(|r| {
                    let max = edgesteer_config::ratelimit::MAX_TIER_NAME;
                    r.traffic.as_mut().unwrap().limits[2].tier = "t".repeat(max + 1);
                }),
            ),
            (
                "traffic.limits[0].bins",
                Box::new(|r| {
                    r.traffic.as_mut().unwrap().limits[0]
                        .bins
                        .push(RateBin::default());
                }),
            ),
        ];
        for (path, f) in &cases {
            assert_eq!(at(f.as_ref()).as_deref(), Some(*path));
        }
        let long_region = report(
            vec![(name(64), RegionReport::default())],
            Vec::new(),
            Vec::new(),
        );
        assert_eq!(
            field(long_region).as_deref(),
            Some(format!("regions.{}", name(64)).as_str())
        );
    }
}
