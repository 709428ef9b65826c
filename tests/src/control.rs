//! A running `edgesteer control` config service (plain, HTTPS, or a
//! replica of an etcd store), its tokens, and the arguments a proxy
//! follows it with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::binary::binary;
use crate::pki::make_pki;
use crate::ports::free_port;
use crate::requests::answers;
use crate::wait::{wait_child, wait_until};

/// The write token the tests' config services accept.
pub const OPS_TOKEN: &str = "ops-secret-token-1";
/// A `proxy`-role token named `fleet`: it may watch, ack and report only
/// as the proxy `fleet` (each proxy speaks only for itself).
pub const PROXY_TOKEN: &str = "proxy-secret-token-1";
/// The proxy names the tests' config services hold a `proxy` token for
/// (see [`proxy_token`]); [`follow`] refuses any other name.
pub const TEST_PROXIES: &[&str] = &[
    "p", "p1", "p2", "p3", "pa", "pb", "p-right", "p-wrong", "edge-1", "edge-2", "edge-r",
];

/// The secret of the `proxy` token named `name` (one per proxy of
/// [`TEST_PROXIES`]): a proxy acks and reports only under its token's name.
pub fn proxy_token(name: &str) -> String {
    format!("proxy-secret-of-{name}")
}
/// A `read`-role token.
pub const READ_TOKEN: &str = "read-secret-token-1";

/// A config service process; killed (SIGKILL) on drop.
pub struct ControlProc {
    child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    /// The CA its certificate chains to, when it serves HTTPS.
    pub ca: Option<PathBuf>,
}

/// The files of a config service that serves HTTPS on 127.0.0.1.
pub struct ControlTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed `cert`.
    pub ca: PathBuf,
}

impl ControlTls {
    /// A fresh CA under `dir` and a certificate for 127.0.0.1 and
    /// localhost signed by it.
    pub fn generate(dir: &Path) -> anyhow::Result<ControlTls> {
        std::fs::create_dir_all(dir)?;
        let pki = make_pki(dir, &[&["127.0.0.1", "localhost"]])?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem)?;
        let (cert, key) = pki.leaves.into_iter().next().context("no leaf")?;
        Ok(ControlTls { cert, key, ca })
    }
}

