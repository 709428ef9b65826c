//! The DNS metrics: queries by type, rcode and answered region; rate
//! limiting; malformed packets; TCP connections; answer latency. Handles
//! for every (type, rcode, region) are made once per table version, so
//! counting a query is one atomic add, no label lookup.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::query::{
    TYPE_A, TYPE_AAAA, TYPE_ANY, TYPE_CAA, TYPE_CNAME, TYPE_NS, TYPE_SOA, TYPE_TXT,
};
use crate::respond::Rcode;

/// Query types with their own label; the rest count as `other`.
const QTYPES: [(u16, &str); 8] = [
    (TYPE_A, "A"),
    (TYPE_AAAA, "AAAA"),
    (TYPE_ANY, "ANY"),
    (TYPE_SOA, "SOA"),
    (TYPE_NS, "NS"),
    (TYPE_TXT, "TXT"),
    (TYPE_CAA, "CAA"),
    (TYPE_CNAME, "CNAME"),
];

fn qtype_index(t: u16) -> usize {
    QTYPES
        .iter()
        .position(|&(q, _)| q == t)
        .unwrap_or(QTYPES.len())
}

/// Families registered once per process.
#[derive(Clone)]
pub struct DnsMetrics {
    queries: IntCounterVec,
    pub rrl_dropped: IntCounter,
    pub rrl_slipped: IntCounter,
    pub malformed: IntCounter,
    pub tcp_open: IntGauge,
    pub tcp_refused: IntCounter,
    pub latency: Histogram,
}

impl DnsMetrics {
    pub fn new(registry: &Registry) -> Result<DnsMetrics, prometheus::Error> {
        let queries = IntCounterVec::new(
            Opts::new(
                "edgesteer_dns_queries_total",
                "DNS queries answered, by query type, response code and the region whose edges answered (none for other names)",
            ),
            &["qtype", "rcode", "region"],
        )?;
        let rrl = IntCounterVec::new(
            Opts::new(
                "edgesteer_dns_rrl_total",
                "UDP answers held back by response rate limiting: dropped, or sent truncated (slip)",
            ),
            &["action"],
        )?;
        let malformed = IntCounter::new(
            "edgesteer_dns_malformed_total",
            "DNS packets that were not a query we can read (dropped, or answered FORMERR)",
        )?;
        let tcp_open = IntGauge::new(
            "edgesteer_dns_tcp_connections",
            "Open DNS-over-TCP connections",
        )?;
        let tcp_refused = IntCounter::new(
            "edgesteer_dns_tcp_refused_total",
            "DNS-over-TCP connections closed at once because the connection cap was reached",
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "edgesteer_dns_answer_seconds",
                "Time from reading a DNS query to handing its answer to the socket",
            )
            .buckets(vec![
                0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005,
            ]),
        )?;
        registry.register(Box::new(queries.clone()))?;
        registry.register(Box::new(rrl.clone()))?;
        registry.register(Box::new(malformed.clone()))?;
        registry.register(Box::new(tcp_open.clone()))?;
        registry.register(Box::new(tcp_refused.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(DnsMetrics {
            rrl_dropped: rrl.with_label_values(&["drop"]),
            rrl_slipped: rrl.with_label_values(&["slip"]),
            queries,
            malformed,
            tcp_open,
            tcp_refused,
            latency,
        })
    }

    /// Handles for one table's regions.
    pub fn bind(&self, regions: &[&str]) -> QueryCounters {
        let mut names: Vec<&str> = regions.to_vec();
        names.push("none");
        let mut handles = Vec::with_capacity((QTYPES.len() + 1) * Rcode::ALL.len() * names.len());
        for qt in QTYPES.iter().map(|&(_, n)| n).chain(["other"]) {
            for rc in Rcode::ALL {
                for r in &names {
                    handles.push(self.queries.with_label_values(&[qt, rc.as_str(), r]));
                }
            }
        }
        QueryCounters {
            handles,
            regions: names.len(),
        }
    }
}

/// `edgesteer_dns_queries_total` handles for one table version.
#[derive(Debug)]
pub struct QueryCounters {
    handles: Vec<IntCounter>,
    regions: usize,
}

impl QueryCounters {
    pub fn count(&self, qtype: u16, rcode: Rcode, region: Option<usize>) {
        let r = region
            .filter(|&r| r + 1 < self.regions)
            .unwrap_or(self.regions - 1);
        let i = (qtype_index(qtype) * Rcode::ALL.len() + rcode.index()) * self.regions + r;
        if let Some(c) = self.handles.get(i) {
            c.inc();
        }
    }
}
