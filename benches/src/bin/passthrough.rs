//! A bare Pingora reverse proxy: one upstream, no steering, no metrics.
//! It is the floor edgesteer's per-request CPU is compared against in
//! `peer.sh` ("steering costs at most 10% over a bare pass-through").
//!
//! `passthrough --listen 127.0.0.1:18084 --upstream 127.0.0.1:18081 --threads 1`

use async_trait::async_trait;
use clap::Parser;
use pingora_core::prelude::HttpPeer;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};

/// The same allocator as `edgesteer`, so the comparison isolates steering.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

struct Passthrough {
    upstream: std::net::SocketAddr,
    timeouts: Option<std::time::Duration>,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
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

fn main() {
    let args = Args::parse();
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
        },
    );
    svc.add_tcp(&args.listen);
    server.add_service(svc);
    server.run_forever()
}
