use std::net::SocketAddr;
use std::time::Duration;

use edgesteer_config::model::{HealthSettings, OutlierSettings, ProbeKind};
use edgesteer_config::route::HealthView;
use edgesteer_config::{parse, BackendId, RegionId, RoutingTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::probe::probe;
use crate::state::*;

fn table(addrs: &[&str]) -> RoutingTable {
    let backends: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    let text = format!(
        "default_region = \"a\"\n[regions.a]\nbackends = [{}]\n",
        backends.join(", ")
    );
    edgesteer_config::compile(&parse::from_toml(&text).unwrap()).unwrap()
}

fn ok_report(ok: bool) -> ProbeReport {
    ProbeReport {
        ok,
        detail: if ok {
            "status 200".into()
        } else {
            "connect: refused".into()
        },
        rtt_us: Some(500),
        at_ms: now_ms(),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn state_survives_reload_by_identity() {
    let reg = HealthRegistry::new();
    let h1 = reg.bind(&table(&["127.0.0.1:1", "127.0.0.1:2"]));
    let s = h1.state(BackendId(1)).unwrap();
    let ep = s.endpoint(addr("127.0.0.1:2")).unwrap();
    ep.set_active_healthy(false);
    s.recompute();
    ep.observe_rtt_us(900);

    // Reordered and with a new backend: :2 keeps its state at its new index.
    let h2 = reg.bind(&table(&["127.0.0.1:3", "127.0.0.1:2"]));
    assert!(h2.is_healthy(BackendId(0)));
    assert!(!h2.is_healthy(BackendId(1)));
    assert_eq!(
        h2.state(BackendId(1)).unwrap().endpoints()[0].rtt_us(),
        Some(900)
    );
    assert!(reg.get("a", "127.0.0.1:1").is_none());
    let kept = reg.get("a", "127.0.0.1:2").unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &kept,
        h2.state(BackendId(1)).unwrap()
    ));
    assert!(reg.get("b", "127.0.0.1:2").is_none(), "state is per region");
    assert_eq!(reg.len(), 2);
    assert!(!reg.is_empty());
    assert!(HealthRegistry::new().is_empty());
}

#[test]
fn hostname_backends_are_unavailable_until_resolved() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(&["origin.example:80"]));
    assert!(!h.is_healthy(BackendId(0)));
    let s = h.state(BackendId(0)).unwrap();
    assert!(s.set_addrs(&[addr("127.0.0.1:80"), addr("127.0.0.2:80")]));
    assert!(h.is_healthy(BackendId(0)));
    // Each address has its own state; one down leaves the backend up.
    s.endpoint(addr("127.0.0.1:80"))
        .unwrap()
        .set_active_healthy(false);
    s.recompute();
    assert!(h.is_healthy(BackendId(0)));
    assert_eq!(s.pick(0, &[]), Some(addr("127.0.0.2:80")));
    assert_eq!(s.pick(1, &[]), Some(addr("127.0.0.2:80")));
    // Re-resolution keeps the state of addresses that remain.
    assert!(s.set_addrs(&[addr("127.0.0.1:80")]));
    assert!(!h.is_healthy(BackendId(0)));
    assert!(!s.set_addrs(&[addr("127.0.0.1:80")]));
}

