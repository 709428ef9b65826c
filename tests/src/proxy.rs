//! A running `edgesteer proxy` process: start-up, signals, upgrades and
//! its admin API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::binary::binary;
use crate::ports::free_port;
use crate::requests::answers;
use crate::wait::wait_child;

/// A running proxy process; killed on drop.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub tls: Option<SocketAddr>,
    /// One client for polling the admin API, so a tight poll reuses its
    /// connection instead of opening one per call.
    admin_client: reqwest::Client,
    /// Holds its `--runtime-dir` (`rt/`: upgrade socket, pid file).
    pub runtime: tempfile::TempDir,
    /// The arguments it was started with, for [`Proxy::upgrade`].
    args: Vec<std::ffi::OsString>,
    log: Option<PathBuf>,
}

/// How to start a proxy.
#[derive(Default)]
pub struct ProxyConfig {
    /// `--config`; may be empty when `extra_args` has `--control`.
    pub table: PathBuf,
    pub geo_db: Option<PathBuf>,
    /// Trust loopback for X-Forwarded-For (what the tests' clients use).
    pub trust_loopback: bool,
    /// `(cert, key)` pairs; enables a TLS listener.
    pub tls_certs: Vec<(PathBuf, PathBuf)>,
    pub extra_args: Vec<String>,
    /// Write the proxy's log (at debug level) to this file.
    pub log: Option<PathBuf>,
}

/// Starts `edgesteer` with `args`, logging to `log` (at debug level) or,
/// quietly, to the test's stderr.
fn spawn_edgesteer(args: &[std::ffi::OsString], log: Option<&Path>) -> anyhow::Result<Child> {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    // Quiet by default; `RUST_LOG=debug cargo test` shows the proxies' logs.
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn,pingora_proxy=error");
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    if let Some(path) = log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        cmd.env("RUST_LOG", "debug").stderr(file);
    }
    cmd.spawn()
        .with_context(|| format!("spawning {}", binary().display()))
}

impl Proxy {
    pub async fn start(cfg: ProxyConfig) -> anyhow::Result<Proxy> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let tls =
            (!cfg.tls_certs.is_empty()).then(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
        let runtime = tempfile::tempdir()?;
        let mut args: Vec<std::ffi::OsString> = vec!["proxy".into()];
        if !cfg.table.as_os_str().is_empty() {
            args.extend(["--config".into(), cfg.table.clone().into_os_string()]);
        }
        for a in ["--listen", &addr.to_string(), "--admin", &admin.to_string()] {
            args.push(a.into());
        }
        if !cfg.extra_args.iter().any(|a| a == "--threads") {
            args.extend(["--threads".into(), "1".into()]);
        }
        if !cfg.extra_args.iter().any(|a| a == "--grace-period") {
            args.extend(["--grace-period".into(), "0".into()]);
        }
        args.extend([
            "--runtime-dir".into(),
            runtime.path().join("rt").into_os_string(),
        ]);
        if let Some(db) = &cfg.geo_db {
            args.extend(["--geo-db".into(), db.clone().into_os_string()]);
        }
        if cfg.trust_loopback {
            for a in ["--trust", "127.0.0.0/8", "--trust", "::1"] {
                args.push(a.into());
            }
        }
        if let Some(t) = tls {
            args.extend(["--tls-listen".into(), t.to_string().into()]);
            for (c, k) in &cfg.tls_certs {
                args.push("--tls-cert".into());
                args.push(format!("{}:{}", c.display(), k.display()).into());
            }
        }
        args.extend(cfg.extra_args.iter().map(Into::into));
        let child = spawn_edgesteer(&args, cfg.log.as_deref())?;
        let mut proxy = Proxy {
            child,
            addr,
            admin,
            tls,
            admin_client: reqwest::Client::new(),
            runtime,
            args,
            log: cfg.log,
        };
        proxy.wait_ready().await?;
        Ok(proxy)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (a `kill -s` name) to the proxy.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `limit` for the proxy to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, limit).await
    }

    /// `edgesteer proxy --upgrade` with this proxy's arguments: the new
    /// process takes the listeners over (it signals the old one through
    /// the pid file), and from then on this `Proxy` is the new process.
    /// Returns the old process, draining, to be waited for.
    /// [`Proxy::upgrade`], the new process logging (at debug level) to
    /// `log` instead of where this one logs.
    pub async fn upgrade_logging_to(&mut self, log: PathBuf) -> anyhow::Result<Child> {
        self.log = Some(log);
        self.upgrade().await
    }

    pub async fn upgrade(&mut self) -> anyhow::Result<Child> {
        let mut args = self.args.clone();
        args.push("--upgrade".into());
        let mut child = spawn_edgesteer(&args, self.log.as_deref())?;
        let pid_file = self.runtime.path().join("rt/proxy.pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("the upgraded proxy exited: {status}");
            }
            let named = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if named == Some(child.id()) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the upgraded proxy did not take over within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::mem::swap(&mut self.child, &mut child);
        Ok(child)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("proxy exited during start-up: {status}");
            }
            let admin_ok = answers(&client, &format!("http://{}/healthz", self.admin)).await;
            let proxy_ok = tokio::net::TcpStream::connect(self.addr).await.is_ok();
            if admin_ok && proxy_ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "proxy did not become ready on {} / {}",
                    self.addr,
                    self.admin
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("http://{}/metrics", self.admin))
            .await?
            .text()
            .await?)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// `/v1/explain` for a client at `ip`, optionally with a Host.
    pub async fn explain(
        &self,
        ip: impl ToString,
        host: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        self.explain_as(ip, host, None).await
    }

    /// `explain` with an admin token (needed when the proxy has
    /// `--admin-token`).
    pub async fn explain_as(
        &self,
        ip: impl ToString,
        host: Option<&str>,
        token: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut query = vec![("ip", ip.to_string())];
        if let Some(h) = host {
            query.push(("host", h.to_string()));
        }
        let mut req = reqwest::Client::new()
            .get(format!("http://{}/v1/explain", self.admin))
            .query(&query);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Ok(req.send().await?.json().await?)
    }

    /// The admin `/v1/health` document.
    pub async fn health(&self) -> anyhow::Result<serde_json::Value> {
        Ok(reqwest::get(format!("http://{}/v1/health", self.admin))
            .await?
            .json()
            .await?)
    }

    /// Whether `/v1/health` reports `region` as healthy.
    pub async fn region_healthy(&self, region: &str) -> bool {
        let Ok(h) = self.health().await else {
            return false;
        };
        h["regions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["region"] == region)
            .is_some_and(|r| r["healthy"] == true)
    }
}

impl Proxy {
    /// The version of the table the proxy is serving (admin `/v1/version`).
    pub async fn table_version(&self) -> Option<u64> {
        let v: serde_json::Value = self
            .admin_client
            .get(format!("http://{}/v1/version", self.admin))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["version"].as_u64()
    }
}
