//! `edgesteer demo`: demo backends for every region on loopback, an
//! in-memory config service and a proxy following it, wired through the
//! same functions as `edgesteer control` and `edgesteer proxy`; and
//! `edgesteer backend`, one demo backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::os::unix::fs::{DirBuilderExt, MetadataExt};

use anyhow::Context;
use clap::Args;
use edgesteer_config::{parse, TableSpec};
use edgesteer_geo::GeoDb;

use super::control::start_control;
use super::serve::{proxy_server, steering, Follow};
use super::table::compile_or_explain;
use crate::demo::DemoBackend;
use edgesteer_proxy::server::ServeOptions;

/// The demo's admin listener by default, where `ctl explain` asks.
const DEMO_ADMIN: &str = "127.0.0.1:9090";

#[derive(Args, Debug)]
pub(super) struct DemoArgs {
    /// The proxy's listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The proxy's admin listener (`ctl explain --admin`).
    #[arg(long, default_value = DEMO_ADMIN)]
    admin: SocketAddr,
    /// Where the demo's config service listens (`ctl --control`).
    #[arg(long, default_value = "127.0.0.1:9300")]
    control: SocketAddr,
    /// The demo backends listen on 127.0.0.1 at this port and the ones
    /// after it, one per backend (20 for the covergen table); default:
    /// free ports picked by the system.
    #[arg(long, value_name = "PORT")]
    backend_ports: Option<u16>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Where the demo answers GeoDNS for the table's [dns] zone (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:5353")]
    dns_listen: SocketAddr,
}

/// The demo config service's ops token (printed at start-up).
pub const DEMO_TOKEN: &str = "demo-token-not-secret";
/// The token the demo proxy follows the service with (role `proxy`).
const DEMO_PROXY_TOKEN: &str = "demo-proxy-token-not-secret";

/// The covergen table as the demo serves it: loopback trusted for
/// `X-Forwarded-For`, track and version headers on.
fn demo_spec() -> anyhow::Result<TableSpec> {
    let mut spec = parse::from_toml(edgesteer_config::COVERGEN_TOML)
        .map_err(|e| anyhow::anyhow!("embedded covergen table: {e}"))?;
    spec.description = Some("covergen demo (loopback backends)".into());
    spec.client_ip.trusted_proxies = vec!["127.0.0.0/8".into(), "::1".into()];
    spec.headers.track = true;
    spec.headers.version = true;
    Ok(spec)
}

pub(super) fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("demo-backends")
        .build()
        .context("starting the demo backends' runtime")?;
    // eu-west's origins speak TLS (h2), verified against a demo CA made
    // now, as production origins across the Internet would be.
    let pki_dir = private_dir()?;
    let pki = crate::demo::DemoPki::generate(&pki_dir).context("making the demo origin CA")?;
    let (spec, backends) = spawn_backends(&rt, &pki, args.backend_ports)?;
    // The origins hold their key in memory now; only the CA stays on disk
    // (the table names it), in a 0700 directory removed at exit.
    forget_key(&pki.key);
    let table = compile_or_explain(&spec)?;

    // The config service, in memory, seeded with the demo table.
    let control_url = format!("http://{}", args.control);
    let control = rt.block_on(async {
        let tokens = vec![
            edgesteer_control_api::Token {
                name: "demo".into(),
                secret: DEMO_TOKEN.into(),
                role: edgesteer_control_api::Role::Ops,
            },
            edgesteer_control_api::Token {
                name: "demo-proxy".into(),
                secret: DEMO_PROXY_TOKEN.into(),
                role: edgesteer_control_api::Role::Proxy,
            },
        ];
        let store = Arc::new(edgesteer_control::MemoryStore::default());
        let (control, serve) = start_control(
            store,
            tokens,
            Some(spec.clone()),
            args.control,
            edgesteer_control::DEFAULT_BODY_LIMIT,
            std::future::pending(),
        )
        .await?;
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "demo config service stopped");
            }
        });
        anyhow::Ok(control)
    })?;
    // The proxy starts from the version the service stored, as a proxy
    // that follows it would: its API keys hashed on the way in.
    let (version, spec, table) = match control.latest() {
        Some(r) => (r.version, r.table.clone(), compile_or_explain(&r.table)?),
        None => (1, spec, table),
    };
    control.set_geo_db(Arc::new(GeoDb::bundled()?));

    let steer = Arc::new(steering(version, spec, table, GeoDb::bundled()?)?);
    let opts = ServeOptions {
        listen: vec![args.listen.clone()],
        admin: Some(args.admin),
        threads: args.threads,
        geodns: Some(edgesteer_proxy::geodns::GeoDnsOptions {
            listen: args.dns_listen,
            threads: 1,
            tcp: edgesteer_dns::TcpLimits::default(),
        }),
        ..ServeOptions::default()
    };
    let follow = Follow {
        url: control_url.clone(),
        token: Some(DEMO_PROXY_TOKEN.into()),
        epoch: None,
        name: "demo-proxy".into(),
        cache: None,
        report_every: Duration::from_secs(1),
        extra_trust: Vec::new(),
    };
    let server = proxy_server(steer, &opts, Some(follow))?;
    remove_at_exit(&server.server, pki_dir);
    print_banner(&args, &backends, &control_url);
    // Keep the backends' runtime (and the config service) alive for as long as the server runs.
    let _keep = (rt, backends, control);
    edgesteer_proxy::server::run(server, None)
}

