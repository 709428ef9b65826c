//! Probing each region's edges where `[dns.regions.NAME] health_url` is
//! set: a plain HTTP GET every [`INTERVAL`]; 3 failures in a row mark the
//! region's edges down (DNS answers skip it, as they skip a region HTTP
//! cannot use), 2 successes bring them back. Bounded: one request per
//! region at a time, a 1 s timeout, at most 1 KiB read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edgesteer_config::model::{RegionId, RegionSet};
use edgesteer_geo::GeoLookup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::{DnsServer, Plane};

pub const INTERVAL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(1);
const DOWN_AFTER: u32 = 3;
const UP_AFTER: u32 = 2;

/// Consecutive results of one URL.
#[derive(Default, Clone, Copy)]
struct Streak {
    down: bool,
    fails: u32,
    oks: u32,
}

/// Probes until the task is dropped.
pub async fn run<P: Plane, G: GeoLookup + ?Sized + 'static>(server: Arc<DnsServer<P, G>>) {
    let mut streaks: HashMap<String, Streak> = HashMap::new();
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tick.tick().await;
        let urls: Vec<(RegionId, String)> = server.plane().with_current(|_, table, _| {
            table
                .dns
                .as_ref()
                .map(|z| {
                    z.regions
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| Some((RegionId(i as u8), r.health_url.clone()?)))
                        .collect()
                })
                .unwrap_or_default()
        });
        // Few regions, each bounded by its timeout: in turn is enough.
        let mut results = Vec::with_capacity(urls.len());
        for (_, u) in &urls {
            results.push(probe(u).await);
        }
        let mut down = RegionSet::EMPTY;
        let mut next = HashMap::new();
        for ((region, url), ok) in urls.into_iter().zip(results) {
            let mut s = streaks.get(&url).copied().unwrap_or_default();
            if ok {
                s.oks += 1;
                s.fails = 0;
                if s.down && s.oks >= UP_AFTER {
                    tracing::info!(%url, "edge health URL answers again; the region is back in DNS answers");
                    s.down = false;
                }
            } else {
                s.fails += 1;
                s.oks = 0;
                if !s.down && s.fails >= DOWN_AFTER {
                    tracing::warn!(%url, "edge health URL failed {DOWN_AFTER} times; DNS answers skip the region until it answers again");
                    s.down = true;
                }
            }
            if s.down {
                down.insert(region);
            }
            next.insert(url, s);
        }
        streaks = next;
        server.set_edges_down(down);
    }
}

/// `GET url`; true on a 2xx status line within the timeout.
pub async fn probe(url: &str) -> bool {
    tokio::time::timeout(TIMEOUT, probe_once(url))
        .await
        .unwrap_or(false)
}

async fn probe_once(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: edgesteer-dns-probe\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 1024];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let line = &buf[..n];
    line.starts_with(b"HTTP/1.") && line.get(9) == Some(&b'2')
}
