//! One active probe of one endpoint: an HTTP/1.1 `GET` (status and
//! optional body text checked) or a bare TCP connect, under a timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgesteer_config::model::{HealthSettings, ProbeKind};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::state::{now_ms, ProbeReport};

/// Bodies longer than this are not read past (expect_body must be early).
const MAX_BODY: usize = 64 * 1024;

/// Probes `addr` once; `host` is the `Host` header to send.
pub async fn probe(addr: SocketAddr, host: &str, settings: &HealthSettings) -> ProbeReport {
    let start = Instant::now();
    let result = tokio::time::timeout(settings.timeout, run(addr, host, settings)).await;
    let rtt_us = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
    let (ok, detail) = match result {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(e)) => (false, e),
        Err(_) => (false, format!("timed out after {:?}", settings.timeout)),
    };
    ProbeReport {
        ok,
        detail,
        rtt_us: Some(rtt_us),
        at_ms: now_ms(),
    }
}

async fn run(addr: SocketAddr, host: &str, settings: &HealthSettings) -> Result<String, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if settings.kind == ProbeKind::Tcp {
        return Ok("connected".into());
    }
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(settings.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "edgesteer-health/1")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad probe request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let result = if status != settings.expect_status {
        Err(format!(
            "status {status}, expected {}",
            settings.expect_status
        ))
    } else if let Some(want) = &settings.expect_body {
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        if contains(&body, want.as_bytes()) {
            Ok(format!("status {status}, body matched"))
        } else {
            Err(format!("status {status}, body lacks {want:?}"))
        }
    } else {
        Ok(format!("status {status}"))
    };
    conn.abort();
    result
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// `d` scaled by a factor in [1 - spread, 1 + spread], from `seed`.
pub fn jitter(d: Duration, spread: f64, seed: u64) -> Duration {
    let unit = (seed % 10_000) as f64 / 10_000.0; // 0..1
    let factor = 1.0 - spread + 2.0 * spread * unit;
    d.mul_f64(factor.max(0.0))
}
