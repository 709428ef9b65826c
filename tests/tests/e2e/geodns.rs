//! GeoDNS on real sockets (issue 27), asked with Debian's `dig`: each
//! zone's subnets get their region's edges over UDP and TCP, negative
//! answers are well formed, a drain pushed through the config service
//! moves the DNS answer within 2 s with the degraded TTL and a new SOA
//! serial, exhausted zones answer inside themselves only, a truncated
//! answer is retried over TCP whole, and a flood from one /24 is rate
//! limited.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use edgesteer_tests::*;

/// `dig @addr -p port ARGS`, its whole output.
fn dig(dns: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args([
            format!("@{}", dns.ip()),
            "-p".into(),
            dns.port().to_string(),
        ])
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (Debian's bind9-dnsutils, installed by scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The answer section's records as `(name, ttl, type, data)`.
fn answers(out: &str) -> Vec<(String, u32, String, String)> {
    let Some(start) = out.find(";; ANSWER SECTION:") else {
        return Vec::new();
    };
    out[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.parse().ok()?,
                f.get(3)?.to_string(),
                f.get(4..)?.join(" "),
            ))
        })
        .collect()
}

fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("?")
}

/// A proxy on `spec` serving DNS on a free port.
async fn dns_proxy(wd: &Workdir, spec: &edgesteer_config::TableSpec) -> (Proxy, SocketAddr) {
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = wd
        .start_proxy(spec, true, vec!["--dns-listen".into(), dns.to_string()])
        .await
        .unwrap();
    (proxy, dns)
}

/// `(subnet, region, one of its edges)` for four zones' clients.
const CLIENTS: [(&str, &str, &str); 4] = [
    ("36.1.1.0/24", "cn-east", "203.0.113.80"),
    ("5.0.1.0/24", "eu-west", "198.51.100.30"),
    ("3.3.3.0/24", "us-east", "198.51.100.10"),
    ("43.0.1.0/24", "ap-southeast", "203.0.113.10"),
];

#[tokio::test]
async fn each_zones_subnets_get_their_regions_edges_over_udp_and_tcp() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let (proxy, dns) = dns_proxy(&wd, &spec).await;
    for tcp in ["+notcp", "+tcp"] {
        for (subnet, region, edge) in CLIENTS {
            let out = dig(
                dns,
                &["api.covergen.ai", "A", tcp, &format!("+subnet={subnet}")],
            );
            let a = answers(&out);
            assert_eq!(status(&out), "NOERROR", "{out}");
            assert!(out.contains(" aa"), "authoritative: {out}");
            assert!(
                a.iter().any(|r| r.3 == edge),
                "{subnet} ({region}) {tcp}: {out}"
            );
            assert_eq!(a.len(), 2, "{out}");
            assert!(a.iter().all(|r| r.1 == 60), "normal TTL: {out}");
            // The subnet is echoed, with a scope no longer than /24.
            let echo = out
                .lines()
                .find(|l| l.contains("CLIENT-SUBNET"))
                .unwrap_or("");
            assert!(echo.contains(&format!("{subnet}/")), "{echo}");
        }
    }
    // No subnet: the resolver's own address (loopback: the default region).
    let out = dig(dns, &["api.covergen.ai", "A", "+noedns"]);
    assert!(
        answers(&out).iter().any(|r| r.3 == "198.51.100.10"),
        "{out}"
    );
    // A /0 source counts as none.
    let out = dig(dns, &["api.covergen.ai", "A", "+subnet=0.0.0.0/0"]);
    assert!(
        answers(&out).iter().any(|r| r.3 == "198.51.100.10"),
        "{out}"
    );
    assert!(out.contains("CLIENT-SUBNET: 0.0.0.0/0/0"), "{out}");
    // Metrics: the China answers were counted under cn-east.
    let m = proxy.metrics().await.unwrap();
    let cn = metric(
        &m,
        r#"edgesteer_dns_queries_total{qtype="A",rcode="noerror",region="cn-east"}"#,
    );
    assert_eq!(cn, 2.0, "one over UDP, one over TCP");
}

