//! The compiled routing table: dense, index-addressed and immutable. Every
//! invariant the hot path relies on was checked by `compile()`, so
//! nothing here re-validates.
//!
//! The settings blocks of a table and its regions (health checks, release,
//! retries, outlier ejection, headers, upstream TLS) are in `settings.rs`
//! and re-exported here.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::geo_codes::{Continent, Country, COUNTRY_SLOTS};
use crate::ratelimit::RateLimitPolicy;

pub use crate::settings::{
    ClientIdentity, HeaderSettings, HealthSettings, OutlierSettings, ProbeKind, ReleaseSettings,
    RetrySettings, StickySource, UpstreamAlpn, UpstreamSettings,
};

/// Maximum number of regions in one table (the width of [`RegionSet`]).
pub const MAX_REGIONS: usize = 128;
/// Canary shares are expressed in basis points of this many buckets.
pub const BUCKETS: u32 = 10_000;

pub use crate::ids::{BackendId, RegionId, RegionSet, ZoneId};

/// Release track of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Track {
    Stable,
    Canary,
}

impl Track {
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Canary => "canary",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Track::Stable => 0,
            Track::Canary => 1,
        }
    }

    pub fn other(self) -> Track {
        match self {
            Track::Stable => Track::Canary,
            Track::Canary => Track::Stable,
        }
    }
}

/// Where a backend lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendAddr {
    /// A literal socket address.
    Socket(SocketAddr),
    /// A DNS name, resolved by the health service.
    Host { host: String, port: u16 },
}

impl std::fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendAddr::Socket(s) => write!(f, "{s}"),
            BackendAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Backend {
    pub id: BackendId,
    pub region: RegionId,
    pub addr: BackendAddr,
    /// Stable identity across tables: the address as written. Health, RTT
    /// and ejection state are keyed by it, so they survive reloads.
    pub key: String,
    pub weight: u32,
    pub track: Track,
}

/// Weighted backends of one track of one region, as a cumulative-weight
/// table so a weighted pick is one binary search.
#[derive(Clone, Debug, Default)]
pub struct WeightedSet {
    /// `(cumulative weight, backend)`; weight-0 backends are left out.
    pub(crate) cumulative: Vec<(u64, BackendId)>,
    pub(crate) total: u64,
}

impl WeightedSet {
    pub fn total_weight(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.cumulative.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// Every backend of the set, in table order.
    pub fn members(&self) -> impl Iterator<Item = BackendId> + '_ {
        self.cumulative.iter().map(|&(_, b)| b)
    }

    /// Backends in weight order starting at the weighted pick for `hash`,
    /// then cycling, so callers can skip unhealthy ones deterministically.
    pub fn walk(&self, hash: u64) -> impl Iterator<Item = BackendId> + '_ {
        let start = if self.total == 0 {
            0
        } else {
            let point = hash % self.total;
            self.cumulative.partition_point(|&(c, _)| c <= point)
        };
        let n = self.cumulative.len();
        (0..n).filter_map(move |i| self.cumulative.get((start + i) % n).map(|&(_, b)| b))
    }
}

#[derive(Clone, Debug)]
pub struct Region {
    pub id: RegionId,
    pub name: String,
    pub zone: Option<ZoneId>,
    /// Failover order, already checked never to leave this region's zone.
    pub failover: Vec<RegionId>,
    pub canary_bps: u32,
    /// Drained by an operator: never chosen, clients fail over.
    pub drained: bool,
    /// Requests/s the region is sized for (`capacity`), if set: only the
    /// impact preview's capacity check reads it.
    pub capacity: Option<f64>,
    /// Rollout state (`idle` when there is none) and step, for metrics.
    pub rollout_state: RolloutState,
    pub rollout_step: usize,
    pub health: HealthSettings,
    /// How this region's origins are reached.
    pub upstream: std::sync::Arc<UpstreamSettings>,
    /// All backends of the region, in table order.
    pub backends: Vec<BackendId>,
    /// Weighted sets indexed by [`Track::index`].
    pub tracks: [WeightedSet; 2],
}

/// Where a region's canary rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RolloutState {
    Idle,
    Running,
    Paused,
    Completed,
    RolledBack,
    Aborted,
}

impl RolloutState {
    /// The state of a rollout as written in a table. A stored table always
    /// compiles, so its state always parses; anything else reads as idle.
    pub fn of(ro: &crate::wire::RolloutSpec) -> RolloutState {
        RolloutState::parse(&ro.state).unwrap_or(RolloutState::Idle)
    }

    pub const ALL: [RolloutState; 6] = [
        RolloutState::Idle,
        RolloutState::Running,
        RolloutState::Paused,
        RolloutState::Completed,
        RolloutState::RolledBack,
        RolloutState::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Idle => "idle",
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<RolloutState> {
        RolloutState::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Debug)]
pub struct Zone {
    pub id: ZoneId,
    pub name: String,
    pub isolated: bool,
    pub countries: Vec<Country>,
    pub regions: RegionSet,
}

/// How the proxy classifies a client: its confining zone (if any), the
/// regions it may be served by, and its geographic home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientClass {
    pub zone: Option<ZoneId>,
    pub allowed: RegionSet,
    pub home: RegionId,
    pub home_via: HomeVia,
}

