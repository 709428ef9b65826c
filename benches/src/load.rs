//! The load driver behind `edgesteer-load`: realistic global traffic
//! against a proxy, closed-loop (N connections back to back) or open-loop
//! (a fixed rate, latency measured from each request's *intended* send time
//! so a stalled server cannot hide its stalls: no coordinated omission).
//!
//! Clients come from a country mix and are sent as `X-Forwarded-For` (the
//! proxy must trust the driver's address, as the demo trusts loopback).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpStream;

/// A group of client countries with its share of traffic and the region
/// the covergen table should send it to.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub name: &'static str,
    pub share: f64,
    pub expect_region: &'static str,
    /// `/24` prefixes (first three octets) the bundled database places in
    /// the group's countries; the last octet is randomised.
    #[serde(skip)]
    pub prefixes: &'static [[u8; 3]],
}

/// 40% Americas, 30% Europe/Middle East/Africa, 20% Asia-Pacific, 10% China.
pub fn default_mix() -> Vec<Group> {
    vec![
        Group {
            name: "americas",
            share: 0.40,
            expect_region: "us-east",
            prefixes: &[[8, 8, 8], [8, 8, 4]],
        },
        Group {
            name: "emea",
            share: 0.30,
            expect_region: "eu-west",
            prefixes: &[[80, 128, 0], [94, 200, 0], [41, 0, 0]],
        },
        Group {
            name: "apac",
            share: 0.20,
            expect_region: "ap-southeast",
            prefixes: &[[1, 36, 0], [203, 2, 218]],
        },
        Group {
            name: "china",
            share: 0.10,
            expect_region: "cn-east",
            prefixes: &[[202, 96, 128]],
        },
    ]
}

#[derive(Clone, Debug)]
pub struct Config {
    pub target: SocketAddr,
    pub host: String,
    pub path: String,
    pub h2: bool,
    pub connections: usize,
    pub duration: Duration,
    /// Open loop at this many requests/s; closed loop when `None`.
    pub rate: Option<f64>,
    pub mix: Vec<Group>,
    pub timeout: Duration,
    /// Every request from a new client address (11.0.0.0 upwards, in
    /// order), for the rate limiter's memory run; otherwise the geo mix.
    pub distinct_clients: bool,
    /// Extra request headers (e.g. `x-api-key`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Next address handed out with `distinct_clients`.
static NEXT_CLIENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[derive(Debug, Default, Serialize)]
pub struct RegionStats {
    pub requests: u64,
    pub share: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub protocol: &'static str,
    pub connections: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub throughput_rps: f64,
    pub target_rps: Option<f64>,
    pub latency_us: BTreeMap<&'static str, u64>,
    pub by_region: BTreeMap<String, RegionStats>,
    /// Share of requests sent per client group, as configured and as sent.
    pub mix: BTreeMap<&'static str, (f64, f64)>,
    pub errors: BTreeMap<String, u64>,
    /// Requests the server refused unprocessed (an h2 GOAWAY's stream id
    /// past the last one it took, or REFUSED_STREAM) and that were sent
    /// again on a new connection, as RFC 9113 (6.8, 8.7) allows and
    /// browsers and reqwest do. Their second outcome is counted above.
    pub retried_unprocessed: u64,
}

struct Worker {
    hist: Histogram<u64>,
    by_region: BTreeMap<String, Histogram<u64>>,
    sent_by_group: BTreeMap<&'static str, u64>,
    errors: BTreeMap<String, u64>,
    requests: u64,
    ok: u64,
    retried_unprocessed: u64,
}

/// 1 us .. 60 s at 3 significant digits.
#[allow(clippy::expect_used)] // constant, valid bounds: cannot fail
fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Whether an error says the request was not processed: an h2 GOAWAY
/// (NO_ERROR) for a stream past the server's last one, REFUSED_STREAM, or
/// hyper's "canceled" (the connection closed before the request was sent).
fn unprocessed(e: &str) -> bool {
    e.contains("not a result of an error")
        || e.contains("refused stream")
        || e.contains("operation was canceled")
}

/// An error with its causes, e.g. `http2 error: stream error received:
/// refused stream before processing any application logic`.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        out.push_str(": ");
        out.push_str(&c.to_string());
        next = c.source();
    }
    out
}

