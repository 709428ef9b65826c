//! A Redis Cluster as the rate-limit store: the `--redis` URL form
//! (`redis+cluster://h1:p1,h2:p2,...`, or `rediss+cluster://` for TLS to
//! every node, see `tls.rs`), its credentials (from the environment only),
//! and the cluster's shape read from `CLUSTER NODES` (which node serves
//! which slots, and so which key bucket).

use crate::slots::{gaps, Buckets, BUCKETS, SLOTS};

/// The environment variables that hold the cluster's credentials; they
/// never appear on the command line or in logs.
pub const USERNAME_ENV: &str = "EDGESTEER_REDIS_USERNAME";
pub const PASSWORD_ENV: &str = "EDGESTEER_REDIS_PASSWORD";

/// A parsed `redis+cluster://` URL: the seed nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    pub seeds: Vec<(String, u16)>,
    /// `rediss+cluster://`: TLS to every node.
    pub tls: bool,
}

const FORM: &str = "expected redis+cluster://HOST:PORT,HOST:PORT,... or, for TLS, rediss+cluster://HOST:PORT,... (user and password in EDGESTEER_REDIS_USERNAME / EDGESTEER_REDIS_PASSWORD)";

impl ClusterUrl {
    /// `None` for a URL that is not a cluster URL; an error (that says
    /// what to write instead) for a cluster URL that is wrong.
    pub fn parse(url: &str) -> Result<Option<ClusterUrl>, String> {
        let lower = url.to_ascii_lowercase();
        let Some((tls, rest)) = ["redis+cluster://", "rediss+cluster://"]
            .iter()
            .find(|scheme| lower.starts_with(*scheme))
            .and_then(|scheme| Some((scheme.starts_with("rediss"), url.get(scheme.len()..)?)))
        else {
            return Ok(None);
        };
        if rest.contains('@') {
            return Err(format!("credentials do not belong in the URL (it shows in process lists); set {USERNAME_ENV} and {PASSWORD_ENV} instead"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "a Redis Cluster has only database 0 and takes no options; {FORM}"
            ));
        }
        let mut seeds = Vec::new();
        for node in rest.split(',').map(str::trim) {
            let (host, port) = node
                .rsplit_once(':')
                .ok_or_else(|| format!("`{node}` has no port; {FORM}"))?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let port: u16 = port
                .parse()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("`{node}`: bad port; {FORM}"))?;
            if host.is_empty() {
                return Err(format!("`{node}` has no host; {FORM}"));
            }
            seeds.push((host.to_string(), port));
        }
        Ok(Some(ClusterUrl { seeds, tls }))
    }
}

/// One node in `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// `host:port` (client port).
    pub addr: String,
    pub master: bool,
    /// Marked `fail` (agreed by a majority of masters; a mere suspicion,
    /// `fail?`, is not enough: the probes tell).
    pub failed: bool,
    /// A replica's master id.
    pub master_id: Option<String>,
    pub slots: Vec<(u16, u16)>,
}

/// The cluster's shape as one node sees it.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub nodes: Vec<Node>,
    /// For each bucket, the index in `nodes` of the master serving it.
    pub bucket_owner: Vec<Option<usize>>,
    /// Slot ranges no live master serves.
    pub unserved: Vec<(u16, u16)>,
    pub slots_covered: u32,
}

impl Topology {
    /// Parses `CLUSTER NODES` as answered by the node at `asked` (whose own
    /// line may lack its address).
    pub fn parse(text: &str, asked: &str) -> Topology {
        let mut nodes: Vec<Node> = text.lines().filter_map(|l| node(l, asked)).collect();
        nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
        let mut owner: Vec<Option<usize>> = vec![None; usize::from(SLOTS)];
        for (i, n) in nodes.iter().enumerate() {
            if !n.master || n.failed {
                continue;
            }
            for &(a, b) in &n.slots {
                for s in a..=b.min(SLOTS - 1) {
                    if let Some(o) = owner.get_mut(usize::from(s)) {
                        *o = Some(i);
                    }
                }
            }
        }
        let covered: Vec<bool> = owner.iter().map(Option::is_some).collect();
        let buckets = Buckets::get();
        Topology {
            bucket_owner: (0..BUCKETS)
                .map(|b| owner.get(usize::from(buckets.slot(b))).copied().flatten())
                .collect(),
            unserved: gaps(&covered),
            slots_covered: covered.iter().filter(|&&c| c).count() as u32,
            nodes,
        }
    }

