//! `edgesteer demo`: demo backends for every region on loopback, an
//! in-memory config service and a proxy following it, wired through the
//! same functions as `edgesteer control` and `edgesteer proxy`; and
//! `edgesteer backend`, one demo backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use edgesteer_config::{parse, TableSpec};
use edgesteer_geo::GeoDb;

use super::control::start_control;
use super::serve::{proxy_server, steering, Follow};
use super::table::compile_or_explain;
use crate::demo::DemoBackend;
use edgesteer_proxy::server::ServeOptions;

#[derive(Args, Debug)]
pub(super) struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
    /// Where the demo's config service listens.
    #[arg(long, default_value = "127.0.0.1:9300")]
    control: SocketAddr,
    #[arg(long, default_value_t = 2)]
    threads: usize,
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
    let pki_dir = std::env::temp_dir().join(format!("edgesteer-demo-{}", std::process::id()));
    let pki = crate::demo::DemoPki::generate(&pki_dir).context("making the demo origin CA")?;
    let (spec, backends) = rt
        .block_on(crate::demo::spawn_for_spec_tls(
            &demo_spec()?,
            Some((&pki, &["eu-west"])),
        ))
        .context("starting demo backends")?;
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
    let version = control.latest().map_or(1, |r| r.version);
    control.set_geo_db(Arc::new(GeoDb::bundled()?));

    let steer = Arc::new(steering(version, spec, table, GeoDb::bundled()?)?);
    let opts = ServeOptions {
        listen: vec![args.listen.clone()],
        admin: Some(args.admin),
        threads: args.threads,
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
    print_banner(&args, &backends, &control_url);
    // Keep the backends' runtime (and the config service) alive for as long as the server runs.
    let _keep = (rt, backends, control);
    edgesteer_proxy::server::run(server, None)
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
    println!("  edgesteer ctl get");
    println!("  edgesteer ctl set-weight us-east {us_east_1} 0 --reason 'drain one backend'");
    println!("  edgesteer ctl shift eu-west --reason maintenance     # EU traffic -> eu-central");
    println!("  edgesteer ctl history");
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
