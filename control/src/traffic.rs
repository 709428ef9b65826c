//! The traffic model the impact preview runs on: each reporting proxy's
//! requests by (country, host pin), kept over a rolling window.
//!
//! Bounded: per proxy, [`BUCKETS`] buckets of [`BUCKET_MS`] (15 minutes),
//! each a sorted list of at most [`MAX_TRAFFIC_CELLS`] (cell, count)
//! pairs of 8 bytes; at most [`MAX_REPORTERS`] proxies, and at most
//! [`MAX_PINS`] distinct pin names (later ones count as `*`). A proxy's
//! figures are its own: a proxy that stops reporting ages out of the
//! window, and one that restarts under the same name goes on in its place.
//!
//! Each report says how long its counts took (`interval_ms`), so each
//! proxy's rate is its requests over the time its reports in the window
//! cover, and the fleet's rate the sum of the proxies' rates: exact
//! whatever the bucket edges.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use edgesteer_config::geo_codes::COUNTRY_SLOTS;
use edgesteer_config::Country;
use edgesteer_control_api::report::{
    TrafficReport, MAX_TRAFFIC_CELLS, OTHER_COUNTRY, OTHER_PIN, UNKNOWN_COUNTRY,
};

use crate::figures::now_ms;

/// One bucket covers this long.
pub const BUCKET_MS: u64 = 5_000;
/// Buckets kept per proxy: 15 minutes.
pub const BUCKETS: usize = 180;
/// Proxies tracked at once; past it, a new name is not (until one ages out).
pub const MAX_REPORTERS: usize = 2_000;
/// Distinct pin names kept; later ones count as the pin `*`.
pub const MAX_PINS: usize = 1_024;
/// A report longer than this is counted as this long (a proxy that was
/// away does not stretch its rate over its absence).
const MAX_INTERVAL_MS: u64 = 10_000;

/// A traffic cell: the client's country and the host pin it met.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    Country(Country),
    /// The geo database could not place the client.
    Unknown,
    /// One of the countries past a report's top K, summed.
    Other,
}

impl Place {
    fn code(&self) -> u16 {
        match self {
            Place::Country(c) => c.index() as u16,
            Place::Unknown => COUNTRY_SLOTS as u16,
            Place::Other => COUNTRY_SLOTS as u16 + 1,
        }
    }

    fn from_code(code: u16) -> Place {
        match usize::from(code) {
            i if i < COUNTRY_SLOTS => {
                let c = [b'A' + (i / 26) as u8, b'A' + (i % 26) as u8];
                Country::from_bytes(&c).map_or(Place::Unknown, Place::Country)
            }
            COUNTRY_SLOTS => Place::Unknown,
            _ => Place::Other,
        }
    }

    fn parse(s: &str) -> Option<Place> {
        match s {
            UNKNOWN_COUNTRY => Some(Place::Unknown),
            OTHER_COUNTRY => Some(Place::Other),
            s => Country::parse(s).map(Place::Country),
        }
    }

    /// As the API writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Place::Country(c) => c.as_str(),
            Place::Unknown => UNKNOWN_COUNTRY,
            Place::Other => OTHER_COUNTRY,
        }
    }
}

/// The observed rate of one (place, pin) cell, fleet-wide.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub place: Place,
    pub pin: Option<String>,
    pub rps: f64,
}

/// What [`Traffic::observed`] found in a window.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub cells: Vec<Cell>,
    pub requests: u64,
    pub proxies: usize,
}

#[derive(Debug)]
struct Bucket {
    start_ms: u64,
    covered_ms: u64,
    /// (pin id << 16 | place code, requests), sorted by cell.
    cells: Vec<(u32, u32)>,
}

#[derive(Debug, Default)]
struct Inner {
    proxies: HashMap<String, VecDeque<Bucket>>,
    /// Pin names by id; id 0 is "no pin".
    pins: Vec<String>,
    pin_ids: HashMap<String, u16>,
}

/// Every proxy's recent traffic.
#[derive(Debug, Default)]
pub struct Traffic(Mutex<Inner>);

