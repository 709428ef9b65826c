//! Paced load: GETs at a set rate from many client addresses, counted by
//! status and region.

use std::net::IpAddr;
use std::time::Duration;

use crate::requests::{landed, Landed};

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