/// The demo backends for the demo table, on `ports` and the ports after
/// it (else on free ports), eu-west's speaking TLS with `pki`.
fn spawn_backends(
    rt: &tokio::runtime::Runtime,
    pki: &crate::demo::DemoPki,
    ports: Option<u16>,
) -> anyhow::Result<(TableSpec, Vec<DemoBackend>)> {
    let mut next_port = ports;
    let mut bind = move || {
        let port = next_port.unwrap_or(0);
        next_port = next_port.map(|p| p.saturating_add(1));
        SocketAddr::from(([127, 0, 0, 1], port))
    };
    rt.block_on(crate::demo::spawn_for_spec_on(
        &demo_spec()?,
        Some((pki, &["eu-west"])),
        &mut bind,
    ))
    .with_context(|| match ports {
        Some(p) => format!("starting demo backends on 127.0.0.1:{p} and the ports after it"),
        None => "starting demo backends".into(),
    })
}

/// Where this demo keeps its origin CA, certificate and key: a new
/// directory `edgesteer-demo-PID` under the temp dir, mode 0700. Those
/// that demos killed without a chance to clean up left behind (owned by
/// this user, their process gone) are removed first.
fn private_dir() -> anyhow::Result<std::path::PathBuf> {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("edgesteer-demo-"))
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if left_behind(&e.path(), pid) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = tmp.join(format!("edgesteer-demo-{}", std::process::id()));
    let made = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    made.with_context(|| {
        format!(
            "creating {} for the demo's origin certificates",
            dir.display()
        )
    })?;
    Ok(dir)
}

/// A demo directory of this user whose process is gone.
fn left_behind(path: &std::path::Path, pid: i32) -> bool {
    let ours = std::fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw());
    let gone = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    );
    ours && gone && pid != std::process::id() as i32
}

/// Removes the origins' private key once they have read it.
fn forget_key(key: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(key) {
        tracing::warn!(key = %key.display(), error = %e, "cannot remove the demo origin key");
    }
}

/// Removes `dir` when the server starts shutting down (SIGINT, SIGTERM).
fn remove_at_exit(server: &pingora_core::server::Server, dir: std::path::PathBuf) {
    use pingora_core::server::ExecutionPhase;
    // Removed by the exiting thread itself (the watcher below can lose the
    // race against a quick exit after SIGTERM), and by the watcher on any
    // other way out.
    edgesteer_proxy::server::remove_at_exit(dir.clone());
    let mut phases = server.watch_execution_phase();
    let spawned = std::thread::Builder::new()
        .name("demo-cleanup".into())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::GracefulTerminate | ExecutionPhase::ShutdownStarted)
                | Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    edgesteer_proxy::server::remove_dir_settled(&dir);
                    return;
                }
                _ => {}
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for the demo's end; its temp directory stays");
    }
}