/// An address that joins a serving hostname backend is out until its
/// probes pass (issue 33: it was available before its first probe); the
/// first answer's serve at once; a name with very many addresses is
/// probed and served at the first `MAX_ENDPOINTS`.
#[test]
fn new_addresses_wait_for_their_probes_and_are_bounded() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(&["origin.example:80"]));
    let s = h.state(BackendId(0)).unwrap();
    let (a, b) = (addr("127.0.0.1:80"), addr("127.0.0.2:80"));
    assert!(s.set_addrs(&[a]));
    assert!(
        s.endpoint(a).unwrap().is_available(),
        "the first answer serves"
    );
    assert!(s.set_addrs(&[a, b]));
    let eb = s.endpoint(b).unwrap();
    assert!(!eb.is_available(), "a new address serves before any probe");
    assert_eq!(s.pick(1, &[]), Some(a));
    let settings = HealthSettings::default();
    let ok = || crate::endpoint::ProbeReport {
        ok: true,
        rtt_us: Some(100),
        detail: "200".into(),
        at_ms: now_ms(),
    };
    s.record_probe(&eb, ok(), &settings);
    assert!(!eb.is_available(), "in after one probe of healthy_after 2");
    s.record_probe(&eb, ok(), &settings);
    assert!(eb.is_available());

    // An answer that changed whole: nothing kept could serve, so the new
    // addresses serve at once, as a first answer's do (the backend was
    // out until their probes passed).
    let (c, d) = (addr("127.0.0.3:80"), addr("127.0.0.4:80"));
    assert!(s.set_addrs(&[c, d]));
    assert!(s.endpoint(c).unwrap().is_available() && s.is_available());
    assert!(s.pick(1, &[]).is_some());
    // The same when what is kept is down.
    let bad = crate::endpoint::ProbeReport {
        ok: false,
        rtt_us: None,
        detail: "refused".into(),
        at_ms: now_ms(),
    };
    let ec = s.endpoint(c).unwrap();
    for _ in 0..settings.unhealthy_after {
        s.record_probe(&ec, bad.clone(), &settings);
    }
    assert!(!ec.is_available());
    let e = addr("127.0.0.5:80");
    assert!(s.set_addrs(&[c, e]));
    assert!(
        s.endpoint(e).unwrap().is_available(),
        "kept c is down: e serves"
    );

    let many: Vec<SocketAddr> = (0..100u16)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 80)))
        .collect();
    assert!(s.set_addrs(&many));
    assert_eq!(s.endpoints().len(), MAX_ENDPOINTS);
    assert_eq!(s.endpoints()[0].addr, many[0]);
}

#[test]
fn active_thresholds() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(&["127.0.0.1:1"]));
    let s = h.state(BackendId(0)).unwrap();
    let ep = s.endpoints()[0].clone();
    let settings = HealthSettings {
        unhealthy_after: 3,
        healthy_after: 2,
        ..HealthSettings::default()
    };
    assert_eq!(s.record_probe(&ep, ok_report(false), &settings), None);
    assert_eq!(s.record_probe(&ep, ok_report(false), &settings), None);
    assert!(h.is_healthy(BackendId(0)));
    assert_eq!(
        s.record_probe(&ep, ok_report(false), &settings),
        Some(false)
    );
    assert!(!h.is_healthy(BackendId(0)));
    assert_eq!(s.record_probe(&ep, ok_report(true), &settings), None);
    assert!(!h.is_healthy(BackendId(0)));
    assert_eq!(s.record_probe(&ep, ok_report(true), &settings), Some(true));
    assert!(h.is_healthy(BackendId(0)));
    assert_eq!(ep.rtt_us(), Some(500));
}

#[test]
fn passive_ejection_respects_the_region_cap_and_ends() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(&["127.0.0.1:1", "127.0.0.1:2"]));
    let settings = OutlierSettings {
        consecutive_failures: 3,
        consecutive_5xx: 2,
        base_ejection: Duration::from_millis(50),
        max_ejection: Duration::from_secs(1),
        max_ejection_percent: 50,
    };
    let (a, b) = (addr("127.0.0.1:1"), addr("127.0.0.1:2"));
    let r = RegionId(0);
    assert!(!h.report(BackendId(0), a, Outcome::ConnectFailure, &settings, r));
    assert!(!h.report(BackendId(0), a, Outcome::Reset, &settings, r));
    let ejected_at = (now_ms(), 0);
    assert!(h.report(BackendId(0), a, Outcome::ConnectFailure, &settings, r));
    let ejected_at = (ejected_at.0, now_ms());
    assert!(!h.is_healthy(BackendId(0)));
    // The second would take the region to 100% ejected: refused.
    for _ in 0..5 {
        assert!(!h.report(BackendId(1), b, Outcome::Status(503), &settings, r));
    }
    assert!(h.is_healthy(BackendId(1)));
    // A success resets the count.
    h.report(BackendId(1), b, Outcome::Status(200), &settings, r);
    // The cool-down (50 ms from the ejecting report) ends on the first
    // sweep after it expires, on the health clock, not the wall's.
    reg.sweep(ejected_at.0 + 49);
    assert!(!h.is_healthy(BackendId(0)));
    reg.sweep(ejected_at.1 + 50);
    assert!(h.is_healthy(BackendId(0)));
    // A second ejection lasts twice as long: 100 ms from the report that
    // made it, read at the instant the reports ended (no wall-clock
    // window: the time the reports took is measured, not assumed).
    let before = now_ms();
    for _ in 0..3 {
        h.report(BackendId(0), a, Outcome::ConnectFailure, &settings, r);
    }
    let after = now_ms();
    let status = h.status_at(&table(&["127.0.0.1:1", "127.0.0.1:2"]), after);
    let ep = &status.regions[0].backends[0].endpoints[0];
    assert_eq!(ep.state, "ejected");
    assert_eq!(ep.ejections, 2);
    let until = after + ep.ejected_for_ms;
    assert!(
        (before + 100..=after + 100).contains(&until),
        "ejected until {until}, reports between {before} and {after}"
    );
    assert!(
        ep.reason.contains("3 consecutive connect failures"),
        "{}",
        ep.reason
    );
}