enum Conn {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Conn {
    /// Whether a request can still go out on it: not after the server
    /// said `Connection: close` or sent GOAWAY (a proxy handing over to a
    /// new process does both). A client then opens a new connection; that
    /// is not a failed request.
    async fn usable(&mut self) -> bool {
        match self {
            Conn::H1(s) => s.ready().await.is_ok(),
            Conn::H2(s) => s.ready().await.is_ok(),
        }
    }
}

async fn connect(target: SocketAddr, h2: bool) -> Result<Conn, String> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    if h2 {
        let (send, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn::H2(send))
    } else {
        let (send, conn) = http1::handshake(io)
            .await
            .map_err(|e| format!("h1 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn::H1(send))
    }
}

fn pick(mix: &[Group], rng: &mut impl Rng) -> (&'static str, String) {
    let total: f64 = mix.iter().map(|g| g.share).sum();
    let mut x = rng.gen::<f64>() * total;
    let g = mix.iter().find(|g| {
        x -= g.share;
        x < 0.0
    });
    let g = g.or(mix.last()).map_or(("none", [127, 0, 0]), |g| {
        (g.name, g.prefixes[rng.gen_range(0..g.prefixes.len())])
    });
    (
        g.0,
        format!(
            "{}.{}.{}.{}",
            g.1[0],
            g.1[1],
            g.1[2],
            rng.gen_range(1..=254)
        ),
    )
}

async fn one(conn: &mut Conn, cfg: &Config, ip: &str) -> Result<(u16, Option<String>), String> {
    let uri = if cfg.h2 {
        format!("http://{}{}", cfg.host, cfg.path)
    } else {
        cfg.path.clone()
    };
    let mut req = http::Request::get(uri).header("x-forwarded-for", ip);
    if !cfg.h2 {
        req = req.header(http::header::HOST, cfg.host.as_str());
    }
    for (k, v) in &cfg.headers {
        req = req.header(k, v);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let fut = async {
        let resp = match conn {
            Conn::H1(s) => {
                s.ready().await.map_err(|e| format!("io: {}", causes(&e)))?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                s.ready().await.map_err(|e| format!("io: {}", causes(&e)))?;
                s.send_request(req).await
            }
        }
        .map_err(|e| format!("io: {}", causes(&e)))?;
        let status = resp.status().as_u16();
        let region = resp
            .headers()
            .get("x-steer-region")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        Ok((status, region))
    };
    tokio::time::timeout(cfg.timeout, fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

async fn worker(cfg: Arc<Config>, id: usize, start: Instant, deadline: Instant) -> Worker {
    let mut w = Worker {
        hist: hist(),
        by_region: BTreeMap::new(),
        sent_by_group: BTreeMap::new(),
        errors: BTreeMap::new(),
        requests: 0,
        ok: 0,
        retried_unprocessed: 0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed + id as u64);
    let mut conn: Option<Conn> = None;
    // Open loop: this worker sends every `period`, offset so workers interleave.
    let period = cfg
        .rate
        .map(|r| Duration::from_secs_f64(cfg.connections as f64 / r.max(0.001)));
    let mut k: u32 = 0;
    loop {
        let intended = match period {
            Some(p) => start + p.mul_f64(f64::from(k) + id as f64 / cfg.connections as f64),
            None => Instant::now(),
        };
        if intended >= deadline {
            break;
        }
        k += 1;
        if period.is_some() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let (group, ip) = if cfg.distinct_clients {
            let n = NEXT_CLIENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (
                "distinct",
                std::net::Ipv4Addr::from(0x0b00_0000u32.wrapping_add(n)).to_string(),
            )
        } else {
            pick(&cfg.mix, &mut rng)
        };
        *w.sent_by_group.entry(group).or_default() += 1;
        w.requests += 1;
        if let Some(c) = conn.as_mut() {
            if !c.usable().await {
                conn = None;
            }
        }
        if conn.is_none() {
            match connect(cfg.target, cfg.h2).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    *w.errors.entry(e).or_default() += 1;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut answer = one(c, &cfg, &ip).await;
        if answer.as_ref().is_err_and(|e| unprocessed(e)) {
            // Not processed by the server: a client sends it again.
            w.retried_unprocessed += 1;
            conn = connect(cfg.target, cfg.h2).await.ok();
            if let Some(c) = conn.as_mut() {
                answer = one(c, &cfg, &ip).await;
            }
        }
        match answer {
            Ok((status, region)) => {
                let us = intended.elapsed().as_micros() as u64;
                let _ = w.hist.record(us.max(1));
                if let Some(r) = region {
                    let _ = w.by_region.entry(r).or_insert_with(hist).record(us.max(1));
                }
                if (200..300).contains(&status) {
                    w.ok += 1;
                } else {
                    *w.errors.entry(format!("status {status}")).or_default() += 1;
                }
            }
            Err(e) => {
                *w.errors.entry(e).or_default() += 1;
                conn = None;
            }
        }
    }
    w
}

/// Runs the load and reports. Bounded: it stops at `cfg.duration`.
pub async fn run(cfg: Config) -> Report {
    let cfg = Arc::new(cfg);
    let start = Instant::now() + Duration::from_millis(50);
    let deadline = start + cfg.duration;
    let tasks: Vec<_> = (0..cfg.connections)
        .map(|i| tokio::spawn(worker(cfg.clone(), i, start, deadline)))
        .collect();
    let mut all = hist();
    let mut by_region: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut sent: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let (mut requests, mut ok, mut retried_unprocessed) = (0, 0, 0);
    for t in tasks {
        let Ok(w) = t.await else { continue };
        retried_unprocessed += w.retried_unprocessed;
        let _ = all.add(&w.hist);
        for (r, h) in w.by_region {
            let _ = by_region.entry(r).or_insert_with(hist).add(&h);
        }
        for (g, n) in w.sent_by_group {
            *sent.entry(g).or_default() += n;
        }
        for (e, n) in w.errors {
            *errors.entry(e).or_default() += n;
        }
        requests += w.requests;
        ok += w.ok;
    }
    let elapsed = start
        .elapsed()
        .as_secs_f64()
        .min(cfg.duration.as_secs_f64() + 60.0);
    let routed: u64 = by_region.values().map(|h| h.len()).sum();
    let latency_us = BTreeMap::from([
        ("p50", all.value_at_quantile(0.50)),
        ("p90", all.value_at_quantile(0.90)),
        ("p99", all.value_at_quantile(0.99)),
        ("p99.9", all.value_at_quantile(0.999)),
        ("max", all.max()),
    ]);
    let total_sent: u64 = sent.values().sum();
    Report {
        mode: if cfg.rate.is_some() {
            "open-loop"
        } else {
            "closed-loop"
        },
        protocol: if cfg.h2 { "h2c" } else { "http/1.1" },
        connections: cfg.connections,
        duration_s: cfg.duration.as_secs_f64(),
        requests,
        ok,
        // Completed requests (answered, whatever the status) over the
        // time until the last answer: a server that falls behind an open
        // loop's schedule shows as less than the target rate.
        throughput_rps: all.len() as f64 / elapsed.max(cfg.duration.as_secs_f64()),
        target_rps: cfg.rate,
        latency_us,
        by_region: by_region
            .into_iter()
            .map(|(r, h)| {
                let s = RegionStats {
                    requests: h.len(),
                    share: h.len() as f64 / routed.max(1) as f64,
                    p50_us: h.value_at_quantile(0.5),
                    p99_us: h.value_at_quantile(0.99),
                };
                (r, s)
            })
            .collect(),
        mix: cfg
            .mix
            .iter()
            .map(|g| {
                (
                    g.name,
                    (
                        g.share,
                        sent.get(g.name).copied().unwrap_or(0) as f64 / total_sent.max(1) as f64,
                    ),
                )
            })
            .collect(),
        errors,
        retried_unprocessed,
    }
}

impl Report {
    /// A human-readable summary.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} {} with {} connections for {:.1} s: {} requests ({} ok), {:.0} req/s{}\n",
            self.mode,
            self.protocol,
            self.connections,
            self.duration_s,
            self.requests,
            self.ok,
            self.throughput_rps,
            self.target_rps
                .map(|t| format!(" (target {t:.0})"))
                .unwrap_or_default()
        );
        s += &format!(
            "latency (us): p50 {} p90 {} p99 {} p99.9 {} max {}\n",
            self.latency_us["p50"],
            self.latency_us["p90"],
            self.latency_us["p99"],
            self.latency_us["p99.9"],
            self.latency_us["max"]
        );
        s += "by region:\n";
        for (r, st) in &self.by_region {
            s += &format!(
                "  {r:<13} {:>9} {:>6.2}%  p50 {:>6} us  p99 {:>6} us\n",
                st.requests,
                st.share * 100.0,
                st.p50_us,
                st.p99_us
            );
        }
        s += "client mix (configured -> sent):\n";
        for (g, (want, got)) in &self.mix {
            s += &format!("  {g:<9} {:>6.2}% -> {:>6.2}%\n", want * 100.0, got * 100.0);
        }
        if self.errors.is_empty() {
            s += "errors: none\n";
        } else {
            s += "errors:\n";
            for (e, n) in &self.errors {
                s += &format!("  {n:>8}  {e}\n");
            }
        }
        if self.retried_unprocessed > 0 {
            s += &format!(
                "sent again after the server refused them unprocessed (h2 GOAWAY/REFUSED_STREAM): {}\n",
                self.retried_unprocessed
            );
        }
        s
    }
}