impl Inner {
    fn pin_id(&mut self, pin: Option<&str>) -> u16 {
        let Some(pin) = pin else { return 0 };
        if let Some(&id) = self.pin_ids.get(pin) {
            return id;
        }
        if self.pins.is_empty() {
            self.pins.push(String::new());
        }
        // Past the cap a new name counts as `*`, which takes the one slot
        // kept past it (id 0 is "no pin", so ids stay within u16).
        let pin = if self.pins.len() > MAX_PINS {
            match self.pin_ids.get(OTHER_PIN) {
                Some(&id) => return id,
                None => OTHER_PIN,
            }
        } else {
            pin
        };
        let id = u16::try_from(self.pins.len()).unwrap_or(u16::MAX);
        self.pins.push(pin.to_string());
        self.pin_ids.insert(pin.to_string(), id);
        id
    }
}

impl Traffic {
    /// Adds one proxy's report, at `now_ms`.
    pub fn ingest_at(&self, proxy: &str, report: &TrafficReport, now_ms: u64) {
        let Ok(mut inner) = self.0.lock() else {
            return;
        };
        let mut cells: Vec<(u32, u32)> = Vec::with_capacity(report.cells.len());
        for c in report.cells.iter().take(MAX_TRAFFIC_CELLS) {
            let Some(place) = Place::parse(&c.country) else {
                continue;
            };
            let pin = inner.pin_id(c.pin.as_deref());
            let n = u32::try_from(c.requests).unwrap_or(u32::MAX);
            cells.push(((u32::from(pin) << 16) | u32::from(place.code()), n));
        }
        let full = inner.proxies.len() >= MAX_REPORTERS;
        if full && !inner.proxies.contains_key(proxy) {
            // Make room from proxies gone quiet for the whole window.
            let horizon = now_ms.saturating_sub(BUCKET_MS * BUCKETS as u64);
            inner
                .proxies
                .retain(|_, b| b.back().is_some_and(|b| b.start_ms >= horizon));
            if inner.proxies.len() >= MAX_REPORTERS {
                tracing::warn!(
                    proxy,
                    "traffic model full ({MAX_REPORTERS} proxies); not tracking a new one"
                );
                return;
            }
        }
        let start_ms = now_ms - now_ms % BUCKET_MS;
        let buckets = inner.proxies.entry(proxy.to_string()).or_default();
        if buckets.back().is_none_or(|b| b.start_ms < start_ms) {
            buckets.push_back(Bucket {
                start_ms,
                covered_ms: 0,
                cells: Vec::new(),
            });
        }
        while buckets.len() > BUCKETS {
            buckets.pop_front();
        }
        let Some(b) = buckets.back_mut() else { return };
        b.covered_ms += report.interval_ms.clamp(1, MAX_INTERVAL_MS);
        merge(&mut b.cells, cells);
    }

    /// Adds one proxy's report now.
    pub fn ingest(&self, proxy: &str, report: &TrafficReport) {
        self.ingest_at(proxy, report, now_ms());
    }

    /// The fleet's rate by cell over the last `window_ms` before `now_ms`:
    /// each proxy's requests in the buckets that start in the window, over
    /// the time those buckets' reports cover.
    pub fn observed_at(&self, window_ms: u64, now_ms: u64) -> Observed {
        let Ok(inner) = self.0.lock() else {
            return Observed::default();
        };
        let since = now_ms.saturating_sub(window_ms);
        let since = since - since % BUCKET_MS;
        let mut rates: HashMap<u32, f64> = HashMap::new();
        let mut out = Observed::default();
        let mut sum: HashMap<u32, u64> = HashMap::new();
        for buckets in inner.proxies.values() {
            let mut covered = 0u64;
            sum.clear();
            for b in buckets.iter().rev().take_while(|b| b.start_ms >= since) {
                covered += b.covered_ms;
                for &(cell, n) in &b.cells {
                    *sum.entry(cell).or_default() += u64::from(n);
                }
            }
            if covered == 0 {
                continue;
            }
            out.proxies += 1;
            let secs = covered as f64 / 1000.0;
            for (&cell, &n) in &sum {
                out.requests += n;
                *rates.entry(cell).or_default() += n as f64 / secs;
            }
        }
        out.cells = rates
            .into_iter()
            .map(|(cell, rps)| {
                let pin = (cell >> 16) as usize;
                Cell {
                    place: Place::from_code((cell & 0xffff) as u16),
                    pin: (pin != 0).then(|| inner.pins.get(pin).cloned().unwrap_or_default()),
                    rps,
                }
            })
            .collect();
        out.cells
            .sort_by(|a, b| (&a.place, &a.pin).cmp(&(&b.place, &b.pin)));
        out
    }

