//! [`TableSpec`] -> [`RoutingTable`]: every rule is checked once, here, and
//! all broken rules are reported together so an operator fixes a table in
//! one pass.
//!
//! The zone rules are what make routing safe: after compile, no failover
//! list, continent or country mapping, default region or canary path can
//! move a client across a compliance boundary. Host pins are the one input
//! chosen by the client; they are checked per request against the client's
//! allowed set and refused with 421, and here only for existence.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::error::{ConfigError, FieldError};
use crate::geo_codes::{Continent, Country, COUNTRY_SLOTS};
use crate::model::*;
use crate::wire::{HealthSpec, TableSpec};

/// Largest weight a backend may carry; keeps cumulative sums far from overflow.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// Largest number of backends in one table.
pub const MAX_BACKENDS: usize = 1_000_000;

/// Validates `spec` and builds the immutable table the hot path reads.
pub fn compile(spec: &TableSpec) -> Result<RoutingTable, ConfigError> {
    let mut cx = Compiler::default();
    let table = cx.build(spec);
    if cx.errors.is_empty() {
        table.ok_or_else(|| ConfigError::Invalid(vec![FieldError::new(".", "table is empty")]))
    } else {
        Err(ConfigError::Invalid(cx.errors))
    }
}

#[derive(Default)]
struct Compiler {
    errors: Vec<FieldError>,
}