/// What is running and what to try.
fn print_banner(args: &DemoArgs, backends: &[DemoBackend], control_url: &str) {
    println!(
        "edgesteer demo: {} backends in 8 regions on loopback",
        backends.len()
    );
    for b in backends {
        let scheme = if b.conns.is_some() { "https" } else { "http" };
        println!(
            "  {:<13} {:<16} {:<7} {scheme}://{}",
            b.id.region, b.id.backend, b.id.track, b.addr
        );
    }
    println!("  (eu-west's origins are reached over TLS 1.3 + h2, verified against a demo CA; the answer's \"sni\" shows the name sent)");
    let base = format!("http://{}", args.listen);
    let us_east_1 = backends
        .iter()
        .find(|b| b.id.region == "us-east")
        .map(|b| b.addr.to_string())
        .unwrap_or_default();
    println!(
        "\nproxy:  {base}      admin: http://{}  (/metrics, /v1/health, /v1/table)",
        args.admin
    );
    println!("try:");
    println!(
        "  curl -s -H 'X-Forwarded-For: 80.128.0.1'    {base}/v1/covers   # Germany  -> eu-west"
    );
    println!(
        "  curl -s -H 'X-Forwarded-For: 8.8.8.8'       {base}/v1/covers   # US       -> us-east"
    );
    println!(
        "  curl -s -H 'X-Forwarded-For: 202.96.128.86' {base}/v1/covers   # China    -> cn-east"
    );
    println!("  curl -s -H 'X-Forwarded-For: 1.36.0.1'      {base}/v1/covers   # Hong Kong-> ap-southeast");
    println!("  curl -si -H 'Host: api-cn.covergen.ai' -H 'X-Forwarded-For: 8.8.8.8' {base}/  # pin across zone -> 421");
    let dns = args.dns_listen;
    println!(
        "GeoDNS on {dns} (UDP and TCP), the same table, health and zones; the client subnet picks the region:"
    );
    println!(
        "  dig @{} -p {} api.covergen.ai A +subnet=202.96.128.0/24 +short   # China -> cn-east's edges",
        dns.ip(),
        dns.port()
    );
    println!(
        "  dig @{} -p {} api.covergen.ai AAAA +subnet=202.96.128.0/24      # NODATA: China's edges have no IPv6",
        dns.ip(),
        dns.port()
    );
    println!("rate limits (local scope in the demo): per IP 10,000/s; X-Api-Key free 10/s, pro 100/s, enterprise 1,000/s");
    println!("  for i in $(seq 15); do curl -s -o /dev/null -w '%{{http_code}} ' -H 'X-Api-Key: cg-demo-free' {base}/v1/covers; done; echo   # 10 x 200, then 429");
    println!("  curl -si -H 'X-Api-Key: cg-demo-pro' {base}/v1/covers | grep -i ratelimit   # RateLimit-Policy / RateLimit headers");
    println!(
        "  curl -s http://{}/v1/ratelimit   # policies, keys tracked, Redis, block list",
        args.admin
    );
    println!("\nconfig service: {control_url}   token: {DEMO_TOKEN}");
    println!("ops console:    {control_url}/ui   (log in with the token above)");
    println!("  export EDGESTEER_TOKEN={DEMO_TOKEN}");
    // Moved ports: `ctl` must be told, or it asks the defaults (another
    // demo's, perhaps).
    if control_url != edgesteer_ctl::DEMO_CONTROL {
        println!("  export EDGESTEER_CONTROL={control_url}");
    }
    if args.admin.to_string() != DEMO_ADMIN {
        println!("  export EDGESTEER_ADMIN=http://{}", args.admin);
    }
    // This binary, wherever it is (`cargo run` leaves it in target/).
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "edgesteer".into());
    println!("  {me} ctl get");
    println!("  {me} ctl set-weight us-east {us_east_1} 0 --reason 'drain one backend'");
    println!("  {me} ctl shift eu-west --reason maintenance     # EU traffic -> eu-central");
    println!("  {me} ctl history");
}

pub(super) fn run_backend(
    region: String,
    name: String,
    track: String,
    listen: SocketAddr,
    tls: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    rt.block_on(async move {
        let id = crate::demo::Identity {
            region,
            backend: name,
            track,
        };
        let b = match &tls {
            None => crate::demo::spawn_backend(id, listen).await?,
            Some(dir) => {
                let pki = crate::demo::DemoPki::generate(dir)?;
                println!(
                    "TLS with a generated certificate for localhost, origin.demo.edgesteer and 127.0.0.1; its CA: {}",
                    pki.ca.display()
                );
                crate::demo::spawn_backend_tls(id, listen, pki.server_config()?).await?
            }
        };
        // `listening on ADDR` first: scripts and tests read it.
        println!(
            "listening on {}{}",
            b.addr,
            if b.conns.is_some() { " (TLS)" } else { "" }
        );
        tokio::signal::ctrl_c().await?;
        drop(b);
        Ok(())
    })
}
