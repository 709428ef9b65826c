//! The compiled `[dns]` section ([`DnsZone`]) and the pure DNS answer
//! ([`answer()`](answer::answer)), the DNS sibling of `decide()`.
//!
//! - `compile`: `[dns]` -> [`DnsZone`]; every rule with its field path,
//!   notably that each answer address belongs to exactly one region, so no
//!   address of one zone can be handed to a client of another.
//! - `answer`: which region's edges a name is answered with, from the
//!   same classification, candidates, failover order, drains and
//!   availability as HTTP.
//! - `explain`: the DNS answer beside the HTTP decision, for explain.

pub mod answer;
pub(crate) mod compile;
pub mod explain;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ids::RegionId;

/// What `[dns]` compiles to. Names are lower-case, without a trailing dot.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsZone {
    /// The zone apex.
    pub apex: String,
    /// Names answered by client location.
    pub geo_names: Vec<String>,
    /// Host pins under the apex, answered as HTTP pins them.
    pub pinned: Vec<(String, RegionId)>,
    pub ns: Vec<String>,
    pub soa: Soa,
    pub ttl: DnsTtls,
    /// Edges by region index (every region has at least one address).
    pub regions: Vec<DnsRegion>,
    pub records: Vec<StaticRecord>,
    pub rrl: Rrl,
}

/// SOA fields other than the serial (the table version) and the minimum
/// (the negative TTL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Soa {
    pub mname: String,
    pub rname: String,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
}

/// Answer TTLs, seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsTtls {
    pub normal: u32,
    pub degraded: u32,
    pub fail_open: u32,
    pub negative: u32,
    pub records: u32,
}

impl Default for DnsTtls {
    fn default() -> Self {
        DnsTtls {
            normal: 60,
            degraded: 15,
            fail_open: 5,
            negative: 60,
            records: 3600,
        }
    }
}

/// One region's edges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsRegion {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    pub health_url: Option<String>,
}

/// A static record of the zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRecord {
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// The text, split into character-strings of at most 255 bytes when
    /// written.
    Txt(String),
    Caa {
        flags: u8,
        tag: String,
        value: String,
    },
}

impl RecordData {
    /// The record type's number.
    pub fn rtype(&self) -> u16 {
        match self {
            RecordData::A(_) => 1,
            RecordData::Cname(_) => 5,
            RecordData::Txt(_) => 16,
            RecordData::Aaaa(_) => 28,
            RecordData::Caa { .. } => 257,
        }
    }
}

/// Response rate limiting: `rate` responses per second per key, `burst`
/// at once; every `slip`-th refused response is sent truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rrl {
    pub rate: u32,
    pub burst: u32,
    pub slip: u32,
}

impl Default for Rrl {
    fn default() -> Self {
        Rrl {
            rate: 50,
            burst: 100,
            slip: 2,
        }
    }
}

/// What a name under the apex is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// Answered by client location.
    Geo,
    /// Answered as this region's pin.
    Pin(RegionId),
}

impl DnsZone {
    /// Whether `name` (lower-case, no trailing dot) is the apex or under it.
    pub fn contains(&self, name: &str) -> bool {
        name == self.apex
            || name
                .strip_suffix(self.apex.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }

    /// How a steered name is answered, if it is one.
    pub fn steered(&self, name: &str) -> Option<NameKind> {
        if self.geo_names.iter().any(|n| n == name) {
            return Some(NameKind::Geo);
        }
        self.pinned
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, r)| NameKind::Pin(r))
    }
}
