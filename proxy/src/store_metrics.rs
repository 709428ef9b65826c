//! Per-node series of the rate-limit store when it is a Redis Cluster:
//! `edgesteer_ratelimit_redis_node_up{node,role}`,
//! `edgesteer_ratelimit_redis_node_sync_seconds{node}` and
//! `edgesteer_ratelimit_redis_node_errors_total{node}`, copied at scrape
//! time from what the cluster syncer last saw (the same figures as
//! `/v1/ratelimit`'s `store.cluster.nodes`).
//!
//! Cardinality is bounded by the cluster: one series per node of its last
//! `CLUSTER NODES` (`node` is its `host:port`); the series of a node that
//! leaves the cluster, or of its old role after a promotion, are removed.
//! A single Redis has none of these (`edgesteer_ratelimit_store_up` tells).

use std::collections::BTreeMap;
use std::sync::Mutex;

use edgesteer_ratelimit::ClusterStatus;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

const NODE_UP: (&str, &str) = (
    "edgesteer_ratelimit_redis_node_up",
    "Rate-limit Redis Cluster nodes by address and role: a master serving slots is 1 when it answered this proxy's last sync round (or probe) and the cluster does not mark it failed; a replica (which this proxy does not contact) or a master without slots is 1 unless the cluster marks it failed.",
);
const NODE_SYNC: (&str, &str) = (
    "edgesteer_ratelimit_redis_node_sync_seconds",
    "The slowest command to a rate-limit Redis Cluster master in the last sync round; absent while it does not answer.",
);
const NODE_ERRORS: (&str, &str) = (
    "edgesteer_ratelimit_redis_node_errors_total",
    "Failed commands to a rate-limit Redis Cluster node since this proxy started.",
);

/// The per-node families, and which series are shown now.
pub struct StoreNodeMetrics {
    up: IntGaugeVec,
    sync_seconds: GaugeVec,
    errors: IntCounterVec,
    /// Node address -> role of the series shown.
    shown: Mutex<BTreeMap<String, &'static str>>,
}

impl StoreNodeMetrics {
    pub(crate) fn register(r: &Registry) -> Result<StoreNodeMetrics, prometheus::Error> {
        let m = StoreNodeMetrics {
            up: IntGaugeVec::new(Opts::new(NODE_UP.0, NODE_UP.1), &["node", "role"])?,
            sync_seconds: GaugeVec::new(Opts::new(NODE_SYNC.0, NODE_SYNC.1), &["node"])?,
            errors: IntCounterVec::new(Opts::new(NODE_ERRORS.0, NODE_ERRORS.1), &["node"])?,
            shown: Mutex::new(BTreeMap::new()),
        };
        r.register(Box::new(m.up.clone()))?;
        r.register(Box::new(m.sync_seconds.clone()))?;
        r.register(Box::new(m.errors.clone()))?;
        Ok(m)
    }

    /// Sets the series from the cluster's status (`None`: no cluster).
    pub(crate) fn observe(&self, cluster: Option<&ClusterStatus>) {
        let nodes = cluster.map_or(&[][..], |c| c.nodes.as_slice());
        let now: BTreeMap<String, &'static str> =
            nodes.iter().map(|n| (n.addr.clone(), n.role)).collect();
        let mut shown = self
            .shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (addr, role) in shown.iter() {
            if now.get(addr) != Some(role) {
                let _ = self.up.remove_label_values(&[addr.as_str(), role]);
            }
            if !now.contains_key(addr) {
                let _ = self.sync_seconds.remove_label_values(&[addr.as_str()]);
                let _ = self.errors.remove_label_values(&[addr.as_str()]);
            }
        }
        for n in nodes {
            let addr = n.addr.as_str();
            let contacted = n.role == "master" && !n.slots.is_empty();
            let up = !n.failed && (!contacted || n.up == Some(true));
            self.up
                .with_label_values(&[addr, n.role])
                .set(i64::from(up));
            match n.sync_ms.filter(|_| contacted) {
                Some(ms) => self
                    .sync_seconds
                    .with_label_values(&[addr])
                    .set(ms / 1_000.0),
                None => {
                    let _ = self.sync_seconds.remove_label_values(&[addr]);
                }
            }
            let c = self.errors.with_label_values(&[addr]);
            c.inc_by(n.errors.saturating_sub(c.get()));
        }
        *shown = now;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use edgesteer_ratelimit::NodeStatus;

    fn node(addr: &str, role: &'static str, up: Option<bool>, errors: u64) -> NodeStatus {
        NodeStatus {
            addr: addr.into(),
            role,
            slots: if role == "master" {
                vec!["0-5460".into()]
            } else {
                vec![]
            },
            up,
            sync_ms: up.filter(|u| *u).map(|_| 2.5),
            errors,
            ..NodeStatus::default()
        }
    }

    fn text(r: &Registry) -> String {
        let mut buf = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &r.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn series_follow_the_cluster_and_leave_with_its_nodes() {
        let r = Registry::new();
        let m = StoreNodeMetrics::register(&r).unwrap();
        let mut c = ClusterStatus {
            nodes: vec![
                node("127.0.0.1:7001", "master", Some(true), 0),
                node("127.0.0.1:7002", "master", Some(false), 3),
                node("127.0.0.1:7003", "replica", None, 0),
            ],
            ..ClusterStatus::default()
        };
        m.observe(Some(&c));
        let t = text(&r);
        for line in [
            "edgesteer_ratelimit_redis_node_up{node=\"127.0.0.1:7001\",role=\"master\"} 1",
            "edgesteer_ratelimit_redis_node_up{node=\"127.0.0.1:7002\",role=\"master\"} 0",
            "edgesteer_ratelimit_redis_node_up{node=\"127.0.0.1:7003\",role=\"replica\"} 1",
            "edgesteer_ratelimit_redis_node_sync_seconds{node=\"127.0.0.1:7001\"} 0.0025",
            "edgesteer_ratelimit_redis_node_errors_total{node=\"127.0.0.1:7002\"} 3",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing:\n{t}");
        }
        assert!(!t.contains("sync_seconds{node=\"127.0.0.1:7002\"}"), "{t}");
        // 7003 promoted, 7002 gone: old series removed, counters kept.
        c.nodes = vec![
            node("127.0.0.1:7001", "master", Some(true), 0),
            node("127.0.0.1:7003", "master", Some(true), 1),
        ];
        m.observe(Some(&c));
        let t = text(&r);
        assert!(!t.contains("7002"), "{t}");
        assert!(!t.contains("role=\"replica\""), "{t}");
        assert!(
            t.contains(
                "edgesteer_ratelimit_redis_node_up{node=\"127.0.0.1:7003\",role=\"master\"} 1"
            ),
            "{t}"
        );
        m.observe(None);
        assert!(!text(&r).contains("redis_node"), "{}", text(&r));
    }
}
