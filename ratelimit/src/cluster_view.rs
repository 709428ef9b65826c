//! What the cluster syncer (`cluster_sync.rs`) shows and says: the
//! cluster's status for `/v1/ratelimit`, advice appended to errors (what
//! to do about them), and log lines on changes only: a master lost or
//! back, slots unserved or moved, the whole cluster unreachable.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use redis::{ErrorKind, RedisError};

use crate::cluster::{Topology, PASSWORD_ENV, USERNAME_ENV};
use crate::slots::ranges_text;
use crate::store::{ClusterStatus, NodeStatus};

/// Per-master figures kept across rounds, by address.
#[derive(Default)]
pub(crate) struct NodeStats {
    /// Answered this round (`None`: not asked).
    pub(crate) up: Option<bool>,
    /// The slowest command to it this round.
    pub(crate) sync_ms: Option<f64>,
    pub(crate) errors: u64,
    pub(crate) last_error: Option<String>,
    /// Rounds since it failed (0: answering).
    pub(crate) down_rounds: u32,
}

/// What to do about an error, to append to its message.
pub(crate) fn advice(e: &RedisError) -> String {
    let text = e.to_string();
    if let Some(tls) = crate::tls::advice(&text) {
        return tls.to_string();
    }
    // A failed AUTH while connecting comes wrapped in an I/O error.
    if e.kind() == ErrorKind::AuthenticationFailed
        || text.contains("NOAUTH")
        || text.contains("WRONGPASS")
        || text.contains("authentication failed")
    {
        format!(" (check {USERNAME_ENV} and {PASSWORD_ENV})")
    } else if e.kind() == ErrorKind::ClusterDown || text.contains("CLUSTERDOWN") {
        " (the cluster refuses keys while slots are unserved or a master is marked failed: assign the slots with redis-cli --cluster fix HOST:PORT, or wait for the replica's promotion; cluster-require-full-coverage no confines this to the lost slots)".into()
    } else if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() {
        " (node unreachable: if it stays down, the cluster promotes its replica after cluster-node-timeout)".into()
    } else {
        String::new()
    }
}

/// The cluster's status as `t` shows it (from node `from`), with this
/// proxy's figures per master.
pub(crate) fn status(
    t: &Topology,
    from: &str,
    stats: &HashMap<String, NodeStats>,
) -> ClusterStatus {
    let nodes = t
        .nodes
        .iter()
        .map(|n| {
            let s = stats.get(&n.addr);
            NodeStatus {
                addr: n.addr.clone(),
                id: n.id.clone(),
                role: if n.master { "master" } else { "replica" },
                replica_of: n
                    .master_id
                    .as_deref()
                    .and_then(|id| t.addr_of(id))
                    .map(str::to_string),
                slots: ranges_text(&n.slots),
                failed: n.failed,
                up: s.and_then(|s| s.up),
                sync_ms: s.and_then(|s| s.sync_ms),
                errors: s.map_or(0, |s| s.errors),
                last_error: s.and_then(|s| s.last_error.clone()),
            }
        })
        .collect();
    ClusterStatus {
        nodes,
        masters: t.masters().filter(|(_, n)| !n.failed).count(),
        slots_covered: t.slots_covered,
        slots_unserved: ranges_text(&t.unserved),
        // Filled in from the buckets' clocks when read.
        buckets_down: 0,
        seen_from: from.to_string(),
    }
}

/// What was last logged, so that only changes are.
#[derive(Default)]
pub(crate) struct Transitions {
    whole_down: bool,
    unserved: Vec<(u16, u16)>,
    /// Slot range -> the live master serving it.
    owners: HashMap<String, String>,
    /// Masters logged as not answering.
    down: HashSet<String>,
}

impl Transitions {
    /// The whole cluster unreachable (no connection), or back.
    pub(crate) fn whole_cluster(&mut self, down: bool, error: Option<&String>, stale: Duration) {
        if down && !self.whole_down {
            tracing::warn!(error = error.map_or("", String::as_str), stale_after = ?stale, "no node of the rate-limit Redis Cluster answers; if that lasts, fail_open policies use local limits and fail_closed ones answer 503");
        } else if !down && self.whole_down {
            tracing::info!("the rate-limit Redis Cluster answers again; global limits resumed");
        }
        self.whole_down = down;
    }

    /// The error for slots that no live master serves.
    pub(crate) fn unserved_message(&self, unserved: &[(u16, u16)]) -> String {
        format!(
            "slots {} are served by no live master: keys in them use their policy's fail mode (fail_open: local limits, fail_closed: 503); assign them (redis-cli --cluster fix HOST:PORT) or bring back the failed master or its replica",
            ranges_text(unserved).join(",")
        )
    }

    /// Logs slots becoming unserved (or served again) and slots moving to
    /// another master (a promotion or a resharding).
    pub(crate) fn slots(&mut self, t: &Topology) {
        if t.unserved != self.unserved {
            if t.unserved.is_empty() {
                tracing::info!("every slot of the rate-limit Redis Cluster is served again");
            } else {
                tracing::error!("{}", self.unserved_message(&t.unserved));
            }
            self.unserved = t.unserved.clone();
        }
        let mut owners = HashMap::new();
        for (_, n) in t.masters().filter(|(_, n)| !n.failed) {
            for range in ranges_text(&n.slots) {
                owners.insert(range, n.addr.clone());
            }
        }
        for (range, addr) in &owners {
            if let Some(old) = self.owners.get(range).filter(|old| *old != addr) {
                tracing::info!(slots = %range, from = %old, to = %addr, "rate-limit store slots moved to another master (a replica was promoted, or a resharding); synced there from this round");
            }
        }
        self.owners = owners;
    }

    /// Logs masters that stop answering this proxy, and come back.
    /// `answered[i]`: (some command succeeded, some failed) for node `i`.
    pub(crate) fn nodes(
        &mut self,
        t: &Topology,
        answered: &[(bool, bool)],
        stats: &HashMap<String, NodeStats>,
    ) {
        for (n, &(ok, failed)) in t.nodes.iter().zip(answered) {
            if failed && !ok && self.down.insert(n.addr.clone()) {
                let error = stats
                    .get(&n.addr)
                    .and_then(|s| s.last_error.as_deref())
                    .unwrap_or("");
                tracing::warn!(node = %n.addr, slots = %ranges_text(&n.slots).join(","), error, "a rate-limit store master does not answer; keys in its slots use their policy's fail mode once it has been silent for the stale time (fail_open: local limits, fail_closed: 503), until it or its promoted replica answers");
            } else if ok && self.down.remove(&n.addr) {
                tracing::info!(node = %n.addr, "the rate-limit store master answers again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::advice;
    use redis::{ErrorKind, RedisError};

    #[test]
    fn errors_come_with_what_to_do() {
        // A failed AUTH while connecting arrives wrapped in an I/O error.
        let auth = RedisError::from(std::io::Error::other(
            "Password authentication failed- AuthenticationFailed",
        ));
        assert!(advice(&auth).contains("EDGESTEER_REDIS_PASSWORD"));
        let wrongpass = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "WRONGPASS invalid username-password pair",
        ));
        assert!(advice(&wrongpass).contains("EDGESTEER_REDIS_USERNAME"));
        let down = RedisError::from((
            ErrorKind::ClusterDown,
            "CLUSTERDOWN",
            "The cluster is down".to_string(),
        ));
        assert!(advice(&down).contains("redis-cli --cluster fix"));
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(advice(&refused).contains("promotes its replica"));
        let other = RedisError::from((ErrorKind::TypeError, "odd"));
        assert_eq!(advice(&other), "");
    }
}
