//! A bare Pingora reverse proxy: one upstream, no steering, no metrics.
//! It is the floor edgesteer's per-request CPU is compared against in
//! `peer.sh` ("steering costs at most 10% over a bare pass-through").
//!
//! `passthrough --listen 127.0.0.1:18084 --upstream 127.0.0.1:18081 --threads 1`
//!
//! With TLS at both hops (`benches/peer-tls.sh`): `--tls-cert C --tls-key K`
//! serve TLS (h2 and HTTP/1.1 by ALPN, session tickets as edgesteer's
//! listener), `--upstream-tls NAME --upstream-ca CA` reach the upstream
//! over TLS, verified, HTTP/1.1.

use async_trait::async_trait;
use clap::Parser;
use std::sync::Arc;

use pingora_core::listeners::tls::TlsSettings;
use pingora_core::prelude::HttpPeer;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::utils::tls::WrappedX509;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The same allocator as `edgesteer`, so the comparison isolates steering
/// (with the `system-alloc` feature, the system's, as `edgesteer`'s).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(feature = "system-alloc"))]
#[allow(unsafe_code)] // a constructor (edgesteer_proxy::allocator)
#[used]
#[link_section = ".init_array"]
static MIMALLOC_OPTIONS: extern "C" fn() = edgesteer_proxy::allocator::mimalloc_options;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: String,
    #[arg(long)]
    upstream: std::net::SocketAddr,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Set the same per-try connect/read/write timeouts edgesteer sets on
    /// every upstream attempt, to separate Pingora's timer cost from steering.
    #[arg(long)]
    timeouts_ms: Option<u64>,
    /// Single-threaded runtimes instead of one work-stealing runtime.
    #[arg(long)]
    no_work_stealing: bool,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<String>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<String>,
    /// Reach the upstream over TLS, with this server name; needs --upstream-ca.
    #[arg(long, requires = "upstream_ca")]
    upstream_tls: Option<String>,
    /// CA (PEM) the upstream's certificate is verified against.
    #[arg(long)]
    upstream_ca: Option<std::path::PathBuf>,
}

struct Passthrough {
    upstream: std::net::SocketAddr,
    timeouts: Option<std::time::Duration>,
    /// The upstream's TLS name and CA, when it is reached over TLS.
    tls: Option<(String, Arc<[WrappedX509]>)>,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = match &self.tls {
            Some((name, ca)) => {
                let mut p = HttpPeer::new(self.upstream, true, name.clone());
                p.options.ca = Some(ca.clone());
                p
            }
            None => HttpPeer::new(self.upstream, false, String::new()),
        };
        if let Some(t) = self.timeouts {
            peer.options.connection_timeout = Some(t);
            peer.options.total_connection_timeout = Some(t);
            peer.options.read_timeout = Some(t);
            peer.options.write_timeout = Some(t);
            peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        }
        Ok(Box::new(peer))
    }
}

/// The CA file as Pingora's rustls peers take it.
fn load_ca(path: &std::path::Path) -> anyhow::Result<Arc<[WrappedX509]>> {
    let mut certs = Vec::new();
    for c in CertificateDer::pem_file_iter(path)? {
        let der = c?;
        certs.push(WrappedX509::new(
            der.to_vec(),
            pingora_core::utils::tls::parse_x509,
        ));
    }
    Ok(certs.into())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let upstream_ca = match &args.upstream_ca {
        Some(path) => Some(
            load_ca(path).map_err(|e| anyhow::anyhow!("--upstream-ca {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let conf = ServerConf {
        threads: args.threads,
        work_stealing: !args.no_work_stealing,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(Opt::default()), conf);
    server.bootstrap();
    let mut svc = pingora_proxy::http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream: args.upstream,
            timeouts: args.timeouts_ms.map(std::time::Duration::from_millis),
            tls: args.upstream_tls.clone().zip(upstream_ca),
        },
    );
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let mut tls = TlsSettings::intermediate(cert, key)?;
            tls.enable_h2();
            let ticketer = rustls::crypto::ring::Ticketer::new()?;
            tls.set_server_config_tune(Box::new(move |c| c.ticketer = ticketer));
            svc.add_tls_with_settings(&args.listen, None, tls);
        }
        _ => svc.add_tcp(&args.listen),
    }
    server.add_service(svc);
    server.run_forever()
}