#[test]
fn region_rtt_is_the_best_available_backend() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(&["127.0.0.1:1", "127.0.0.1:2"]));
    assert_eq!(h.region_rtt_us(RegionId(0)), None);
    h.state(BackendId(0)).unwrap().endpoints()[0].observe_rtt_us(1000);
    h.state(BackendId(1)).unwrap().endpoints()[0].observe_rtt_us(400);
    assert_eq!(h.region_rtt_us(RegionId(0)), Some(400));
    let s1 = h.state(BackendId(1)).unwrap();
    s1.endpoints()[0].set_active_healthy(false);
    s1.recompute();
    assert_eq!(h.region_rtt_us(RegionId(0)), Some(1000));
    h.state(BackendId(0)).unwrap().endpoints()[0].observe_rtt_us(2000);
    assert_eq!(
        h.state(BackendId(0)).unwrap().endpoints()[0].rtt_us(),
        Some(1250)
    );
}

/// A one-shot HTTP server answering every connection with `response`.
async fn server(response: &'static str, delay: Duration) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = s.write_all(response.as_bytes()).await;
            });
        }
    });
    a
}

#[tokio::test]
async fn http_and_tcp_probes() {
    let ok = server(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nOK",
        Duration::ZERO,
    )
    .await;
    let bad = server(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        Duration::ZERO,
    )
    .await;
    let slow = server(
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    let settings = HealthSettings {
        timeout: Duration::from_millis(300),
        ..HealthSettings::default()
    };

    let r = probe(ok, "x", &settings, None).await;
    assert!(r.ok, "{r:?}");
    let body = HealthSettings {
        expect_body: Some("OK".into()),
        ..settings.clone()
    };
    assert!(probe(ok, "x", &body, None).await.ok);
    let wrong = HealthSettings {
        expect_body: Some("READY".into()),
        ..settings.clone()
    };
    let r = probe(ok, "x", &wrong, None).await;
    assert!(!r.ok && r.detail.contains("body lacks"), "{r:?}");
    let r = probe(bad, "x", &settings, None).await;
    assert!(
        !r.ok && r.detail.contains("status 503, expected 200"),
        "{r:?}"
    );
    let r = probe(slow, "x", &settings, None).await;
    assert!(!r.ok && r.detail.contains("timed out"), "{r:?}");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = probe(closed, "x", &settings, None).await;
    assert!(!r.ok && r.detail.contains("connect"), "{r:?}");
    let tcp = HealthSettings {
        kind: ProbeKind::Tcp,
        ..settings.clone()
    };
    assert!(probe(slow, "x", &tcp, None).await.ok);
    assert!(!probe(closed, "x", &tcp, None).await.ok);
}

#[test]
fn tls_failures_have_bounded_reasons() {
    use crate::tls_reason;
    assert_eq!(
        tls_reason("invalid peer certificate: UnknownIssuer"),
        "unknown CA"
    );
    assert_eq!(
        tls_reason("invalid peer certificate: BadSignature"),
        "unknown CA"
    );
    assert_eq!(
        tls_reason("invalid peer certificate: certificate expired: verification time 5 (UNIX), but certificate is not valid after 4"),
        "expired"
    );
    assert_eq!(
        tls_reason(
            "certificate not valid for name \"a\"; certificate is only valid for DnsName(\"b\")"
        ),
        "name mismatch"
    );
    assert_eq!(
        tls_reason("received fatal alert: HandshakeFailure"),
        "handshake"
    );
}

#[test]
fn a_retry_stays_on_a_backend_only_with_another_available_address() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(&["origin.example:80"]));
    let s = h.state(BackendId(0)).unwrap();
    let (a, b) = (addr("127.0.0.1:80"), addr("127.0.0.2:80"));
    s.set_addrs(&[a, b]);
    assert_eq!(s.pick_available(0, &[a]), Some(b));
    assert_eq!(s.pick_available(1, &[a]), Some(b));
    assert_eq!(s.pick_available(0, &[a, b]), None);
    s.endpoint(b).unwrap().set_active_healthy(false);
    assert_eq!(s.pick_available(0, &[a]), None);
}