impl Compiler {
    fn err(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError::new(path, reason));
    }

    fn build(&mut self, spec: &TableSpec) -> Option<RoutingTable> {
        if spec.regions.is_empty() {
            self.err("regions", "at least one region is required");
            return None;
        }
        if spec.regions.len() > MAX_REGIONS {
            self.err(
                "regions",
                format!(
                    "{} regions; at most {MAX_REGIONS} are supported",
                    spec.regions.len()
                ),
            );
            return None;
        }

        // Zones first: regions refer to them.
        let mut zones: Vec<Zone> = Vec::with_capacity(spec.zones.len());
        let mut zone_ids: HashMap<&str, ZoneId> = HashMap::new();
        for (i, name) in spec.zones.keys().enumerate() {
            self.check_name(&format!("zones.{name}"), name);
            let id = ZoneId(i as u8);
            zone_ids.insert(name.as_str(), id);
        }
        if spec.zones.len() > usize::from(u8::MAX) {
            self.err("zones", "at most 255 zones are supported");
            return None;
        }
        let mut country_zone: Box<[Option<ZoneId>; COUNTRY_SLOTS]> =
            Box::new([None; COUNTRY_SLOTS]);
        for (name, z) in &spec.zones {
            let id = zone_ids[name.as_str()];
            let mut countries = Vec::new();
            for (i, code) in z.countries.iter().enumerate() {
                let path = format!("zones.{name}.countries[{i}]");
                let Some(c) = self.country(&path, code) else {
                    continue;
                };
                match country_zone[c.index()] {
                    Some(other) if other == id => self.err(path, format!("{c} is listed twice")),
                    Some(other) => {
                        let other_name = spec
                            .zones
                            .keys()
                            .nth(usize::from(other.0))
                            .cloned()
                            .unwrap_or_default();
                        self.err(path, format!("{c} is already confined to zone {other_name}; a country belongs to at most one zone"));
                    }
                    None => {
                        country_zone[c.index()] = Some(id);
                        countries.push(c);
                    }
                }
            }
            zones.push(Zone {
                id,
                name: name.clone(),
                isolated: z.isolated,
                countries,
                regions: RegionSet::EMPTY,
            });
        }

        // Region ids in name order (BTreeMap), so ids are deterministic.
        let region_ids: HashMap<&str, RegionId> = spec
            .regions
            .keys()
            .enumerate()
            .map(|(i, n)| (n.as_str(), RegionId(i as u8)))
            .collect();
        let mut region_zone: Vec<Option<ZoneId>> = Vec::with_capacity(spec.regions.len());
        for (name, r) in &spec.regions {
            self.check_name(&format!("regions.{name}"), name);
            let zone = match &r.zone {
                None => None,
                Some(z) => match zone_ids.get(z.as_str()) {
                    Some(&id) => Some(id),
                    None => {
                        self.err(
                            format!("regions.{name}.zone"),
                            format!(
                                "unknown zone `{z}`; declared zones: {}",
                                list(spec.zones.keys())
                            ),
                        );
                        None
                    }
                },
            };
            if let Some(z) = zone {
                zones[usize::from(z.0)]
                    .regions
                    .insert(region_ids[name.as_str()]);
            }
            region_zone.push(zone);
        }
        let isolated_of = |r: RegionId| -> Option<&Zone> {
            region_zone[r.index()]
                .map(|z| &zones[usize::from(z.0)])
                .filter(|z| z.isolated)
        };
        let zone_name = |z: Option<ZoneId>| -> String {
            z.map_or_else(
                || "(none)".to_string(),
                |z| zones[usize::from(z.0)].name.clone(),
            )
        };

        for z in &zones {
            if !z.countries.is_empty() && z.regions.is_empty() {
                self.err(format!("zones.{}", z.name), "zone confines countries but no region belongs to it; its clients could never be served");
            }
        }

        let mut unconfined = RegionSet::EMPTY;
        for (i, _) in spec.regions.iter().enumerate() {
            let id = RegionId(i as u8);
            if isolated_of(id).is_none() {
                unconfined.insert(id);
            }
        }

        // Default region.
        let default_region = match region_ids.get(spec.default_region.as_str()) {
            Some(&r) => {
                if let Some(z) = isolated_of(r) {
                    self.err("default_region", format!("region {} is in isolated zone {}; clients of unknown location would enter it", spec.default_region, z.name));
                }
                Some(r)
            }
            None => {
                self.err(
                    "default_region",
                    format!(
                        "unknown region `{}`; regions: {}",
                        spec.default_region,
                        list(spec.regions.keys())
                    ),
                );
                None
            }
        };

        // Continents.
        let mut continent_home: [Option<RegionId>; 7] = [None; 7];
        for (code, region) in &spec.geo.continents {
            let path = format!("geo.continents.{code}");
            let Some(c) = Continent::parse(code) else {
                self.err(
                    path,
                    format!("`{code}` is not a continent code (AF AN AS EU NA OC SA)"),
                );
                continue;
            };
            let Some(r) = self.region_ref(&path, region, &region_ids) else {
                continue;
            };
            if let Some(z) = isolated_of(r) {
                self.err(path, format!("region {region} is in isolated zone {}; a continent-wide mapping would send clients from outside the zone into it (map the zone's countries under geo.countries)", z.name));
            }
            continent_home[c.index()] = Some(r);
        }

        // Country overrides.
        let mut country_home: Box<[Option<RegionId>; COUNTRY_SLOTS]> =
            Box::new([None; COUNTRY_SLOTS]);
        for (code, region) in &spec.geo.countries {
            let path = format!("geo.countries.{code}");
            let Some(c) = self.country(&path, code) else {
                continue;
            };
            let Some(r) = self.region_ref(&path, region, &region_ids) else {
                continue;
            };
            let confined = country_zone[c.index()];
            match confined {
                Some(z) if region_zone[r.index()] != Some(z) => self.err(
                    path,
                    format!(
                        "{c} is confined to zone {} but region {region} is in zone {}",
                        zone_name(Some(z)),
                        zone_name(region_zone[r.index()])
                    ),
                ),
                None => {
                    if let Some(z) = isolated_of(r) {
                        self.err(path, format!("region {region} is in isolated zone {}, which {c} does not belong to", z.name));
                    }
                }
                _ => {}
            }
            country_home[c.index()] = Some(r);
        }

        // Every confined country must resolve into its zone, whichever rule
        // resolves it. (Runtime continents come from the database; we check
        // the built-in one and pin the result below so they cannot differ.)
        if let Some(default_region) = default_region {
            for z in &zones {
                for (i, &c) in z.countries.iter().enumerate() {
                    if country_home[c.index()].is_some() {
                        continue;
                    }
                    let via_continent = c
                        .builtin_continent()
                        .and_then(|k| continent_home[k.index()].map(|r| (k, r)));
                    let (home, via) = match via_continent {
                        Some((k, r)) => (r, format!("geo.continents.{k}")),
                        None => (default_region, "default_region".to_string()),
                    };
                    if region_zone[home.index()] != Some(z.id) {
                        let home_name = spec
                            .regions
                            .keys()
                            .nth(home.index())
                            .cloned()
                            .unwrap_or_default();
                        self.err(
                            format!("zones.{}.countries[{i}]", z.name),
                            format!("{c} would be routed to {home_name} (via {via}), outside zone {}; add geo.countries.{c} with a region of the zone", z.name),
                        );
                    } else {
                        // Pin it so a database continent can never move it.
                        country_home[c.index()] = Some(home);
                    }
                }
            }
        }

        // Host pins.
        let mut pins = Vec::new();
        for (host, region) in &spec.hosts {
            let path = format!("hosts.\"{host}\"");
            if !valid_host(host) {
                self.err(
                    &path,
                    "not a valid host name (letters, digits, '-', '.', no port)",
                );
                continue;
            }
            let Some(r) = self.region_ref(&path, region, &region_ids) else {
                continue;
            };
            pins.push((host.to_ascii_lowercase(), r));
        }

        let trusted_proxies = self.trusted(&spec.client_ip.trusted_proxies);
        let default_health = self.health("health", &spec.health, &HealthSettings::default());
        let release = self.release(spec);
        let retry = self.retry(spec);
        let outlier = self.outlier(spec);
        let rate_limits = crate::ratelimit::compile_policies(spec, &mut self.errors);

        // Regions and backends.
        let mut regions = Vec::with_capacity(spec.regions.len());
        let mut backends: Vec<Backend> = Vec::new();
        for (i, (name, r)) in spec.regions.iter().enumerate() {
            let id = RegionId(i as u8);
            let zone = region_zone[i];
            let mut failover = Vec::new();
            let mut seen = HashSet::new();
            for (j, target) in r.failover.iter().enumerate() {
                let path = format!("regions.{name}.failover[{j}]");
                let Some(t) = self.region_ref(&path, target, &region_ids) else {
                    continue;
                };
                if t == id {
                    self.err(path, "a region cannot fail over to itself");
                    continue;
                }
                if !seen.insert(t) {
                    self.err(path, format!("{target} is listed twice"));
                    continue;
                }
                let tz = region_zone[t.index()];
                if let Some(z) = zone {
                    if tz != Some(z) {
                        self.err(path, format!("{target} is outside zone {} (it is in zone {}); failover would carry the zone's clients across its boundary", zone_name(Some(z)), zone_name(tz)));
                        continue;
                    }
                } else if let Some(iz) = isolated_of(t) {
                    self.err(path, format!("{target} is in isolated zone {}; clients of {name} are not allowed into it", iz.name));
                    continue;
                }
                failover.push(t);
            }
            if r.canary_bps > BUCKETS {
                self.err(
                    format!("regions.{name}.canary_bps"),
                    format!("{} is over {BUCKETS} (100%)", r.canary_bps),
                );
            }
            let (rollout_state, rollout_step) = match &r.rollout {
                None => (RolloutState::Idle, 0),
                Some(ro) => self.rollout(&format!("regions.{name}.rollout"), ro),
            };
            let health = match &r.health {
                Some(h) => self.health(&format!("regions.{name}.health"), h, &default_health),
                None => default_health.clone(),
            };
            if r.backends.is_empty() {
                self.err(
                    format!("regions.{name}.backends"),
                    "at least one backend is required",
                );
            }
            let mut ids = Vec::with_capacity(r.backends.len());
            let mut tracks = [WeightedSet::default(), WeightedSet::default()];
            let mut addrs = HashSet::new();
            for (j, b) in r.backends.iter().enumerate() {
                let path = format!("regions.{name}.backends[{j}]");
                let Some(addr) = self.backend_addr(&format!("{path}.address"), &b.address) else {
                    continue;
                };
                if !addrs.insert(b.address.clone()) {
                    self.err(
                        format!("{path}.address"),
                        format!("{} is listed twice in this region", b.address),
                    );
                    continue;
                }
                if b.weight > MAX_WEIGHT {
                    self.err(
                        format!("{path}.weight"),
                        format!("{} is over the maximum {MAX_WEIGHT}", b.weight),
                    );
                    continue;
                }
                let track = match b.track.as_deref() {
                    None | Some("stable") => Track::Stable,
                    Some("canary") => Track::Canary,
                    Some(other) => {
                        self.err(
                            format!("{path}.track"),
                            format!("`{other}` is not a track; use stable or canary"),
                        );
                        continue;
                    }
                };
                if backends.len() >= MAX_BACKENDS {
                    self.err(
                        &path,
                        format!("more than {MAX_BACKENDS} backends in the table"),
                    );
                    break;
                }
                let bid = BackendId(backends.len() as u32);
                if b.weight > 0 {
                    let set = &mut tracks[track.index()];
                    set.total += u64::from(b.weight);
                    set.cumulative.push((set.total, bid));
                }
                ids.push(bid);
                backends.push(Backend {
                    id: bid,
                    region: id,
                    addr,
                    key: b.address.clone(),
                    weight: b.weight,
                    track,
                });
            }
            regions.push(Region {
                id,
                name: name.clone(),
                zone,
                failover,
                canary_bps: r.canary_bps.min(BUCKETS),
                drained: r.drain,
                rollout_state,
                rollout_step,
                health,
                backends: ids,
                tracks,
            });
        }

        Some(RoutingTable {
            description: spec.description.clone(),
            regions,
            zones,
            backends,
            default_region: default_region?,
            headers: HeaderSettings {
                track: spec.headers.track,
                version: spec.headers.version,
            },
            access_log: spec.logging.access_log,
            release,
            retry,
            outlier,
            rate_limits,
            trusted_proxies,
            continent_home,
            country_home,
            country_zone,
            unconfined,
            pins,
        })
    }

    fn check_name(&mut self, path: &str, name: &str) {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            self.err(
                path,
                "names use lower-case letters, digits, '-' and '_' (1 to 63 characters)",
            );
        }
    }

    fn country(&mut self, path: &str, code: &str) -> Option<Country> {
        if code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Country::parse(code)
        } else {
            self.err(
                path,
                format!("`{code}` is not an upper-case ISO-3166 alpha-2 country code"),
            );
            None
        }
    }

    fn region_ref(
        &mut self,
        path: &str,
        name: &str,
        ids: &HashMap<&str, RegionId>,
    ) -> Option<RegionId> {
        match ids.get(name) {
            Some(&r) => Some(r),
            None => {
                let mut known: Vec<&&str> = ids.keys().collect();
                known.sort();
                self.err(
                    path,
                    format!("unknown region `{name}`; regions: {}", list(known)),
                );
                None
            }
        }
    }

    fn trusted(&mut self, cidrs: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, c) in cidrs.iter().enumerate() {
            match parse_cidr(c) {
                Some(n) => out.push(n),
                None => self.err(
                    format!("client_ip.trusted_proxies[{i}]"),
                    format!("`{c}` is not an IP address or CIDR"),
                ),
            }
        }
        out
    }

    fn backend_addr(&mut self, path: &str, s: &str) -> Option<BackendAddr> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            if sa.port() == 0 {
                self.err(path, "port 0 is not a backend port");
                return None;
            }
            return Some(BackendAddr::Socket(sa));
        }
        let parsed = s
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)));
        match parsed {
            Some((host, port))
                if port > 0 && valid_host(host) && host.parse::<IpAddr>().is_err() =>
            {
                Some(BackendAddr::Host {
                    host: host.to_ascii_lowercase(),
                    port,
                })
            }
            _ => {
                self.err(
                    path,
                    format!("`{s}` is not `ip:port`, `[ipv6]:port` or `hostname:port`"),
                );
                None
            }
        }
    }

    fn health(&mut self, path: &str, h: &HealthSpec, base: &HealthSettings) -> HealthSettings {
        let mut out = base.clone();
        if let Some(kind) = &h.kind {
            match kind.as_str() {
                "http" => out.kind = ProbeKind::Http,
                "tcp" => out.kind = ProbeKind::Tcp,
                other => self.err(
                    format!("{path}.kind"),
                    format!("`{other}` is not a probe kind; use http or tcp"),
                ),
            }
        }
        if let Some(p) = &h.path {
            if p.starts_with('/')
                && !p
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                out.path = p.clone();
            } else {
                self.err(
                    format!("{path}.path"),
                    "must start with '/' and contain no spaces",
                );
            }
        }
        if let Some(ms) = h.interval_ms {
            if (100..=3_600_000).contains(&ms) {
                out.interval = Duration::from_millis(ms);
            } else {
                self.err(
                    format!("{path}.interval_ms"),
                    format!("{ms} is outside 100..=3600000"),
                );
            }
        }
        if let Some(ms) = h.timeout_ms {
            if (1..=60_000).contains(&ms) {
                out.timeout = Duration::from_millis(ms);
            } else {
                self.err(
                    format!("{path}.timeout_ms"),
                    format!("{ms} is outside 1..=60000"),
                );
            }
        }
        if out.timeout > out.interval {
            self.err(
                format!("{path}.timeout_ms"),
                format!(
                    "timeout {:?} is longer than the interval {:?}",
                    out.timeout, out.interval
                ),
            );
        }
        if let Some(s) = h.expect_status {
            if (100..=599).contains(&s) {
                out.expect_status = s;
            } else {
                self.err(
                    format!("{path}.expect_status"),
                    format!("{s} is not an HTTP status"),
                );
            }
        }
        if let Some(b) = &h.expect_body {
            out.expect_body = Some(b.clone());
        }
        for (field, value, slot) in [
            (
                "unhealthy_after",
                h.unhealthy_after,
                &mut out.unhealthy_after,
            ),
            ("healthy_after", h.healthy_after, &mut out.healthy_after),
        ] {
            if let Some(n) = value {
                if (1..=100).contains(&n) {
                    *slot = n;
                } else {
                    self.errors.push(FieldError::new(
                        format!("{path}.{field}"),
                        format!("{n} is outside 1..=100"),
                    ));
                }
            }
        }
        out
    }

    fn release(&mut self, spec: &TableSpec) -> ReleaseSettings {
        let mut sticky = Vec::new();
        for (i, s) in spec.release.sticky_keys.iter().enumerate() {
            let path = format!("release.sticky_keys[{i}]");
            let parsed = match s.split_once(':') {
                Some(("header", name)) if valid_token(name) => {
                    Some(StickySource::Header(name.to_ascii_lowercase()))
                }
                Some(("cookie", name)) if valid_token(name) => {
                    Some(StickySource::Cookie(name.to_string()))
                }
                _ => None,
            };
            match parsed {
                Some(p) => sticky.push(p),
                None => self.err(path, format!("`{s}` is not `header:<name>` or `cookie:<name>` (the client IP is always the last resort)")),
            }
        }
        ReleaseSettings {
            salt: spec
                .release
                .salt
                .clone()
                .unwrap_or_else(|| "edgesteer".into()),
            sticky,
        }
    }

    fn retry(&mut self, spec: &TableSpec) -> RetrySettings {
        let mut out = RetrySettings::default();
        let r = &spec.retry;
        if let Some(n) = r.max_attempts {
            if (1..=10).contains(&n) {
                out.max_attempts = n;
            } else {
                self.err("retry.max_attempts", format!("{n} is outside 1..=10"));
            }
        }
        for (field, value, slot) in [
            (
                "connect_timeout_ms",
                r.connect_timeout_ms,
                &mut out.connect_timeout,
            ),
            (
                "per_try_timeout_ms",
                r.per_try_timeout_ms,
                &mut out.per_try_timeout,
            ),
            (
                "total_timeout_ms",
                r.total_timeout_ms,
                &mut out.total_timeout,
            ),
        ] {
            if let Some(ms) = value {
                if (1..=600_000).contains(&ms) {
                    *slot = Duration::from_millis(ms);
                } else {
                    self.errors.push(FieldError::new(
                        format!("retry.{field}"),
                        format!("{ms} is outside 1..=600000"),
                    ));
                }
            }
        }
        out
    }
}