/// Which rule of the table chose the home region; used by explain and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HomeVia {
    Country,
    Continent,
    Default,
}

/// A validated routing table. Construct it with `compile()`.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    pub description: Option<String>,
    pub regions: Vec<Region>,
    pub zones: Vec<Zone>,
    pub backends: Vec<Backend>,
    pub default_region: RegionId,
    pub headers: HeaderSettings,
    /// Write one JSON access-log line per request.
    pub access_log: bool,
    pub release: ReleaseSettings,
    pub retry: RetrySettings,
    pub outlier: OutlierSettings,
    pub limits: crate::limits::DownstreamLimits,
    /// Rate-limit policies in table order.
    pub rate_limits: Vec<RateLimitPolicy>,
    pub trusted_proxies: Vec<IpNet>,
    pub(crate) continent_home: [Option<RegionId>; 7],
    pub(crate) country_home: Box<[Option<RegionId>; COUNTRY_SLOTS]>,
    pub(crate) country_zone: Box<[Option<ZoneId>; COUNTRY_SLOTS]>,
    /// Regions any unconfined client may use: all but isolated zones'.
    pub(crate) unconfined: RegionSet,
    /// `(host, region)` with hosts lower-case; few enough to scan.
    pub(crate) pins: crate::host::HostPins<RegionId>,
    /// The `[dns]` section, when the table has one.
    pub dns: Option<std::sync::Arc<crate::dns::DnsZone>>,
    /// When `compile` began reading the files the table names (CA and
    /// client certificates): a file changed since may not be in it.
    pub files_read_at: std::time::SystemTime,
}

impl RoutingTable {
    pub fn region(&self, id: RegionId) -> &Region {
        // RegionIds are only minted by compile for this table's regions.
        &self.regions[id.index()]
    }

    pub fn backend(&self, id: BackendId) -> &Backend {
        &self.backends[id.index()]
    }

    pub fn zone(&self, id: ZoneId) -> &Zone {
        &self.zones[usize::from(id.0)]
    }

    pub fn region_by_name(&self, name: &str) -> Option<RegionId> {
        self.regions.iter().find(|r| r.name == name).map(|r| r.id)
    }

    pub fn zone_by_name(&self, name: &str) -> Option<ZoneId> {
        self.zones.iter().find(|z| z.name == name).map(|z| z.id)
    }

    /// The pinned region for a `Host` header value (port and case ignored).
    pub fn pin_for_host(&self, host: &str) -> Option<RegionId> {
        self.pins.get(host)
    }

    /// The pinned region for a `Host`, with the pin's place in
    /// [`RoutingTable::pins`] order.
    pub fn pin_slot_for_host(&self, host: &str) -> Option<(usize, RegionId)> {
        self.pins.get_slot(host)
    }

    /// All host pins, for explain and docs.
    pub fn pins(&self) -> impl Iterator<Item = (&str, RegionId)> {
        self.pins.iter()
    }

    /// The zone that confines clients from `country`, if any.
    pub fn confining_zone(&self, country: Country) -> Option<ZoneId> {
        self.country_zone[country.index()]
    }

    /// Classifies a client by its geo result. `continent` is the database's
    /// answer when it has one; the built-in table fills in otherwise.
    pub fn classify(&self, country: Option<Country>, continent: Option<Continent>) -> ClientClass {
        let Some(country) = country else {
            return ClientClass {
                zone: None,
                allowed: self.unconfined,
                home: self.default_region,
                home_via: HomeVia::Default,
            };
        };
        let zone = self.country_zone[country.index()];
        let allowed = match zone {
            Some(z) => self.zone(z).regions,
            None => self.unconfined,
        };
        let (home, home_via) = if let Some(r) = self.country_home[country.index()] {
            (r, HomeVia::Country)
        } else if let Some(r) = continent
            .or_else(|| country.builtin_continent())
            .and_then(|c| self.continent_home[c.index()])
        {
            (r, HomeVia::Continent)
        } else {
            (self.default_region, HomeVia::Default)
        };
        ClientClass {
            zone,
            allowed,
            home,
            home_via,
        }
    }

    /// Whether a client IP's forwarding headers may be believed.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_set_iterates_in_order() {
        let mut s = RegionSet::EMPTY;
        for i in [3u8, 0, 127, 64] {
            s.insert(RegionId(i));
        }
        let v: Vec<u8> = s.iter().map(|r| r.0).collect();
        assert_eq!(v, vec![0, 3, 64, 127]);
        assert_eq!(s.len(), 4);
        assert!(s.contains(RegionId(127)));
        assert!(!s.contains(RegionId(1)));
    }
}
