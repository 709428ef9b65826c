//! The traffic model the config service's impact preview runs on: requests
//! by client country and host pin, sent with every stats report.
//!
//! The request path does one relaxed atomic add into a fixed array indexed
//! by the country's dense code (`Country::index()`, < 676, plus one cell
//! for clients the geo database could not place), one array for unpinned
//! requests and one per host pin of the table; no lock, no map, no
//! allocation. Arrays are kept by pin host so they outlive table versions
//! (like the per-track stats); the reporter takes deltas by swapping them
//! to zero and sends the top [`TOP_COUNTRIES`] countries, the rest summed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use edgesteer_config::geo_codes::COUNTRY_SLOTS;
use edgesteer_config::{Country, RoutingTable};
use edgesteer_control_api::report::{
    TrafficCell, TrafficReport, MAX_TRAFFIC_CELLS, OTHER_COUNTRY, OTHER_PIN, TOP_COUNTRIES,
    UNKNOWN_COUNTRY,
};

/// Cells per array: every two-letter code, then "unknown".
const CELLS: usize = COUNTRY_SLOTS + 1;
/// Host pins counted apiece; requests meeting a later pin are counted
/// under [`OTHER_PIN`] (bounded memory: 5.4 KB per pin).
pub const MAX_PINS: usize = 256;

/// Requests by country cell.
#[derive(Debug)]
pub struct CountryCounts(Box<[AtomicU64]>);

impl Default for CountryCounts {
    fn default() -> Self {
        CountryCounts((0..CELLS).map(|_| AtomicU64::new(0)).collect())
    }
}

impl CountryCounts {
    fn add(&self, country: Option<Country>) {
        let i = country.map_or(COUNTRY_SLOTS, Country::index);
        if let Some(c) = self.0.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The non-zero cells since the last call, resetting them.
    fn take(&self, into: &mut Vec<(usize, u64)>) {
        for (i, c) in self.0.iter().enumerate() {
            if c.load(Ordering::Relaxed) != 0 {
                into.push((i, c.swap(0, Ordering::Relaxed)));
            }
        }
    }
}

/// One table's counting handles: resolved when its snapshot is built.
#[derive(Debug, Default)]
pub struct TableTraffic {
    unpinned: Arc<CountryCounts>,
    /// By pin slot (the table's pin order), the first [`MAX_PINS`].
    pins: Vec<Arc<CountryCounts>>,
    overflow: Arc<CountryCounts>,
}

impl TableTraffic {
    /// Counts one request of a client from `country` that met pin `slot`.
    pub fn count(&self, country: Option<Country>, slot: Option<usize>) {
        match slot {
            None => self.unpinned.add(country),
            Some(s) => self.pins.get(s).unwrap_or(&self.overflow).add(country),
        }
    }
}

/// Every array by pin host ("" for unpinned); outlives tables.
#[derive(Debug, Default)]
pub struct TrafficRegistry {
    arrays: DashMap<String, Arc<CountryCounts>>,
}

impl TrafficRegistry {
    fn array(&self, pin: &str) -> Arc<CountryCounts> {
        self.arrays.entry(pin.to_string()).or_default().clone()
    }

    /// The handles for `table`'s snapshot.
    pub fn for_table(&self, table: &RoutingTable) -> TableTraffic {
        TableTraffic {
            unpinned: self.array(""),
            pins: table
                .pins()
                .take(MAX_PINS)
                .map(|(host, _)| self.array(host))
                .collect(),
            overflow: self.array(OTHER_PIN),
        }
    }

    /// The counts since the last call (over `interval_ms`), resetting
    /// them; arrays of pins `table` no longer has are dropped once read.
    pub fn take(&self, table: &RoutingTable, interval_ms: u64) -> TrafficReport {
        let mut raw: Vec<(String, Vec<(usize, u64)>)> = Vec::new();
        for entry in self.arrays.iter() {
            let mut cells = Vec::new();
            entry.value().take(&mut cells);
            if !cells.is_empty() {
                raw.push((entry.key().clone(), cells));
            }
        }
        let live: std::collections::HashSet<&str> =
            table.pins().take(MAX_PINS).map(|(h, _)| h).collect();
        self.arrays
            .retain(|pin, _| pin.is_empty() || pin == OTHER_PIN || live.contains(pin.as_str()));
        TrafficReport {
            interval_ms,
            cells: top_cells(raw),
            limits: Vec::new(),
        }
    }
}

/// The cells to send: the top [`TOP_COUNTRIES`] countries by requests
/// (unknown always kept apart), the others summed per pin as "other".
fn top_cells(raw: Vec<(String, Vec<(usize, u64)>)>) -> Vec<TrafficCell> {
    let mut totals: HashMap<usize, u64> = HashMap::new();
    for (_, cells) in &raw {
        for &(i, n) in cells {
            *totals.entry(i).or_default() += n;
        }
    }
    let mut ranked: Vec<(usize, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: std::collections::HashSet<usize> = ranked
        .iter()
        .filter(|(i, _)| *i != COUNTRY_SLOTS)
        .take(TOP_COUNTRIES)
        .map(|(i, _)| *i)
        .collect();
    let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (pin, cells) in raw {
        for (i, n) in cells {
            let country = if i == COUNTRY_SLOTS {
                UNKNOWN_COUNTRY.to_string()
            } else if top.contains(&i) {
                country_code(i)
            } else {
                OTHER_COUNTRY.to_string()
            };
            *out.entry((pin.clone(), country)).or_default() += n;
        }
    }
    out.into_iter()
        .take(MAX_TRAFFIC_CELLS)
        .map(|((pin, country), requests)| TrafficCell {
            country,
            pin: Some(pin).filter(|p| !p.is_empty()),
            requests,
        })
        .collect()
}

/// The two letters of a country cell.
fn country_code(i: usize) -> String {
    let a = (i / 26) as u8;
    let b = (i % 26) as u8;
    String::from_utf8_lossy(&[b'A' + a, b'A' + b]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_pin_and_country_and_keeps_the_top_countries() {
        let table = edgesteer_config::compile(
            &edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap(),
        )
        .unwrap();
        let reg = TrafficRegistry::default();
        let t = reg.for_table(&table);
        let de = Country::parse("DE");
        for _ in 0..3 {
            t.count(de, None);
        }
        t.count(None, None);
        t.count(de, Some(1));
        // 70 more countries, once each: past the top 64 they are "other".
        let codes: Vec<Country> = (0..70)
            .filter_map(|i| Country::parse(&country_code(100 + i)))
            .collect();
        for &c in &codes {
            t.count(Some(c), None);
        }
        let r = reg.take(&table, 1000);
        let cell = |pin: Option<&str>, c: &str| {
            r.cells
                .iter()
                .find(|x| x.pin.as_deref() == pin && x.country == c)
                .map_or(0, |x| x.requests)
        };
        assert_eq!(cell(None, "DE"), 3);
        assert_eq!(cell(None, ""), 1);
        let second_pin = table.pins().nth(1).unwrap().0;
        assert_eq!(cell(Some(second_pin), "DE"), 1);
        assert_eq!(cell(None, OTHER_COUNTRY), 70 - 63);
        assert!(r.cells.len() <= TOP_COUNTRIES + 3);
        // Taken: the next report starts from zero.
        assert!(reg.take(&table, 1000).cells.is_empty());
    }
}
