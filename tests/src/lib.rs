//! # edgesteer-tests
//!
//! The end-to-end harness: real `edgesteer` processes (the binary built
//! from this package's `edgesteer-e2e` target, same entry point as the real
//! one), real HTTP backends on 127.0.0.1, a real geo database file, and a
//! real HTTP client. Nothing is mocked.
//!
//! Tests live in `tests/tests/*.rs`; this library holds what they share.
#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edgesteer::demo::{spawn_for_spec_on, DemoBackend};
use edgesteer_config::{parse, TableSpec};
use edgesteer_geo::testdb::{self, Schema};

pub use edgesteer_geo::testdb::sample_ip;

/// The binary under test: `$EDGESTEER_BIN`, else this package's
/// `edgesteer-e2e`, which cargo builds next to the test executables'
/// `deps/` directory before it runs them.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGESTEER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    target_dir.join(format!("edgesteer-e2e{}", std::env::consts::EXE_SUFFIX))
}

/// A port for a process under test to bind (Pingora binds its own
/// listeners, so we cannot hand it a bound socket).
///
/// Two things can take a port between this answer and the child's bind,
/// and both are closed off here:
/// - an *outgoing* connection of any test gets its local port from the
///   kernel's ephemeral range, so ports are picked below that range, where
///   only explicit binds land;
/// - another test process (nextest runs one per test) could pick the same
///   port, so each port handed out is reserved by a marker file created
///   with `O_EXCL` in a shared directory; markers older than an hour (a
///   previous run's) are reused.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = if ephemeral_low > 12_000 {
        (10_000u16, ephemeral_low)
    } else {
        (ephemeral_low.max(1024), 65_000)
    };
    let dir = std::env::temp_dir().join("edgesteer-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let seed = std::collections::hash_map::RandomState::new();
    for _ in 0..2_000 {
        let mut h = seed.build_hasher();
        h.write_u32(std::process::id());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let port = low + (h.finish() % u64::from(high - low)) as u16;
        if !reserve(&dir.join(port.to_string())) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Fall back to the kernel's choice (racy, but never a hard failure).
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Claims `marker` for this process; a marker older than an hour is a
/// previous run's and is taken over.
fn reserve(marker: &Path) -> bool {
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
            .is_ok()
    };
    if create() {
        return true;
    }
    let stale = std::fs::metadata(marker)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(3600));
    stale && std::fs::remove_file(marker).is_ok() && create()
}