impl ControlProc {
    /// Starts `edgesteer control` serving HTTPS with `tls` on a free port.
    pub async fn start_https(
        data: &Path,
        seed: Option<&Path>,
        extra: &[&str],
        tls: &ControlTls,
    ) -> anyhow::Result<ControlProc> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::launch(addr, data, seed, extra, Some(tls), None).await
    }

    /// Starts `edgesteer control` on a free port with `data` as its store.
    pub async fn start(
        data: &Path,
        seed: Option<&Path>,
        extra: &[&str],
    ) -> anyhow::Result<ControlProc> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::start_on(addr, data, seed, extra).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        data: &Path,
        seed: Option<&Path>,
        extra: &[&str],
    ) -> anyhow::Result<ControlProc> {
        Self::launch(addr, data, seed, extra, None, None).await
    }

    /// Like [`ControlProc::start`], writing the service's log (at debug
    /// level) to `log`.
    pub async fn start_logged(
        data: &Path,
        seed: Option<&Path>,
        log: &Path,
    ) -> anyhow::Result<ControlProc> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::launch(addr, data, seed, &[], None, Some(log)).await
    }

    async fn launch(
        addr: SocketAddr,
        data: &Path,
        seed: Option<&Path>,
        extra: &[&str],
        tls: Option<&ControlTls>,
        log: Option<&Path>,
    ) -> anyhow::Result<ControlProc> {
        let mut cmd = Command::new(binary());
        cmd.arg("control").arg("--listen").arg(addr.to_string());
        // A replica of a shared store has no directory of its own.
        if !extra.contains(&"--store") {
            cmd.arg("--data").arg(data);
        }
        cmd.arg("--token")
            .arg(format!("ops={OPS_TOKEN}"))
            .arg("--token")
            .arg(format!("proxy:fleet={PROXY_TOKEN}"))
            .arg("--token")
            .arg(format!("read:viewer={READ_TOKEN}"))
            .args(TEST_PROXIES.iter().flat_map(|p| {
                [
                    "--token".to_string(),
                    format!("proxy:{p}={}", proxy_token(p)),
                ]
            }))
            .args(extra);
        if let Some(t) = tls {
            cmd.arg("--tls-cert")
                .arg(&t.cert)
                .arg("--tls-key")
                .arg(&t.key);
        }
        if let Some(s) = seed {
            cmd.arg("--seed").arg(s);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        if let Some(path) = log {
            cmd.env("RUST_LOG", "debug")
                .stderr(std::fs::File::create(path)?);
        }
        let child = cmd.spawn()?;
        let mut c = ControlProc {
            child,
            addr,
            data: data.to_path_buf(),
            ca: tls.map(|t| t.ca.clone()),
        };
        // Readiness only: the certificate is checked by the tests themselves.
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()?;
        let url = c.url("/healthz");
        let ready = wait_until(Duration::from_secs(15), || answers(&client, &url)).await;
        if let Some(status) = c.child.try_wait()? {
            bail!("config service exited during start-up: {status}");
        }
        if ready.is_none() {
            bail!("config service did not become ready on {}", c.addr);
        }
        Ok(c)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// `http://ADDR`, or `https://ADDR` when it serves HTTPS.
    pub fn base(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. `TERM`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Its exit status, if it exits within `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.child, limit).await
    }

    /// A client with `token`, trusting the service's CA when it has one.
    pub fn client_as(&self, token: &str) -> edgesteer_control_api::client::Client {
        let tls = edgesteer_control_api::client::ClientTls {
            ca: self.ca.clone(),
            identity: None,
        };
        match edgesteer_control_api::client::Client::with_tls(
            &self.base(),
            Some(token.to_string()),
            &tls,
        ) {
            Ok(c) => c,
            Err(e) => panic!("client of {}: {e}", self.base()),
        }
    }

    /// Runs `edgesteer ctl --control <this service> ARGS` with the ops
    /// token and returns what it printed.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(binary())
            .args(["ctl", "--control", &self.base()])
            .args(args)
            .env("EDGESTEER_TOKEN", OPS_TOKEN)
            .output();
        match out {
            Ok(o) => o,
            Err(e) => panic!("running {}: {e}", binary().display()),
        }
    }

    /// A client with the ops token.
    pub fn client(&self) -> edgesteer_control_api::client::Client {
        self.client_as(OPS_TOKEN)
    }
}

impl Drop for ControlProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl ControlProc {
    /// A config service replica on the etcd store `store` (an
    /// `etcd://...` URL), named `replica` in audit records.
    pub async fn start_replica(
        store: &str,
        seed: Option<&Path>,
        replica: &str,
    ) -> anyhow::Result<ControlProc> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::launch(
            addr,
            Path::new(""),
            seed,
            &["--store", store, "--replica", replica],
            None,
            None,
        )
        .await
    }
}

/// Proxy arguments to follow a config service with a table cache, as the
/// proxy `name` with its own `proxy` token (read from a file beside the
/// cache); `name` must be one of [`TEST_PROXIES`].
pub fn follow(control: &ControlProc, cache: &Path, name: &str) -> Vec<String> {
    assert!(
        TEST_PROXIES.contains(&name),
        "proxy name {name:?}: the tests' config services hold tokens only for {TEST_PROXIES:?}; add it there"
    );
    let token = cache.with_extension("token");
    if let Err(e) = std::fs::write(&token, format!("{}\n", proxy_token(name))) {
        panic!("writing {}: {e}", token.display());
    }
    vec![
        "--control".into(),
        control.base(),
        "--control-token-file".into(),
        token.display().to_string(),
        "--cache".into(),
        cache.display().to_string(),
        "--name".into(),
        name.into(),
    ]
    .into_iter()
    .chain(
        control
            .ca
            .iter()
            .flat_map(|ca| ["--control-ca".to_string(), ca.display().to_string()]),
    )
    .collect()
}
