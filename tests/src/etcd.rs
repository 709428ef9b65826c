//! A real etcd member or cluster for the replicated config service tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::ports::free_port;
use crate::wait::wait_until;

/// Debian's `etcd` (scripts/setup.sh installs etcd-server): one member or
/// a cluster on free loopback ports, each member killed on drop (by PID).
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<EtcdMember>,
}

struct EtcdMember {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl EtcdCluster {
    /// `n` members, started and answering. A free port can be taken by
    /// another test between our pick and etcd's bind; then a member dies
    /// (or someone else answers), and the cluster is started again on new
    /// ports.
    pub async fn start(n: usize) -> anyhow::Result<EtcdCluster> {
        let mut last = None;
        for _ in 0..3 {
            match Self::try_start(n).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    async fn try_start(n: usize) -> anyhow::Result<EtcdCluster> {
        let dir = tempfile::tempdir()?;
        let mut members: Vec<EtcdMember> = (0..n)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        for m in &mut members {
            let data = dir.path().join(&m.name);
            let child = Command::new("etcd")
                .args(["--name", &m.name, "--data-dir"])
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{}", m.client),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{}", m.client),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{}", m.peer),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{}", m.peer),
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "edgesteer-test",
                    "--logger",
                    "zap",
                    "--log-level",
                    "error",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting etcd (scripts/setup.sh installs etcd-server)")?;
            m.child = Some(child);
        }
        let mut cluster = EtcdCluster { dir, members };
        let client = reqwest::Client::new();
        for m in &cluster.members {
            let url = format!("http://127.0.0.1:{}/health", m.client);
            // etcd's own answer, not whatever else took the port.
            let up = wait_until(Duration::from_secs(20), || async {
                match client.get(&url).send().await {
                    Ok(r) => r
                        .text()
                        .await
                        .is_ok_and(|t| t.contains("\"health\":\"true\"")),
                    Err(_) => false,
                }
            })
            .await;
            if up.is_none() {
                bail!("etcd member {} did not become healthy", m.name);
            }
        }
        for m in &mut cluster.members {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "etcd member {} exited: {status} (its port was taken?)",
                        m.name
                    );
                }
            }
        }
        Ok(cluster)
    }

    /// `etcd://host:port,.../prefix` for `edgesteer control --store`.
    pub fn store_url(&self, prefix: &str) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        format!("etcd://{}/{prefix}", hosts.join(","))
    }

    /// Stops member `i` (SIGKILL, by PID).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}
