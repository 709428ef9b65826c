//! Load for the Redis Cluster tests: streams of requests, each to the
//! proxies in turn at a steady rate, their traces, and counting in them.

use std::time::{Duration, Instant};

/// One stream of requests: an API key (`x-api-key`) and a path.
pub struct Stream(pub String, pub String);

/// Per stream, `(seconds since start, status)` of each request (status 0:
/// no answer).
pub type Trace = Vec<Vec<(f64, u16)>>;

/// `per_s` GETs a second on each stream for `dur` seconds from `start`,
/// sent to the proxy base URLs in turn, each stream on its own phase.
pub async fn drive(
    proxies: Vec<String>,
    streams: Vec<Stream>,
    per_s: f64,
    dur: f64,
    start: Instant,
) -> Trace {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let n = streams.len() as f64;
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let (client, proxies) = (client.clone(), proxies.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                for j in 0.. {
                    let at = (j as f64 + i as f64 / n) / per_s;
                    let Some(base) = proxies.get((i + j) % proxies.len().max(1)) else {
                        break;
                    };
                    if at >= dur {
                        break;
                    }
                    tokio::time::sleep_until((start + Duration::from_secs_f64(at)).into()).await;
                    let req = client.get(format!("{base}{}", s.1));
                    let status = match req.header("x-api-key", &s.0).send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    out.push((start.elapsed().as_secs_f64(), status));
                }
                out
            })
        })
        .collect();
    let mut trace = Vec::new();
    for t in tasks {
        trace.push(t.await.unwrap_or_default());
    }
    trace
}

/// Requests of `trace` answered `status` at or after `from` seconds.
pub fn count(trace: &[(f64, u16)], status: u16, from: f64) -> usize {
    trace
        .iter()
        .filter(|(t, s)| *s == status && *t >= from)
        .count()
}

/// The requests of `t` answered with none of `want`.
pub fn besides(t: &[(f64, u16)], want: &[u16]) -> Vec<(f64, u16)> {
    t.iter()
        .filter(|(_, s)| !want.contains(s))
        .cloned()
        .collect()
}

/// Polls `f` every 25 ms until it holds or `limit` passes; the seconds
/// since `start` when it held.
pub async fn when<F, Fut>(start: Instant, limit: Duration, mut f: F) -> Option<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f().await {
            return Some(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}
