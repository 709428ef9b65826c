//! A real Redis Cluster for the fleet-limit tests: six `redis-server`s in
//! cluster mode on free loopback ports (three masters, three replicas, or
//! the three masters only; `cluster-node-timeout 1000`, no persistence),
//! plain or TLS only (clients, cluster bus and replication), each started
//! from its own config file in a scratch directory (so a killed node
//! restarts with the same file and node id), joined with `redis-cli
//! --cluster create`. Killed on drop. `scripts/setup.sh` installs
//! `redis-server`. The load the tests send is in `cluster_load.rs`.
//!
//! [`ClusterProxy`] is a proxy on such a cluster started with environment
//! variables of its own (the cluster's credentials go only there), its log
//! in a file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::binary::binary;
use crate::ports::free_port;
use crate::redis_tls::ServerTls;
use crate::requests::answers;
use crate::workdir::Workdir;

pub use crate::cluster_load::{besides, count, drive, when, Stream, Trace};

/// Where a proxy reads the cluster's credentials.
pub const USERNAME_ENV: &str = "EDGESTEER_REDIS_USERNAME";
pub const PASSWORD_ENV: &str = "EDGESTEER_REDIS_PASSWORD";

/// How to build the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// `requirepass`/`masterauth` on every node.
    pub password: Option<String>,
    /// `cluster-require-full-coverage` (Redis's default is yes: the whole
    /// cluster refuses keys while any slot is unserved).
    pub full_coverage: bool,
    /// TLS only: clients, cluster bus (`tls-cluster yes`) and replication.
    pub tls: Option<ServerTls>,
    /// Three masters and no replicas (quicker to start).
    pub masters_only: bool,
}

/// One node process.
pub struct RedisNode {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// The series `edgesteer_ratelimit_redis_node_up` of the node on `port`.
pub fn node_up(port: u16, role: &str) -> String {
    format!("edgesteer_ratelimit_redis_node_up{{node=\"127.0.0.1:{port}\",role=\"{role}\"}}")
}

/// A line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeLine {
    pub id: String,
    pub port: u16,
    pub master: bool,
    /// `fail` or `fail?`.
    pub failed: bool,
    pub master_id: Option<String>,
    pub slots: Vec<(u16, u16)>,
    pub connected: bool,
}

/// Three masters and three replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisNode>,
    opts: ClusterOptions,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every node
    /// says `cluster_state:ok` and every replica has synced.
    pub async fn start(opts: ClusterOptions) -> anyhow::Result<RedisCluster> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::new();
        for i in 0..if opts.masters_only { 3 } else { 6 } {
            let (port, bus) = (free_port(), free_port());
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir)?;
            let mut conf = match &opts.tls {
                Some(t) => {
                    let lines: Vec<String> =
                        t.conf.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
                    format!(
                        "port 0\ntls-port {port}\ntls-cluster yes\n{}",
                        lines.concat()
                    )
                }
                None => format!("port {port}\n"),
            };
            conf.push_str(&format!(
                "bind 127.0.0.1\nprotected-mode no\ncluster-enabled yes\n\
                 cluster-config-file nodes.conf\ncluster-node-timeout 1000\ncluster-port {bus}\n\
                 cluster-replica-validity-factor 0\ncluster-require-full-coverage {}\n\
                 appendonly no\nsave \"\"\ndir {}\n",
                if opts.full_coverage { "yes" } else { "no" },
                node_dir.display()
            ));
            if let Some(p) = &opts.password {
                conf.push_str(&format!("requirepass {p}\nmasterauth {p}\n"));
            }
            std::fs::write(node_dir.join("redis.conf"), conf)?;
            nodes.push(RedisNode {
                port,
                dir: node_dir,
                child: None,
            });
        }
        let mut c = RedisCluster {
            nodes,
            opts,
            _dir: dir,
        };
        for i in 0..c.nodes.len() {
            let port = c.nodes[i].port;
            c.restart(port).await?;
        }
        let mut create = vec!["--cluster".to_string(), "create".into()];
        create.extend(c.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        let replicas = if c.opts.masters_only { "0" } else { "1" };
        create.extend(["--cluster-replicas", replicas, "--cluster-yes"].map(String::from));
        let out = c.cli(c.nodes[0].port, &create).await?;
        if !out.contains("All 16384 slots covered") {
            bail!("redis-cli --cluster create failed:\n{out}");
        }
        c.wait_ok(Duration::from_secs(20)).await?;
        Ok(c)
    }

    /// `redis+cluster://` (`rediss+cluster://` with TLS) with the three
    /// first nodes as seeds.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .take(3)
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let scheme = if self.opts.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}+cluster://{}", seeds.join(","))
    }

    /// `redis-cli -p PORT ARGS...` (with the password), its output.
    pub async fn cli<S: AsRef<std::ffi::OsStr>>(
        &self,
        port: u16,
        args: &[S],
    ) -> anyhow::Result<String> {
        let mut cmd = tokio::process::Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(p) = &self.opts.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        if let Some(t) = &self.opts.tls {
            cmd.args(&t.cli);
        }
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            cmd.args(args).stdin(Stdio::null()).output(),
        )
        .await
        .context("redis-cli did not finish in 30 s")?
        .context("running redis-cli (scripts/setup.sh installs it)")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `CLUSTER NODES` as node `port` sees it.
    pub async fn cluster_nodes(&self, port: u16) -> anyhow::Result<Vec<NodeLine>> {
        let text = self.cli(port, &["CLUSTER", "NODES"]).await?;
        Ok(text.lines().filter_map(parse_node).collect())
    }

    /// The masters holding slots, as the first running node sees them.
    pub async fn masters(&self) -> anyhow::Result<Vec<NodeLine>> {
        let port = self.running().next().context("no node runs")?;
        Ok(self
            .cluster_nodes(port)
            .await?
            .into_iter()
            .filter(|n| n.master && !n.slots.is_empty())
            .collect())
    }

    /// Ports of the nodes whose process runs.
    pub fn running(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    /// SIGKILL (`kill -9`) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Starts the node on `port` from its config file (again) and waits
    /// for PONG.
    pub async fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .context("no such node")?;
        let child = Command::new("redis-server")
            .arg(n.dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting redis-server (scripts/setup.sh installs it)")?;
        n.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(port, &["PING"]).await?.trim() != "PONG" {
            if Instant::now() > deadline {
                bail!("redis-server on port {port} did not answer PING");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits until every running node says `cluster_state:ok` and knows
    /// every node, and every running replica's link to its master is up.
    pub async fn wait_ok(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut ok = true;
            for port in self.running() {
                let info = self.cli(port, &["CLUSTER", "INFO"]).await?;
                let repl = self.cli(port, &["INFO", "replication"]).await?;
                ok &= info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", self.nodes.len()))
                    && (!repl.contains("role:slave") || repl.contains("master_link_status:up"));
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster was not ok within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let ports: Vec<u16> = self.running().collect();
        ports.into_iter().for_each(|p| self.kill(p));
    }
}

/// `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slots>...`
fn parse_node(line: &str) -> Option<NodeLine> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let flags: Vec<&str> = f.get(2)?.split(',').collect();
    let port = f
        .get(1)?
        .split('@')
        .next()?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()?;
    Some(NodeLine {
        id: f.first()?.to_string(),
        port,
        master: flags.contains(&"master"),
        failed: flags.contains(&"fail") || flags.contains(&"fail?"),
        master_id: f.get(3).filter(|m| **m != "-").map(|m| m.to_string()),
        slots: f
            .iter()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|a| (a, a)),
            })
            .collect(),
        connected: f.get(7) == Some(&"connected"),
    })
}

