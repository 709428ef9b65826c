//! The cluster syncer's link to a Redis Cluster: connecting (with the
//! credentials from the environment) through the seeds and every node seen
//! since (over TLS for `rediss+cluster://`), reading `CLUSTER NODES`, one bucket's `EVAL` and the probe of an
//! idle master. Every command gives up after `SYNC_TIMEOUT` (a bounded
//! retry inside the cluster client included), so a dead or hung node costs
//! a round one timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ErrorKind, RedisError, RedisResult};

use crate::cluster::{ClusterUrl, Topology, PASSWORD_ENV, USERNAME_ENV};
use crate::cluster_view::{NodeStats, Transitions};
use crate::reconcile::{SCRIPT, SYNC_TIMEOUT};
use crate::slots::{Buckets, BUCKETS};
use crate::tls::RedisTls;

/// While all is well the topology is read again this often.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);
/// Retries of one command inside the cluster client (a redirect, a
/// reconnect), after 10-100 ms; the command's timeout bounds them.
const RETRIES: u32 = 1;

/// The syncer's connection and what it knows of the cluster.
pub(crate) struct Link {
    seeds: Vec<(String, u16)>,
    /// `rediss+cluster://`: TLS to every node, with these files if given.
    tls: bool,
    certs: Option<RedisTls>,
    username: Option<String>,
    password: Option<String>,
    pub(crate) conn: Option<ClusterConnection>,
    /// The last `CLUSTER NODES`, and the node that answered it.
    pub(crate) topology: Option<(Topology, String)>,
    topology_at: Option<Instant>,
    /// Per master address.
    pub(crate) stats: HashMap<String, NodeStats>,
    pub(crate) failing_rounds: u32,
    pub(crate) log: Transitions,
}

impl Link {
    pub(crate) fn new(url: ClusterUrl, certs: Option<RedisTls>) -> Link {
        Link {
            seeds: url.seeds,
            tls: url.tls,
            certs,
            username: std::env::var(USERNAME_ENV).ok().filter(|s| !s.is_empty()),
            password: std::env::var(PASSWORD_ENV).ok().filter(|s| !s.is_empty()),
            conn: None,
            topology: None,
            topology_at: None,
            stats: HashMap::new(),
            failing_rounds: 0,
            log: Transitions::default(),
        }
    }

    /// Whether the topology is due to be read again.
    pub(crate) fn topology_due(&self) -> bool {
        self.topology.is_none()
            || self.failing_rounds > 0
            || self
                .topology_at
                .is_none_or(|t| t.elapsed() >= TOPOLOGY_EVERY)
    }

    /// Seeds and every node last seen, for connecting.
    pub(crate) fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let known = self.topology.iter().flat_map(|(t, _)| {
            let mut nodes: Vec<_> = t.nodes.iter().filter(|n| !n.failed).collect();
            // Masters that answered last first: a dead one costs a timeout.
            let down = |a: &str| self.stats.get(a).is_some_and(|s| s.down_rounds > 0);
            nodes.sort_by_key(|n| (down(&n.addr), !n.master));
            nodes.into_iter().map(|n| n.addr.clone())
        });
        let seeds = self.seeds.iter().map(|(h, p)| {
            if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        });
        for a in known.chain(seeds) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    pub(crate) async fn connect(&self) -> RedisResult<ClusterConnection> {
        let nodes: Vec<String> = self
            .candidates()
            .iter()
            .map(|a| format!("{}://{a}", if self.tls { "rediss" } else { "redis" }))
            .collect();
        let mut b = ClusterClientBuilder::new(nodes)
            .connection_timeout(SYNC_TIMEOUT)
            .response_timeout(SYNC_TIMEOUT)
            .retries(RETRIES)
            .min_retry_wait(10)
            .max_retry_wait(100);
        if let Some(u) = &self.username {
            b = b.username(u.clone());
        }
        if let Some(p) = &self.password {
            b = b.password(p.clone());
        }
        if let Some(t) = self.certs.as_ref().filter(|_| self.tls) {
            b = b.certs(t.certificates());
        }
        let client = b.build()?;
        tokio::time::timeout(SYNC_TIMEOUT * 4, client.get_async_connection())
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    /// Reads `CLUSTER NODES` from the first of a few known nodes that
    /// answers. True when a bucket's master changed (a promotion).
    pub(crate) async fn read_topology(&mut self, conn: &ClusterConnection) -> RedisResult<bool> {
        let mut last = timed_out();
        for addr in self.candidates().into_iter().take(3) {
            let Some((host, port)) = addr
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
            else {
                continue;
            };
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            let mut c = conn.clone();
            let asked = redis::cmd("CLUSTER").arg("NODES").clone();
            match tokio::time::timeout(SYNC_TIMEOUT, c.route_command(&asked, route)).await {
                Ok(Ok(v)) => {
                    let text: String = redis::from_redis_value(&v)?;
                    let fresh = Topology::parse(&text, &addr);
                    let owners = |t: &Topology| -> Vec<Option<String>> {
                        (0..BUCKETS)
                            .map(|b| {
                                t.owner_of(b)
                                    .and_then(|n| t.nodes.get(n))
                                    .map(|n| n.addr.clone())
                            })
                            .collect()
                    };
                    let moved = self.topology.as_ref().is_some_and(|(old, _)| {
                        owners(old)
                            .iter()
                            .zip(owners(&fresh))
                            .any(|(a, b)| a.is_some() && b.is_some() && *a != b)
                    });
                    self.topology = Some((fresh, addr));
                    self.topology_at = Some(Instant::now());
                    return Ok(moved);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = timed_out(),
            }
        }
        Err(last)
    }
}

/// One bucket's `EVAL` (`EVALSHA`; the script body once per node).
pub(crate) async fn eval(
    conn: &mut ClusterConnection,
    hash: &str,
    keys: &[String],
    interval_us: u64,
    args: &[u64],
) -> RedisResult<Vec<i64>> {
    let call = |verb: &str, body: &str| {
        let mut c = redis::cmd(verb);
        c.arg(body)
            .arg(keys.len())
            .arg(keys)
            .arg(interval_us)
            .arg(args);
        c
    };
    let run = async {
        match call("EVALSHA", hash).query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                call("EVAL", SCRIPT).query_async(conn).await
            }
            r => r,
        }
    };
    tokio::time::timeout(SYNC_TIMEOUT * 2, run)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// Whether the master of `bucket` serves keys (a PING to `addr` when it
/// holds no bucket).
pub(crate) async fn probe(
    conn: &mut ClusterConnection,
    bucket: Option<usize>,
    addr: &str,
) -> RedisResult<()> {
    let run = async {
        match bucket {
            Some(b) => {
                let key = format!("{}:edgesteer:probe", Buckets::get().tag(b));
                redis::cmd("EXISTS")
                    .arg(key)
                    .query_async::<i64>(conn)
                    .await
                    .map(drop)
            }
            None => {
                let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "0"));
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_string(),
                    port: port.parse().unwrap_or(0),
                });
                conn.route_command(&redis::cmd("PING"), route)
                    .await
                    .map(drop)
            }
        }
    };
    tokio::time::timeout(SYNC_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

pub(crate) fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {} ms", SYNC_TIMEOUT.as_millis()),
    ))
}