#[tokio::test]
async fn negative_answers_case_and_truncation_are_well_formed() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    // us-east answers with 64 edges: more than 512 bytes.
    spec.dns
        .as_mut()
        .unwrap()
        .regions
        .get_mut("us-east")
        .unwrap()
        .addresses = (0..64).map(|i| format!("198.18.0.{i}")).collect();
    let (proxy, dns) = dns_proxy(&wd, &spec).await;
    // China's edges have no IPv6: NODATA with the SOA.
    let out = dig(dns, &["api.covergen.ai", "AAAA", "+subnet=36.1.1.0/24"]);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(out.contains("ANSWER: 0, AUTHORITY: 1"), "{out}");
    assert!(
        out.contains("\t60\tIN\tSOA\tns1.covergen.ai. hostmaster.covergen.ai. 1 "),
        "serial 1: {out}"
    );
    let out = dig(dns, &["nothing-here.covergen.ai", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert!(out.contains("AUTHORITY: 1"), "{out}");
    let out = dig(dns, &["www.example.com", "A"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
    assert!(!out.contains(" ra"), "no recursion offered: {out}");
    // 0x20: the question and the answers keep the asker's case.
    let out = dig(dns, &["aPI.coVErgEN.Ai", "A", "+subnet=5.0.1.0/24"]);
    assert!(
        answers(&out).iter().all(|r| r.0 == "aPI.coVErgEN.Ai."),
        "{out}"
    );
    // 64 A records without EDNS: truncated over UDP, dig retries over TCP
    // and gets them all.
    let out_noedns = dig(dns, &["api.covergen.ai", "A", "+noedns"]);
    assert!(
        out_noedns.contains("Truncated, retrying in TCP mode"),
        "{out_noedns}"
    );
    assert_eq!(answers(&out_noedns).len(), 64, "{out_noedns}");
    // Malformed packets are counted: a runt is dropped, and a subnet
    // with a bit set past its /23 prefix (dig masks its own, so by hand)
    // is answered FORMERR.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(dns).await.unwrap();
    sock.send(&[0, 1, 2]).await.unwrap();
    let mut q = raw_query(7, "api.covergen.ai");
    q[11] = 1; // ARCOUNT 1: the OPT below
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 11]);
    q.extend_from_slice(&[0, 8, 0, 7, 0, 1, 23, 0, 3, 3, 3]);
    sock.send(&q).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n >= 12 && buf[3] & 0x0f == 1, "FORMERR: {:?}", &buf[..n]);
    let m = proxy.metrics().await.unwrap();
    assert_eq!(
        metric(&m, "edgesteer_dns_malformed_total"),
        2.0,
        "the runt and the bad subnet"
    );
}

