//! One active probe of one endpoint: an HTTP/1.1 `GET` (status and
//! optional body text checked, over TLS when the region's origins speak
//! it, verified as the proxy verifies) or a bare TCP connect, under a
//! timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgesteer_config::model::{HealthSettings, ProbeKind};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::state::{now_ms, ProbeReport};
use crate::tls::ProbeTls;

/// `expect_body` is looked for in this much of the body; the rest is not
/// read (a longer body still matches when the text is early).
const MAX_BODY: usize = 64 * 1024;

/// Probes `addr` once; `host` is the `Host` header to send.
pub async fn probe(
    addr: SocketAddr,
    host: &str,
    settings: &HealthSettings,
    tls: Option<&ProbeTls>,
) -> ProbeReport {
    let start = Instant::now();
    let result = tokio::time::timeout(settings.timeout, run(addr, host, settings, tls)).await;
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

async fn run(
    addr: SocketAddr,
    host: &str,
    settings: &HealthSettings,
    tls: Option<&ProbeTls>,
) -> Result<String, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    match tls {
        None if settings.kind == ProbeKind::Tcp => Ok("connected".into()),
        None => http_get(stream, host, settings).await,
        Some(t) => {
            let connector = tokio_rustls::TlsConnector::from(t.config.clone());
            let stream = connector
                .connect(t.name.clone(), stream)
                .await
                .map_err(|e| format!("tls: {} ({e})", tls_reason(&e.to_string())))?;
            if settings.kind == ProbeKind::Tcp {
                return Ok("TLS handshake done".into());
            }
            http_get(stream, host, settings).await
        }
    }
}

/// Why a TLS handshake with an origin failed, as one of a few bounded
/// reasons (metric labels, `/v1/health`): `expired`, `unknown CA`,
/// `name mismatch` or `handshake`. Read from rustls's message, which both
/// the probes and Pingora's connector carry.
pub fn tls_reason(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    // A certificate signed by another CA of the same name fails on its
    // signature rather than on its issuer: the same fault for an operator.
    if m.contains("unknownissuer") || m.contains("unknown issuer") || m.contains("badsignature") {
        "unknown CA"
    } else if m.contains("expired") || m.contains("notvalidyet") || m.contains("not valid yet") {
        "expired"
    } else if m.contains("notvalidforname") || m.contains("not valid for name") {
        "name mismatch"
    } else {
        "handshake"
    }
}

async fn http_get<S>(stream: S, host: &str, settings: &HealthSettings) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
        if body_has(resp.into_body(), want.as_bytes()).await? {
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

/// Whether `want` is in the first `MAX_BODY` bytes of `body`, reading no
/// further than it must.
async fn body_has(mut body: hyper::body::Incoming, want: &[u8]) -> Result<bool, String> {
    let mut seen: Vec<u8> = Vec::new();
    while seen.len() < MAX_BODY {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| format!("reading body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            let room = MAX_BODY - seen.len();
            seen.extend_from_slice(data.get(..room.min(data.len())).unwrap_or(&data));
            if contains(&seen, want) {
                return Ok(true);
            }
        }
    }
    Ok(contains(&seen, want))
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