impl Compiler {
    fn rollout(&mut self, path: &str, ro: &crate::wire::RolloutSpec) -> (RolloutState, usize) {
        let state = RolloutState::parse(&ro.state).unwrap_or_else(|| {
            self.err(
                format!("{path}.state"),
                format!(
                    "`{}` is not idle, running, paused, completed, rolled_back or aborted",
                    ro.state
                ),
            );
            RolloutState::Idle
        });
        if ro.steps.is_empty() {
            self.err(format!("{path}.steps"), "a rollout needs at least one step");
        }
        let mut prev = 0;
        for (i, st) in ro.steps.iter().enumerate() {
            if st.canary_bps > BUCKETS || st.canary_bps < prev {
                self.err(
                    format!("{path}.steps[{i}].canary_bps"),
                    format!(
                        "{} must be in {prev}..=10000 (steps only raise the share)",
                        st.canary_bps
                    ),
                );
            }
            prev = st.canary_bps;
        }
        if ro.step >= ro.steps.len().max(1) {
            self.err(
                format!("{path}.step"),
                format!("{} is past the last step", ro.step),
            );
        }
        if let Some(e) = ro.max_error_rate {
            if !(0.0..=1.0).contains(&e) {
                self.err(
                    format!("{path}.max_error_rate"),
                    format!("{e} is outside 0..=1"),
                );
            }
        }
        if let Some(r) = ro.max_p99_ratio {
            if !(r >= 1.0 && r.is_finite()) {
                self.err(
                    format!("{path}.max_p99_ratio"),
                    format!("{r} must be at least 1"),
                );
            }
        }
        (state, ro.step)
    }