/// A body over 64 KiB matches when the text is in its first 64 KiB.
#[tokio::test]
async fn expect_body_matches_within_the_prefix_of_a_long_body() {
    let big: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\nREADY{}",
            100 * 1024 + 5,
            "x".repeat(100 * 1024)
        )
        .into_boxed_str(),
    );
    let a = server(big, Duration::ZERO).await;
    let settings = HealthSettings {
        timeout: Duration::from_millis(1000),
        expect_body: Some("READY".into()),
        ..HealthSettings::default()
    };
    let r = probe(a, "x", &settings, None).await;
    assert!(r.ok, "{r:?}");
    let missing = HealthSettings {
        expect_body: Some("ABSENT".into()),
        ..settings
    };
    let r = probe(a, "x", &missing, None).await;
    assert!(!r.ok && r.detail.contains("body lacks"), "{r:?}");
}

/// `pick` starts at the endpoint the hash names (`hash mod n`), so users
/// spread over a name's addresses, and goes round from there past the
/// unavailable ones.
#[test]
fn pick_rotates_by_the_hash_over_every_address() {
    let reg = HealthRegistry::new();
    let h = reg.bind(&table(&["origin.example:80"]));
    let s = h.state(BackendId(0)).unwrap();
    let all: Vec<SocketAddr> = (1..=3).map(|i| addr(&format!("127.0.0.{i}:80"))).collect();
    s.set_addrs(&all);
    for hash in [0, 1, 2, 3, 4, 5, 7, 1 << 40, u64::MAX] {
        let i = (hash % 3) as usize;
        assert_eq!(s.pick(hash, &[]), Some(all[i]), "hash {hash}");
        assert_eq!(s.pick_available(hash, &[]), Some(all[i]), "hash {hash}");
        // Past an avoided address, the next one round.
        assert_eq!(
            s.pick(hash, &[all[i]]),
            Some(all[(i + 1) % 3]),
            "hash {hash}"
        );
    }
    s.endpoint(all[1]).unwrap().set_active_healthy(false);
    assert_eq!(s.pick(1, &[]), Some(all[2]));
    assert_eq!(s.pick(4, &[all[2]]), Some(all[0]));
    // Nothing available: any address not avoided (the caller chose to try).
    for a in [all[0], all[2]] {
        s.endpoint(a).unwrap().set_active_healthy(false);
    }
    assert_eq!(s.pick(1, &[]), Some(all[1]));
    assert_eq!(s.pick(1, &[all[1]]), Some(all[2]));
    assert_eq!(s.pick_available(1, &[]), None);
}

#[test]
fn the_health_clock_never_reads_zero() {
    // 0 means "never" (not ejected, no ejection ended).
    assert_eq!(ms_since(std::time::Instant::now()), 1);
    assert!(now_ms() >= 1);
}
