//! GeoDNS on real sockets (issue 27), asked with Debian's `dig`: each
//! zone's subnets get their region's edges over UDP and TCP, negative
//! answers are well formed, a drain pushed through the config service
//! moves the DNS answer within 2 s with the degraded TTL and a new SOA
//! serial (and `ctl explain --dns` says so), exhausted zones answer inside
//! themselves only, and a truncated answer is retried over TCP whole.
//! Limits and edge health: `geodns_limits.rs`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use edgesteer_tests::*;

/// `dig @addr -p port ARGS`, its whole output.
pub(crate) fn dig(dns: SocketAddr, args: &[&str]) -> String {
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
pub(crate) fn answers(out: &str) -> Vec<(String, u32, String, String)> {
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

pub(crate) fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("?")
}

/// A proxy on `spec` serving DNS on a free port.
pub(crate) async fn dns_proxy(
    wd: &Workdir,
    spec: &edgesteer_config::TableSpec,
) -> (Proxy, SocketAddr) {
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
            // The subnet is echoed, with its scope.
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
    let cn = metric_value(
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
        metric_value(&m, "edgesteer_dns_malformed_total"),
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
pub(crate) fn raw_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}
