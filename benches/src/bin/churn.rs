//! `edgesteer-churn`: TLS clients that come and go, for `benches/peer-tls.sh`
//! (issue 30, shape "churn").
//!
//! Each of `--connections` workers loops: connect, TLS handshake, a few
//! HTTP/1.1 keep-alive requests (`--requests`, 10), close. Every other
//! connection of a worker offers the session ticket its previous resumable
//! connection got (resumption), the others start from nothing (a full
//! handshake): half and half. Requests carry an X-Forwarded-For from the
//! geo mix (`--xff-file`, one address per line). Prints one JSON line:
//! requests, handshakes (full and resumed, as the server agreed), rps,
//! handshakes/s, and latency p50/p99 in µs (per request; a connection's
//! first request includes its handshake).
//!
//! edgesteer-churn --target 127.0.0.1:18443 --ca ca.pem --server-name api.covergen.ai --duration 10

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    target: SocketAddr,
    /// CA (PEM) the server's certificate is verified against.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long, default_value = "api.covergen.ai")]
    server_name: String,
    #[arg(long, default_value = "/")]
    path: String,
    /// Workers, each one connection at a time.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests per connection before it closes.
    #[arg(long, default_value_t = 10)]
    requests: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Client addresses for X-Forwarded-For, one per line (none: no header).
    #[arg(long)]
    xff_file: Option<PathBuf>,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    full: AtomicU64,
    resumed: AtomicU64,
    errors: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

fn client_config(ca: &PathBuf, resume: bool) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let name = ServerName::try_from(args.server_name.clone())?;
    let xff: Vec<String> = match &args.xff_file {
        Some(f) => std::fs::read_to_string(f)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => Vec::new(),
    };
    let xff = Arc::new(xff);
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.connections {
        // Each worker has its own resumption cache: its tickets are its own.
        let resuming = TlsConnector::from(client_config(&args.ca, true)?);
        let fresh = TlsConnector::from(client_config(&args.ca, false)?);
        let (name, xff, counts) = (name.clone(), xff.clone(), counts.clone());
        let (target, path, requests) = (args.target, args.path.clone(), args.requests);
        workers.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok()?;
            let mut n = w;
            let mut conn = 0u64;
            while Instant::now() < deadline {
                conn += 1;
                let tls = if conn.is_multiple_of(2) {
                    &resuming
                } else {
                    &fresh
                };
                let r = one_connection(tls, target, &name, &path, requests, &xff, &mut n).await;
                match r {
                    Ok((resumed, latencies)) => {
                        let which = if resumed {
                            &counts.resumed
                        } else {
                            &counts.full
                        };
                        which.fetch_add(1, Ordering::Relaxed);
                        counts
                            .requests
                            .fetch_add(latencies.len() as u64, Ordering::Relaxed);
                        for l in latencies {
                            let _ = hist.record(l.max(1));
                        }
                    }
                    Err(_) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some(hist)
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for w in workers {
        if let Some(h) = w.await? {
            all.add(&h)?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let requests = counts.requests.load(Ordering::Relaxed);
    let (full, resumed) = (
        counts.full.load(Ordering::Relaxed),
        counts.resumed.load(Ordering::Relaxed),
    );
    let out = serde_json::json!({
        "requests": requests,
        "rps": requests as f64 / secs,
        "handshakes_full": full,
        "handshakes_resumed": resumed,
        "handshakes_per_s": (full + resumed) as f64 / secs,
        "errors": counts.errors.load(Ordering::Relaxed),
        "p50_us": all.value_at_quantile(0.50),
        "p99_us": all.value_at_quantile(0.99),
        "seconds": secs,
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{out}")?;
    Ok(())
}

/// One connection: handshake, `requests` requests, close. Whether the
/// server resumed the session, and each request's latency (µs).
async fn one_connection(
    tls: &TlsConnector,
    target: SocketAddr,
    name: &ServerName<'static>,
    path: &str,
    requests: usize,
    xff: &[String],
    n: &mut usize,
) -> anyhow::Result<(bool, Vec<u64>)> {
    let mut latencies = Vec::with_capacity(requests);
    let t0 = Instant::now();
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let mut s = tls.connect(name.clone(), tcp).await?;
    let resumed = matches!(
        s.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    let mut buf = vec![0u8; 16 * 1024];
    let mut start = t0;
    for i in 0..requests {
        if i > 0 {
            start = Instant::now();
        }
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: api.covergen.ai\r\n");
        if !xff.is_empty() {
            *n = (*n + 1) % xff.len();
            req.push_str(&format!("X-Forwarded-For: {}\r\n", xff[*n]));
        }
        if i + 1 == requests {
            req.push_str("Connection: close\r\n");
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        read_response(&mut s, &mut buf).await?;
        latencies.push(start.elapsed().as_micros() as u64);
    }
    let _ = s.shutdown().await;
    Ok((resumed, latencies))
}

/// Reads one response with a Content-Length body (what every target
/// answers here); an error on anything else.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut [u8],
) -> anyhow::Result<()> {
    let mut have = 0usize;
    loop {
        let n = s.read(&mut buf[have..]).await?;
        anyhow::ensure!(n > 0, "connection closed mid-response");
        have += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(&buf[..have])? {
            anyhow::ensure!(resp.code == Some(200), "status {:?}", resp.code);
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no Content-Length"))?;
            let mut body = have - head;
            while body < len {
                let n = s.read(&mut buf[..]).await?;
                anyhow::ensure!(n > 0, "connection closed mid-body");
                body += n;
            }
            return Ok(());
        }
        anyhow::ensure!(have < buf.len(), "response head too large");
    }
}