    /// Masters holding slots (failed or not).
    pub fn masters(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.master && !n.slots.is_empty())
    }

    pub fn owner_of(&self, bucket: usize) -> Option<usize> {
        self.bucket_owner.get(bucket).copied().flatten()
    }

    /// The address of node `id`.
    pub fn addr_of(&self, id: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr.as_str())
    }
}

/// One line: `<id> <ip:port@cport[,host]> <flags> <master> <ping> <pong>
/// <epoch> <link> <slot>...`; slots being moved (`[...]`) are skipped.
fn node(line: &str, asked: &str) -> Option<Node> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (id, addr, flags, master) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?);
    let flags: Vec<&str> = flags.split(',').collect();
    if flags.contains(&"noaddr") || flags.contains(&"handshake") {
        return None;
    }
    let client = addr.split(['@', ',']).next()?;
    let (host, port) = client.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p > 0)?;
    let addr = if host.is_empty() {
        // The node we asked may not know its own address yet.
        let asked_host = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
        format!("{asked_host}:{port}")
    } else {
        format!("{host}:{port}")
    };
    let slots = f
        .iter()
        .skip(8)
        .filter(|s| !s.starts_with('['))
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|a| (a, a)),
        })
        .collect();
    Some(Node {
        id: id.to_string(),
        addr,
        master: flags.contains(&"master"),
        failed: flags.contains(&"fail"),
        master_id: (*master != "-").then(|| master.to_string()),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_parse_and_bad_ones_say_what_to_write() {
        assert_eq!(ClusterUrl::parse("redis://127.0.0.1:6379"), Ok(None));
        let u = ClusterUrl::parse("redis+cluster://10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002/")
            .unwrap()
            .unwrap();
        assert_eq!(
            u.seeds,
            vec![
                ("10.0.0.1".into(), 7000),
                ("10.0.0.2".into(), 7001),
                ("::1".into(), 7002)
            ]
        );
        let e = ClusterUrl::parse("redis+cluster://u:hunter2@h:7000").unwrap_err();
        assert!(
            e.contains("EDGESTEER_REDIS_PASSWORD") && !e.contains("hunter2"),
            "{e}"
        );
        assert!(!u.tls);
        // Issue 28: TLS to every node.
        let s = ClusterUrl::parse("rediss+cluster://10.0.0.1:7000,10.0.0.2:7001")
            .unwrap()
            .unwrap();
        assert!(s.tls);
        assert_eq!(s.seeds.len(), 2);
        let e = ClusterUrl::parse("rediss+cluster://u:hunter2@h:7000").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        for bad in [
            "rediss+cluster://h",
            "rediss+cluster://h:7000/#insecure",
            "redis+cluster://h",
            "redis+cluster://h:0",
            "redis+cluster://:7000",
            "redis+cluster://h:7000/1",
        ] {
            let e = ClusterUrl::parse(bad).unwrap_err();
            assert!(e.contains("redis+cluster://"), "{bad}: {e}");
        }
    }

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,h4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 disconnected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca :30001@31001 myself,master - 0 0 1 connected 0-99 100-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";

    #[test]
    fn cluster_nodes_give_owners_and_unserved_slots() {
        let t = Topology::parse(NODES, "127.0.0.1:30001");
        assert_eq!(t.nodes.len(), 6);
        let me = &t.nodes[0];
        assert_eq!(
            me.addr, "127.0.0.1:30001",
            "own address from the asked node"
        );
        assert_eq!(me.slots, vec![(0, 99), (100, 5460)]);
        assert!(me.master && !me.failed);
        let r = t
            .nodes
            .iter()
            .find(|n| n.addr == "127.0.0.1:30004")
            .unwrap();
        assert!(!r.master);
        assert_eq!(
            t.addr_of(r.master_id.as_deref().unwrap()),
            Some("127.0.0.1:30001")
        );
        // 30003 failed: its slots are unserved until its replica takes over.
        assert_eq!(t.unserved, vec![(10923, 16383)]);
        assert_eq!(t.slots_covered, 10923);
        assert_eq!(t.masters().count(), 3);
        let b = Buckets::get();
        for bucket in 0..BUCKETS {
            let want = match b.slot(bucket) {
                0..=5460 => Some("127.0.0.1:30001"),
                5461..=10922 => Some("127.0.0.1:30002"),
                _ => None,
            };
            let got = t.owner_of(bucket).map(|i| t.nodes[i].addr.as_str());
            assert_eq!(got, want, "bucket {bucket}");
        }
    }
}