    /// [`Traffic::observed_at`] now.
    pub fn observed(&self, window_ms: u64) -> Observed {
        self.observed_at(window_ms, now_ms())
    }
}

/// Adds `new` into the sorted `into`.
fn merge(into: &mut Vec<(u32, u32)>, mut new: Vec<(u32, u32)>) {
    if into.is_empty() {
        new.sort_unstable();
        new.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 = a.1.saturating_add(b.1);
            }
            same
        });
        *into = new;
        return;
    }
    for (cell, n) in new {
        match into.binary_search_by_key(&cell, |&(c, _)| c) {
            Ok(i) => {
                if let Some(e) = into.get_mut(i) {
                    e.1 = e.1.saturating_add(n);
                }
            }
            Err(i) if into.len() < MAX_TRAFFIC_CELLS => into.insert(i, (cell, n)),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgesteer_control_api::report::TrafficCell;

    fn report(interval_ms: u64, cells: &[(&str, Option<&str>, u64)]) -> TrafficReport {
        TrafficReport {
            interval_ms,
            cells: cells
                .iter()
                .map(|(c, p, n)| TrafficCell {
                    country: c.to_string(),
                    pin: p.map(str::to_string),
                    requests: *n,
                })
                .collect(),
            limits: Vec::new(),
        }
    }

    #[test]
    fn rates_are_per_proxy_over_what_their_reports_cover() {
        let t = Traffic::default();
        let now = 1_000_000;
        // p1: 10 rps of DE for 4 s; p2: 5 rps of DE for 2 s, plus pinned US.
        for i in 0..4 {
            t.ingest_at("p1", &report(1000, &[("DE", None, 10)]), now + i * 1000);
        }
        for i in 0..2 {
            t.ingest_at(
                "p2",
                &report(1000, &[("DE", None, 5), ("US", Some("api-eu.x"), 2)]),
                now + i * 1000,
            );
        }
        let o = t.observed_at(60_000, now + 4000);
        assert_eq!(o.proxies, 2);
        assert_eq!(o.requests, 40 + 10 + 4);
        let de = o
            .cells
            .iter()
            .find(|c| c.place.as_str() == "DE" && c.pin.is_none())
            .unwrap();
        assert!((de.rps - 15.0).abs() < 1e-9, "{de:?}");
        let us = o.cells.iter().find(|c| c.place.as_str() == "US").unwrap();
        assert_eq!(us.pin.as_deref(), Some("api-eu.x"));
        assert!((us.rps - 2.0).abs() < 1e-9);
        // Out of the window: nothing.
        let later = t.observed_at(10_000, now + 60_000);
        assert_eq!((later.proxies, later.requests), (0, 0));
    }

    /// Pins past the cap are counted, together, as `*`: neither dropped
    /// nor given a name of their own (which once recursed for ever).
    #[test]
    fn pins_past_the_cap_count_as_one() {
        let t = Traffic::default();
        let names: Vec<String> = (0..MAX_PINS + 100).map(|i| format!("p{i}.x")).collect();
        let cells: Vec<_> = names.iter().map(|n| ("DE", Some(n.as_str()), 1)).collect();
        for chunk in cells.chunks(MAX_TRAFFIC_CELLS / 4) {
            t.ingest_at("p", &report(1000, chunk), 1_000_000);
        }
        let o = t.observed_at(60_000, 1_001_000);
        assert_eq!(o.requests, names.len() as u64, "every request counted");
        let pins: std::collections::HashSet<_> =
            o.cells.iter().filter_map(|c| c.pin.as_deref()).collect();
        assert_eq!(pins.len(), MAX_PINS + 1, "MAX_PINS names and `*`");
        assert!(pins.contains(OTHER_PIN));
        assert!(pins.contains("p0.x") && !pins.contains(names[MAX_PINS + 50].as_str()));
    }

    #[test]
    fn memory_is_bounded_per_proxy() {
        let t = Traffic::default();
        for i in 0..(BUCKETS as u64 * 2) {
            t.ingest_at("p", &report(1000, &[("FR", None, 1)]), i * BUCKET_MS);
        }
        let inner = t.0.lock().unwrap();
        assert_eq!(inner.proxies["p"].len(), BUCKETS);
    }
}
