//! The wire format of a table's `[dns]` section: the zone edgesteer is
//! authoritative for, the names it answers by geography, each region's
//! edge addresses, TTLs, SOA and NS, static records and response rate
//! limiting. Strict in shape (`deny_unknown_fields`); meaning is checked
//! by `compile()` (`config/src/dns/compile.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[dns]`: authoritative GeoDNS from the same table as HTTP.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The zone apex edgesteer is authoritative for, e.g. `covergen.ai`
    /// (or a delegated sub-zone such as `edge.covergen.ai`).
    pub zone: String,
    /// Names answered by client location, e.g. `["api.covergen.ai"]`.
    /// Host pins (`[hosts]`) under the zone are answered pinned, as HTTP
    /// pins them.
    pub names: Vec<String>,
    /// The zone's name servers (NS records); the first is the SOA's
    /// primary unless `soa.mname` says otherwise. A name server inside the
    /// zone needs an A or AAAA record in `records` (glue).
    pub ns: Vec<String>,
    #[serde(default, skip_serializing_if = "SoaSpec::is_default")]
    pub soa: SoaSpec,
    #[serde(default, skip_serializing_if = "DnsTtlSpec::is_default")]
    pub ttl: DnsTtlSpec,
    /// Region name -> its edges (the addresses clients connect to).
    pub regions: BTreeMap<String, DnsRegionSpec>,
    /// Static records: TXT, CAA, CNAME, A, AAAA (e.g. `_acme-challenge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<DnsRecordSpec>,
    /// Response rate limiting (UDP), per client /24 or /56 x name x
    /// answer class.
    #[serde(default, skip_serializing_if = "RrlSpec::is_default")]
    pub rrl: RrlSpec,
}

/// SOA fields; every one optional. The serial is always the table version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaSpec {
    /// Primary name server (default: the first of `ns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mname: Option<String>,
    /// Responsible mailbox as a name (default `hostmaster.<zone>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<u32>,
}

impl SoaSpec {
    fn is_default(&self) -> bool {
        *self == SoaSpec::default()
    }
}

/// Answer TTLs in seconds; every one optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsTtlSpec {
    /// The home (or pinned) region answers, fully healthy (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal: Option<u32>,
    /// A failover answer, or a region not fully healthy (default 15), so
    /// clients come back soon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<u32>,
    /// No region the client may use can serve: the zone's own edges, whose
    /// HTTP answer is the 503 naming the zone (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<u32>,
    /// NXDOMAIN and NODATA (the SOA minimum; default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative: Option<u32>,
    /// SOA, NS and static records without their own TTL (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u32>,
}

impl DnsTtlSpec {
    fn is_default(&self) -> bool {
        *self == DnsTtlSpec::default()
    }
}

/// One region's edges.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRegionSpec {
    /// IPv4 and IPv6 addresses of the region's edge proxies (a region may
    /// have no IPv6: its AAAA answer is NODATA).
    pub addresses: Vec<String>,
    /// `http://host:port/path` answered 2xx while the region's edges are
    /// up; probed by each proxy that serves DNS. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
}

/// A static record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRecordSpec {
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT` or `CAA`.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The record's data as in a zone file: an address, a name, a text,
    /// or `0 issue "letsencrypt.org"`.
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

/// Response rate limiting.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RrlSpec {
    /// Responses per second per (client /24 or /56, name, answer class);
    /// 0 turns rate limiting off (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_per_s: Option<u32>,
    /// Responses allowed at once on top of the rate (default 2x the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Every `slip`-th limited response is sent truncated (TC), so a real
    /// resolver retries over TCP; the others are dropped. 0: drop all
    /// (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slip: Option<u32>,
}

impl RrlSpec {
    fn is_default(&self) -> bool {
        *self == RrlSpec::default()
    }
}