#[tokio::test]
async fn a_drain_pushed_through_the_config_service_moves_dns_within_2s() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(&wd.path("data"), Some(&seed), &[])
        .await
        .unwrap();
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut args = follow(&control, &wd.path("p.cache.json"), "p");
    args.extend(["--dns-listen".into(), dns.to_string()]);
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: args,
        ..Default::default()
    })
    .await
    .unwrap();
    let de = ["api.covergen.ai", "A", "+subnet=5.0.1.0/24"];
    let before = dig(dns, &de);
    assert!(
        answers(&before)
            .iter()
            .any(|r| r.3 == "198.51.100.30" && r.1 == 60),
        "{before}"
    );
    let serial = |dns| {
        let out = dig(dns, &["covergen.ai", "SOA", "+short"]);
        out.split_whitespace()
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
    };
    let v1 = serial(dns).expect("a serial");
    let out = control.ctl(&["shift", "eu-west", "--reason", "geodns e2e"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed = Instant::now();
    let moved = wait_until(Duration::from_secs(2), || async {
        answers(&dig(dns, &de))
            .iter()
            .any(|r| r.3 == "198.51.100.40")
    })
    .await;
    assert!(
        moved.is_some(),
        "the DNS answer still names eu-west 2 s after the drain: {}",
        dig(dns, &de)
    );
    let after = dig(dns, &de);
    let a = answers(&after);
    assert!(
        a.iter()
            .all(|r| r.3.starts_with("198.51.100.4") && r.1 == 15),
        "eu-central with the degraded TTL: {after}"
    );
    assert!(
        serial(dns).unwrap() > v1,
        "the SOA serial follows the table version"
    );
    assert!(pushed.elapsed() < Duration::from_secs(5));
    // `ctl explain --dns` shows the DNS answer beside the HTTP decision.
    let out = Command::new(binary())
        .args([
            "ctl",
            "explain",
            "--admin",
            &format!("http://{}", proxy.admin),
        ])
        .args(["--subnet", "5.0.1.0/24", "--dns", "api.covergen.ai"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("dns: api.covergen.ai -> eu-central edges [198.51.100.40, 198.51.100.41, 2001:db8:4::40] ttl 15 (degraded); agrees with HTTP (eu-central)"),
        "{text}"
    );
}

#[tokio::test]
async fn exhausted_zones_answer_inside_themselves_only() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    for r in ["cn-east", "cn-north", "eu-west", "eu-central"] {
        spec.regions.get_mut(r).unwrap().drain = true;
    }
    let (proxy, dns) = dns_proxy(&wd, &spec).await;
    let zone_edges = |region: &str| spec.dns.as_ref().unwrap().regions[region].addresses.clone();
    for (subnet, home, xff) in [
        ("36.1.1.0/24", "cn-east", "36.1.1.1"),
        ("5.0.1.0/24", "eu-west", "5.0.1.1"),
    ] {
        for _ in 0..3 {
            let out = dig(dns, &["api.covergen.ai", "A", &format!("+subnet={subnet}")]);
            assert_eq!(status(&out), "NOERROR", "never SERVFAIL: {out}");
            let a = answers(&out);
            assert!(!a.is_empty(), "{out}");
            for r in &a {
                assert!(
                    zone_edges(home).contains(&r.3),
                    "{subnet}: {} is not {home}'s: {out}",
                    r.3
                );
                assert_eq!(r.1, 5, "fail-open TTL: {out}");
            }
        }
        // Their HTTP answer is the clear 503 naming the zone.
        let r = reqwest::Client::new()
            .get(proxy.url("/v1/covers"))
            .header("X-Forwarded-For", xff)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    // Everyone else is unaffected.
    let out = dig(dns, &["api.covergen.ai", "A", "+subnet=3.3.3.0/24"]);
    assert!(
        answers(&out)
            .iter()
            .all(|r| r.1 == 60 && r.3.starts_with("198.51.100.1")),
        "{out}"
    );
}

/// A query for `name` type A, id `id`, no EDNS.
fn raw_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

#[tokio::test]
async fn a_flood_from_one_subnet_is_rate_limited_with_slip() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    let rrl = &mut spec.dns.as_mut().unwrap().rrl;
    rrl.responses_per_s = Some(10);
    rrl.burst = Some(10);
    rrl.slip = Some(2);
    let (proxy, dns) = dns_proxy(&wd, &spec).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(dns).await.unwrap();
    let sent = 200u16;
    let start = Instant::now();
    for id in 0..sent {
        sock.send(&raw_query(id, "api.covergen.ai")).await.unwrap();
    }
    let (mut full, mut truncated) = (0u32, 0u32);
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
    {
        let flags = u16::from_be_bytes([buf[2], buf[3]]);
        let ancount = u16::from_be_bytes([buf[6], buf[7]]);
        if flags & 0x0200 != 0 {
            assert_eq!(ancount, 0, "a slipped answer carries no records");
            truncated += 1;
        } else if n > 12 {
            full += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // The burst, plus the rate over the time taken, and no more.
    let bound = 10.0 + 10.0 * secs + 1.0;
    assert!(
        f64::from(full) <= bound && full >= 10,
        "{full} full answers in {secs:.2}s (bound {bound:.0})"
    );
    let limited = u32::from(sent) - full;
    assert!(
        truncated * 2 >= limited - 2 && truncated * 2 <= limited + 2,
        "slip 2: {truncated} TC of {limited} limited"
    );
    let m = proxy.metrics().await.unwrap();
    assert_eq!(
        metric(&m, r#"edgesteer_dns_rrl_total{action="slip"}"#),
        f64::from(truncated)
    );
    assert_eq!(
        metric(&m, r#"edgesteer_dns_rrl_total{action="drop"}"#),
        f64::from(limited - truncated)
    );
    // TCP is not limited: a resolver told to retry there gets its answer.
    let out = dig(dns, &["api.covergen.ai", "A", "+tcp"]);
    assert_eq!(answers(&out).len(), 2, "{out}");
}

/// An HTTP health endpoint that answers 200 while `up`, else 503.
async fn health_endpoint(up: std::sync::Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let up = up.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let status = if up.load(std::sync::atomic::Ordering::Relaxed) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn edges_failing_their_health_url_leave_the_answers_and_come_back() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let health = health_endpoint(up.clone()).await;
    spec.dns
        .as_mut()
        .unwrap()
        .regions
        .get_mut("us-east")
        .unwrap()
        .health_url = Some(format!("http://{health}/healthz"));
    let (_proxy, dns) = dns_proxy(&wd, &spec).await;
    let us = ["api.covergen.ai", "A", "+subnet=3.3.3.0/24"];
    let in_us_east = |out: &str| answers(out).iter().any(|r| r.3 == "198.51.100.10");
    assert!(in_us_east(&dig(dns, &us)), "{}", dig(dns, &us));
    // Probed every 2 s; 3 failures mark the edges down.
    up.store(false, std::sync::atomic::Ordering::Relaxed);
    let gone = wait_until(Duration::from_secs(10), || async {
        answers(&dig(dns, &us))
            .iter()
            .any(|r| r.3 == "198.51.100.20")
    })
    .await;
    assert!(
        gone.is_some(),
        "still us-east 10 s after its edges failed: {}",
        dig(dns, &us)
    );
    assert!(
        answers(&dig(dns, &us)).iter().all(|r| r.1 == 15),
        "degraded TTL"
    );
    // 2 successes bring them back.
    up.store(true, std::sync::atomic::Ordering::Relaxed);
    let back = wait_until(Duration::from_secs(8), || async {
        in_us_east(&dig(dns, &us))
    })
    .await;
    assert!(
        back.is_some(),
        "us-east's edges did not come back: {}",
        dig(dns, &us)
    );
}

#[tokio::test]
async fn tcp_connections_are_capped_and_idle_ones_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let dns = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args = [
        "--dns-listen",
        &dns.to_string(),
        "--dns-tcp-max-connections",
        "4",
        "--dns-tcp-idle-ms",
        "500",
    ];
    let proxy = wd
        .start_proxy(&spec, true, args.iter().map(|a| a.to_string()).collect())
        .await
        .unwrap();
    // Four held connections fill the cap (each sends one query, so it is
    // surely accepted and counted).
    let mut held = Vec::new();
    for i in 0..4u16 {
        let mut s = tokio::net::TcpStream::connect(dns).await.unwrap();
        let q = raw_query(i, "api.covergen.ai");
        s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(&q).await.unwrap();
        let len = s.read_u16().await.unwrap();
        let mut body = vec![0u8; usize::from(len)];
        s.read_exact(&mut body).await.unwrap();
        assert_eq!(&body[..2], &i.to_be_bytes());
        held.push(s);
    }
    // A fifth is closed at once, unanswered.
    let mut fifth = tokio::net::TcpStream::connect(dns).await.unwrap();
    let q = raw_query(9, "api.covergen.ai");
    let _ = fifth.write_all(&(q.len() as u16).to_be_bytes()).await;
    let _ = fifth.write_all(&q).await;
    let mut b = [0u8; 2];
    let got = tokio::time::timeout(Duration::from_secs(2), fifth.read(&mut b))
        .await
        .unwrap();
    assert!(
        matches!(got, Ok(0) | Err(_)),
        "the fifth connection was served: {got:?}"
    );
    let m = proxy.metrics().await.unwrap();
    assert_eq!(metric(&m, "edgesteer_dns_tcp_refused_total"), 1.0);
    // Idle past 500 ms: the held ones are closed, and the cap is free again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    for s in &mut held {
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b))
            .await
            .unwrap();
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "an idle connection stayed open: {r:?}"
        );
    }
    let out = dig(dns, &["api.covergen.ai", "A", "+tcp"]);
    assert_eq!(answers(&out).len(), 2, "{out}");
    // SIGTERM: the DNS threads stop with the rest, and the process exits.
    let mut proxy = proxy;
    let start = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "exit: {status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}