/// A proxy syncing with `--redis URL --redis-sync-ms 50`, started with
/// `env` added to its environment (and no inherited `EDGESTEER_REDIS*`),
/// its log (warnings and up) in a file. Killed on drop.
pub struct ClusterProxy {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
    client: reqwest::Client,
    _runtime: tempfile::TempDir,
}

impl ClusterProxy {
    pub async fn start(
        wd: &Workdir,
        spec: &edgesteer_config::TableSpec,
        url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<ClusterProxy> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let runtime = tempfile::tempdir()?;
        let log = runtime.path().join("proxy.log");
        let mut cmd = Command::new(binary());
        cmd.arg("proxy")
            .arg("--config")
            .arg(wd.write_table("table.toml", spec)?)
            .arg("--geo-db")
            .arg(wd.geo_db()?)
            .args(["--listen", &addr.to_string(), "--admin", &admin.to_string()])
            .args(["--threads", "1", "--grace-period", "0"])
            .args([
                "--trust",
                "127.0.0.0/8",
                "--redis",
                url,
                "--redis-sync-ms",
                "50",
            ])
            .arg("--runtime-dir")
            .arg(runtime.path().join("rt"))
            .env_remove("EDGESTEER_REDIS")
            .env_remove("EDGESTEER_REDIS_CA")
            .env_remove(USERNAME_ENV)
            .env_remove(PASSWORD_ENV)
            .env("RUST_LOG", "warn,pingora_proxy=error")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", binary().display()))?;
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("proxy exited during start-up: {status}");
            }
            if answers(&client, &format!("http://{admin}/healthz")).await
                && tokio::net::TcpStream::connect(addr).await.is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("proxy did not become ready on {addr} / {admin}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(ClusterProxy {
            child,
            addr,
            admin,
            log,
            client,
            _runtime: runtime,
        })
    }

    /// `n` proxies started one after the other.
    pub async fn fleet(
        n: usize,
        wd: &Workdir,
        spec: &edgesteer_config::TableSpec,
        url: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Vec<ClusterProxy>> {
        let mut fleet = Vec::new();
        for _ in 0..n {
            fleet.push(ClusterProxy::start(wd, spec, url, env).await?);
        }
        Ok(fleet)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `/v1/ratelimit`'s `store` (the shared store and the cluster).
    pub async fn store(&self) -> anyhow::Result<serde_json::Value> {
        let v: serde_json::Value = self
            .client
            .get(format!("http://{}/v1/ratelimit", self.admin))
            .send()
            .await?
            .json()
            .await?;
        Ok(v["store"].clone())
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("http://{}/metrics", self.admin);
        Ok(self.client.get(url).send().await?.text().await?)
    }

    /// What the proxy logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ClusterProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisCluster {
    /// Policy name -> port of the master holding a limit key of it.
    pub async fn holders(&self) -> anyhow::Result<BTreeMap<String, u16>> {
        let mut out = BTreeMap::new();
        for m in self.masters().await? {
            let pattern = ["--scan", "--pattern", "*edgesteer:rl:*"];
            for line in self.cli(m.port, &pattern).await?.lines() {
                if let Some(name) = line
                    .split("edgesteer:rl:")
                    .nth(1)
                    .and_then(|r| r.split(':').next())
                {
                    out.insert(name.to_string(), m.port);
                }
            }
        }
        Ok(out)
    }
}