/// A scratch directory holding the test geo database and table files.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> anyhow::Result<Workdir> {
        Ok(Workdir {
            dir: tempfile::tempdir()?,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the sample GeoIP2-schema database and returns its path.
    pub fn geo_db(&self) -> anyhow::Result<PathBuf> {
        let p = self.path("geo.mmdb");
        std::fs::write(&p, testdb::build(Schema::GeoIp2, testdb::SAMPLE))?;
        Ok(p)
    }

    pub fn write_table(&self, name: &str, spec: &TableSpec) -> anyhow::Result<PathBuf> {
        let p = self.path(name);
        std::fs::write(&p, parse::to_toml(spec)?)?;
        Ok(p)
    }
}

/// The covergen table from `examples/`.
pub fn covergen() -> TableSpec {
    match parse::from_toml(edgesteer_config::COVERGEN_TOML) {
        Ok(s) => s,
        Err(e) => panic!("examples/covergen.toml does not parse: {e}"),
    }
}

/// The covergen table pointed at fresh loopback backends (one per backend
/// in the table), with response headers on.
pub async fn covergen_on_loopback() -> anyhow::Result<(TableSpec, Vec<DemoBackend>)> {
    let mut spec = covergen();
    // The tests drive hundreds of requests/s from one address; the rate
    // limit tests bring their own policies.
    spec.rate_limits.clear();
    spec.headers.track = true;
    spec.headers.version = true;
    // Reserved ports: a backend a test stops must not have its port taken
    // by another test's backend (a request would then land there).
    let mut bind = || std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (spec, backends) = spawn_for_spec_on(&spec, None, &mut bind).await?;
    Ok((spec, backends))
}

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
        for a in [
            "--listen",
            &addr.to_string(),
            "--admin",
            &admin.to_string(),
            "--threads",
            "1",
        ] {
            args.push(a.into());
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

/// Whether a GET of `url` answers 2xx.
pub async fn answers(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Waits up to `limit` for `child` to exit.
pub async fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a demo backend said about a proxied request.
#[derive(Debug, Clone)]
pub struct Landed {
    pub status: u16,
    pub region_header: Option<String>,
    pub body: serde_json::Value,
    pub version: reqwest::Version,
}

impl Landed {
    /// The region the backend says it is in.
    pub fn region(&self) -> &str {
        self.body
            .get("region")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }
}

/// GETs `url` as a client at `client` (sent as X-Forwarded-For), optionally with a Host.
pub async fn get_as(
    client: &reqwest::Client,
    url: &str,
    ip: IpAddr,
    host: Option<&str>,
) -> anyhow::Result<Landed> {
    let mut req = client.get(url).header("x-forwarded-for", ip.to_string());
    if let Some(h) = host {
        req = req.header("host", h);
    }
    landed(req.send().await?).await
}

/// Reads a demo backend's answer (status, region header, JSON body).
async fn landed(resp: reqwest::Response) -> anyhow::Result<Landed> {
    let status = resp.status().as_u16();
    let version = resp.version();
    let region_header = resp
        .headers()
        .get("x-steer-region")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok(Landed {
        status,
        region_header,
        body,
        version,
    })
}

/// A CA and leaf certificates signed by it, written as PEM files.
pub struct TestPki {
    pub ca_pem: String,
    pub leaves: Vec<(PathBuf, PathBuf)>,
}

/// One leaf per name list, each signed by a fresh CA.
pub fn make_pki(dir: &Path, leaves: &[&[&str]]) -> anyhow::Result<TestPki> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut out = Vec::new();
    for (i, names) in leaves.iter().enumerate() {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        let c = dir.join(format!("leaf{i}.pem"));
        let k = dir.join(format!("leaf{i}.key"));
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        out.push((c, k));
    }
    Ok(TestPki {
        ca_pem: ca.pem(),
        leaves: out,
    })
}

/// Tunes a table for tests: fast probes, short timeouts and cool-downs.
pub fn fast_health(spec: &mut TableSpec) {
    spec.health.interval_ms = Some(200);
    spec.health.timeout_ms = Some(150);
    spec.health.unhealthy_after = Some(3);
    spec.health.healthy_after = Some(2);
    spec.retry.max_attempts = Some(3);
    spec.retry.connect_timeout_ms = Some(300);
    spec.retry.per_try_timeout_ms = Some(500);
    spec.retry.total_timeout_ms = Some(3000);
    spec.outlier.base_ejection_ms = Some(1000);
}

/// A demo backend running as its own process, so tests can SIGKILL,
/// SIGSTOP and SIGCONT it like a real server.
pub struct BackendProc {
    child: Child,
    pub addr: SocketAddr,
}

impl BackendProc {
    pub fn spawn(region: &str, name: &str, listen: SocketAddr) -> anyhow::Result<BackendProc> {
        use std::io::BufRead;
        let mut child = Command::new(binary())
            .args(["backend", "--region", region, "--name", name, "--listen"])
            .arg(listen.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("backend stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("backend said {line:?}"))?;
        Ok(BackendProc { child, addr })
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for BackendProc {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Polls `f` every 50 ms until it is true or `limit` passes; returns the time it took.
pub async fn wait_until<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
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

/// Serialises the tests that drive load and measure time (rates, push
/// propagation), so two of them never compete for the machine's two cores
/// (the suite runs two tests at a time): each holds this for its run.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// The write token the tests' config services accept.
pub const OPS_TOKEN: &str = "ops-secret-token-1";
/// The `proxy`-role token the tests' proxies follow a config service with.
pub const PROXY_TOKEN: &str = "proxy-secret-token-1";
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
    pub fn client_as(&self, token: &str) -> edgesteer_control::client::Client {
        let tls = edgesteer_control::client::ClientTls {
            ca: self.ca.clone(),
            identity: None,
        };
        match edgesteer_control::client::Client::with_tls(
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
    pub fn client(&self) -> edgesteer_control::client::Client {
        self.client_as(OPS_TOKEN)
    }
}

impl Drop for ControlProc {
    fn drop(&mut self) {
        self.kill9();
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

/// Proxy arguments to follow a config service with a table cache, the
/// `proxy` token read from a file beside the cache.
pub fn follow(control: &ControlProc, cache: &Path, name: &str) -> Vec<String> {
    let token = cache.with_extension("token");
    if let Err(e) = std::fs::write(&token, format!("{PROXY_TOKEN}\n")) {
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

impl Workdir {
    /// A proxy named `name` following `control` (table cache
    /// `NAME.cache.json` here), on the sample geo database, trusting
    /// loopback's `X-Forwarded-For`.
    pub async fn follower(&self, control: &ControlProc, name: &str) -> anyhow::Result<Proxy> {
        Proxy::start(ProxyConfig {
            geo_db: Some(self.geo_db()?),
            trust_loopback: true,
            extra_args: follow(control, &self.path(&format!("{name}.cache.json")), name),
            ..Default::default()
        })
        .await
    }

    /// Writes `spec` and the sample geo database here and starts a proxy on them.
    pub async fn start_proxy(
        &self,
        spec: &TableSpec,
        trust_loopback: bool,
        extra_args: Vec<String>,
    ) -> anyhow::Result<Proxy> {
        Proxy::start(ProxyConfig {
            table: self.write_table("table.toml", spec)?,
            geo_db: Some(self.geo_db()?),
            trust_loopback,
            extra_args,
            ..Default::default()
        })
        .await
    }
}

/// A real `redis-server` on a free loopback port, with persistence off;
/// killed on drop. `scripts/setup.sh` installs it.
pub struct RedisProc {
    child: Option<Child>,
    pub port: u16,
}

impl RedisProc {
    pub async fn start() -> anyhow::Result<RedisProc> {
        let mut r = RedisProc {
            child: None,
            port: free_port(),
        };
        r.restart().await?;
        Ok(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits for PONG.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting redis-server (scripts/setup.sh installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer PING on port {}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").await.is_ok()
            && s.read(&mut buf)
                .await
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// Sends one command (RESP) and returns the first line of the reply.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    /// SIGSTOP: the port stays open but nothing answers (a hung Redis).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(sig)
                .arg(c.id().to_string())
                .stderr(Stdio::null())
                .status();
        }
    }

    pub fn kill(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
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

/// A paced run: `rate` GETs per second for `duration`, to `urls` in turn,
/// from client addresses `ips` in turn (as X-Forwarded-For), each with
/// `headers`, `conns` at a time. Bounded in count and time.
#[derive(Debug, Clone, Default)]
pub struct Pace {
    pub urls: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub headers: Vec<(String, String)>,
    pub rate: u32,
    pub duration: Duration,
    pub conns: usize,
}

/// What a paced run saw, by status.
#[derive(Debug, Default, Clone)]
pub struct Paced {
    /// 200 answers.
    pub ok: u64,
    /// 429 answers.
    pub limited: u64,
    /// Other statuses and transport errors, as text.
    pub other: Vec<String>,
    /// 200 answers by the region the backend says it is in.
    pub by_region: std::collections::BTreeMap<String, u64>,
    /// From the first send to the last.
    pub elapsed: Duration,
}

impl Paced {
    fn add(&mut self, r: Paced) {
        self.ok += r.ok;
        self.limited += r.limited;
        self.other.extend(r.other);
        for (k, v) in r.by_region {
            *self.by_region.entry(k).or_default() += v;
        }
        self.elapsed = self.elapsed.max(r.elapsed);
    }

    fn record(&mut self, ip: IpAddr, answer: anyhow::Result<Landed>) {
        match answer {
            Ok(l) if l.status == 200 => {
                self.ok += 1;
                *self.by_region.entry(l.region().to_string()).or_default() += 1;
            }
            Ok(l) if l.status == 429 => self.limited += 1,
            Ok(l) => self
                .other
                .push(format!("{ip}: status {} {:?}", l.status, l.body)),
            Err(e) => self.other.push(format!("{ip}: {e}")),
        }
    }
}

/// Sends the requests of `pace`: request i leaves at start + i / rate,
/// whichever of the `conns` tasks sends it.
pub async fn send_paced(pace: Pace) -> Paced {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let total = (u64::from(pace.rate) * pace.duration.as_millis() as u64 / 1000).max(1);
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(pace.rate.max(1)));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pace = std::sync::Arc::new(pace);
    let mut tasks = Vec::new();
    for _ in 0..pace.conns {
        let (client, pace, next) = (client.clone(), pace.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Paced::default();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return out;
                }
                tokio::time::sleep_until(start + period * u32::try_from(i).unwrap_or(u32::MAX))
                    .await;
                out.elapsed = out.elapsed.max(start.elapsed());
                let ip = pace.ips[(i as usize) % pace.ips.len()];
                let mut req = client
                    .get(&pace.urls[(i as usize) % pace.urls.len()])
                    .header("x-forwarded-for", ip.to_string());
                for (k, v) in &pace.headers {
                    req = req.header(k, v);
                }
                let answer = match req.send().await {
                    Ok(resp) => landed(resp).await,
                    Err(e) => Err(e.into()),
                };
                out.record(ip, answer);
            }
        }));
    }
    let mut all = Paced::default();
    for t in tasks {
        if let Ok(r) = t.await {
            all.add(r);
        }
    }
    all
}

/// A one-region table on `backend` with the given `rate_limits` TOML.
pub fn limits_table(backend: SocketAddr, rate_limits_toml: &str) -> anyhow::Result<TableSpec> {
    let text = format!(
        "default_region = \"us-east\"\n[headers]\nversion = true\n[regions.us-east]\nbackends = [{{ address = \"{backend}\" }}]\n{rate_limits_toml}"
    );
    Ok(parse::from_toml(&text)?)
}

/// A counter or gauge from a Prometheus text page (0 when absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}