    fn outlier(&mut self, spec: &TableSpec) -> OutlierSettings {
        let mut out = OutlierSettings::default();
        let o = &spec.outlier;
        for (field, value, slot) in [
            (
                "consecutive_failures",
                o.consecutive_failures,
                &mut out.consecutive_failures,
            ),
            (
                "consecutive_5xx",
                o.consecutive_5xx,
                &mut out.consecutive_5xx,
            ),
        ] {
            if let Some(n) = value {
                if n <= 1000 {
                    *slot = n;
                } else {
                    self.errors.push(FieldError::new(
                        format!("outlier.{field}"),
                        format!("{n} is outside 0..=1000 (0 disables)"),
                    ));
                }
            }
        }
        for (field, value, slot) in [
            (
                "base_ejection_ms",
                o.base_ejection_ms,
                &mut out.base_ejection,
            ),
            ("max_ejection_ms", o.max_ejection_ms, &mut out.max_ejection),
        ] {
            if let Some(ms) = value {
                if (1..=86_400_000).contains(&ms) {
                    *slot = Duration::from_millis(ms);
                } else {
                    self.errors.push(FieldError::new(
                        format!("outlier.{field}"),
                        format!("{ms} is outside 1..=86400000"),
                    ));
                }
            }
        }
        if out.max_ejection < out.base_ejection {
            self.err("outlier.max_ejection_ms", "shorter than base_ejection_ms");
        }
        if let Some(p) = o.max_ejection_percent {
            if p <= 100 {
                out.max_ejection_percent = p;
            } else {
                self.err("outlier.max_ejection_percent", format!("{p} is over 100"));
            }
        }
        out
    }
}

fn list<I: IntoIterator<Item = T>, T: std::fmt::Display>(items: I) -> String {
    let v: Vec<String> = items.into_iter().map(|x| x.to_string()).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// An IP address or CIDR.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
