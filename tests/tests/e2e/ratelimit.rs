//! Rate limiting end to end on one proxy: tier rates, live limit changes,
//! the key cap and the abuse block list (a fleet sharing Redis is in
//! `ratelimit_fleet`, which uses the helpers here).

use std::net::IpAddr;
use std::time::Duration;

use edgesteer::demo::{spawn_backend, DemoBackend, Identity};
use edgesteer_tests::*;
use serde_json::Value;

pub(crate) async fn backend() -> DemoBackend {
    spawn_backend(
        Identity {
            region: "us-east".into(),
            backend: "b1".into(),
            track: "stable".into(),
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `rate` GETs per second for `secs` to `urls` in turn, from one client
/// address with API key `k`, `conns` at a time.
pub(crate) fn one_client(
    urls: Vec<String>,
    addr: &str,
    k: &str,
    rate: u32,
    secs: u64,
    conns: usize,
) -> Pace {
    Pace {
        urls,
        ips: vec![ip(addr)],
        headers: vec![("x-api-key".into(), k.into())],
        rate,
        duration: Duration::from_secs(secs),
        conns,
    }
}

/// GCRA admits `burst` at once and then `rate` per second.
pub(crate) fn expected(rate: u32, burst: u32, run: &Paced) -> f64 {
    f64::from(rate) * run.elapsed.as_secs_f64() + f64::from(burst)
}

pub(crate) fn assert_within_5pct(what: &str, run: &Paced, rate: u32, burst: u32) {
    let want = expected(rate, burst, run);
    let got = run.ok as f64;
    assert!(
        run.other.is_empty(),
        "{what}: unexpected answers {:?}",
        run.other
    );
    assert!(
        (got - want).abs() <= want * 0.05,
        "{what}: {got} allowed, expected {want:.1} +-5% ({run:?})"
    );
}

/// Most requests GCRA admits from one key in `took`, sent one after
/// another from a full bucket: the burst, one per `1/rate` since, and one
/// at the boundary.
fn gcra_most(rate: u32, burst: u32, took: Duration) -> usize {
    (burst as usize) + (took.as_secs_f64() * f64::from(rate)) as usize + 1
}

/// The enterprise key is in the table only as its SHA-256.
fn tiers() -> String {
    format!(
        r#"
[[rate_limits]]
name = "api-key"
key = "header:x-api-key"
default_tier = "free"
response_headers = true
tiers = {{ free = {{ rate = 10, burst = 10 }}, pro = {{ rate = 40, burst = 20 }}, enterprise = {{ rate = 100, burst = 50 }} }}
keys = {{ "k-free" = "free", "k-pro" = "pro", "{}" = "enterprise" }}
"#,
        edgesteer_config::ratelimit::hashed_key("k-ent")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tier_gets_its_rate_and_unknown_keys_the_default() {
    let _heavy = heavy().await;
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let proxy = wd
        .start_proxy(&limits_table(be.addr, &tiers()).unwrap(), true, vec![])
        .await
        .unwrap();
    let url = proxy.url("/v1/covers");
    let client = reqwest::Client::new();

    // Allowed answers carry the RateLimit fields of the tier.
    let r = client
        .get(&url)
        .header("x-api-key", "k-ent")
        .header("x-forwarded-for", "198.51.100.50")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ratelimit-policy"], "\"api-key\";q=100;w=1");
    assert_eq!(r.headers()["ratelimit"], "\"api-key\";r=49;t=1");

    // 2x each tier's rate for 5 s, all at once: (what, address, key, rate, burst, conns).
    let runs = [
        ("free", "198.51.100.1", "k-free", 10, 10, 4),
        ("pro", "198.51.100.2", "k-pro", 40, 20, 6),
        ("enterprise", "198.51.100.3", "k-ent", 100, 50, 10),
        (
            "unknown key (free tier)",
            "198.51.100.4",
            "k-bogus",
            10,
            10,
            4,
        ),
    ];
    let tasks: Vec<_> = runs
        .iter()
        .map(|&(_, addr, k, rate, _, conns)| {
            tokio::spawn(send_paced(one_client(
                vec![url.clone()],
                addr,
                k,
                2 * rate,
                5,
                conns,
            )))
        })
        .collect();
    let mut limited = std::collections::BTreeMap::new();
    for (&(what, _, _, rate, burst, _), task) in runs.iter().zip(tasks) {
        let run = task.await.unwrap();
        assert_within_5pct(what, &run, rate, burst);
        limited.insert(what, run.limited);
    }

    // Without a key: the free tier, counted per client address.
    for addr in ["198.51.100.20", "198.51.100.21"] {
        let mut ok = 0;
        let mut refusal = None;
        let t = std::time::Instant::now();
        for _ in 0..15 {
            let r = client
                .get(&url)
                .header("x-forwarded-for", addr)
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                ok += 1;
            } else {
                refusal = Some(r);
            }
        }
        // The burst, then one more per 100 ms the 15 took (one more at
        // the boundary): 10 or 11 when they take under 100 ms.
        let most = gcra_most(10, 10, t.elapsed());
        assert!(
            (10..=most).contains(&ok),
            "{addr}: {ok} of 15 allowed in {:?}",
            t.elapsed()
        );
        let r = refusal.expect("some requests were refused");
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        assert_eq!(r.headers()["ratelimit-policy"], "\"api-key\";q=10;w=1");
        assert!(r.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"api-key\";r=0;t="));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(body["tier"], "free");
        assert_eq!(body["policy"], "api-key");
    }

    let m = proxy.metrics().await.unwrap();
    let free_limited = metric_value(
        &m,
        r#"edgesteer_rate_limited_total{policy="api-key",tier="free"}"#,
    );
    assert!(
        free_limited >= (limited["free"] + limited["unknown key (free tier)"] + 8) as f64,
        "{free_limited}"
    );
    assert!(
        metric_value(
            &m,
            r#"edgesteer_rate_limited_total{policy="api-key",tier="enterprise"}"#
        ) >= limited["enterprise"] as f64
    );
    assert!(metric_value(&m, r#"edgesteer_ratelimit_keys{policy="api-key"}"#) >= 1.0);

    // The admin listener shows keys only hashed.
    let shown = reqwest::get(format!("http://{}/v1/table", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !shown.contains("k-free") && !shown.contains("k-pro"),
        "{shown}"
    );
    let pro = edgesteer_config::ratelimit::hashed_key("k-pro");
    assert!(shown.contains(&format!("{}...", &pro[..19])), "{shown}");
    assert!(!shown.contains(&pro), "a plain key's full hash is shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_pushed_through_the_table_applies_on_the_next_request() {
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let policy_toml = |rate: u32| {
        format!(
            "[[rate_limits]]\nname = \"per-ip\"\nkey = \"client_ip\"\nrate = {rate}\nresponse_headers = true\n"
        )
    };
    let spec = limits_table(be.addr, &policy_toml(5)).unwrap();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(&wd.path("control-data"), Some(&seed), &[])
        .await
        .unwrap();
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: follow(&control, &wd.path("cache.json"), "p1"),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let burst = |n: usize| {
        let (client, url) = (client.clone(), proxy.url("/x"));
        async move {
            let mut ok = 0;
            let mut policy = String::new();
            for _ in 0..n {
                let r = client
                    .get(&url)
                    .header("x-forwarded-for", "198.51.100.30")
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 {
                    ok += 1;
                    policy = r.headers()["ratelimit-policy"]
                        .to_str()
                        .unwrap()
                        .to_string();
                }
            }
            (ok, policy)
        }
    };
    let t = std::time::Instant::now();
    let (ok, policy) = burst(20).await;
    let most = gcra_most(5, 5, t.elapsed());
    assert!(
        (5..=most).contains(&ok),
        "{ok} of 20 at rate 5 in {:?}",
        t.elapsed()
    );
    assert_eq!(policy, "\"per-ip\";q=5;w=1");

    // Ops raise the limit with the CLI (GET, edit, PUT with If-Match).
    let out = control.ctl(&[
        "--json",
        "set-limit",
        "per-ip",
        "--rate",
        "100",
        "--burst",
        "100",
        "--reason",
        "raise per-ip",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = written["version"].as_u64().unwrap();
    // A bad value is refused by the service with the field named; nothing changes.
    let bad = control.ctl(&["set-limit", "per-ip", "--rate", "0"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("rate_limits[0].rate"), "{err}");
    let applied = wait_until(Duration::from_secs(5), || async {
        proxy.table_version().await == Some(v)
    })
    .await;
    assert!(applied.is_some(), "proxy did not apply v{v}");
    // A changed limit starts the policy afresh: the new rate and burst apply.
    let (ok, policy) = burst(40).await;
    assert_eq!(policy, "\"per-ip\";q=100;w=1");
    assert!(ok >= 38, "{ok} of 40 at rate 100, burst 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_cap_holds_and_abusers_are_blocked_until_lifted() {
    // Paced load: not at the same time as other heavy tests (2 cores).
    let _heavy = heavy().await;
    let be = backend().await;
    let wd = Workdir::new().unwrap();
    let spec = limits_table(
        be.addr,
        r#"
[[rate_limits]]
name = "ip"
key = "client_ip"
rate = 5
burst = 5
max_keys = 200
abuse = { multiple = 2, for_s = 2, block_s = 60 }
"#,
    )
    .unwrap();
    let admin_token = "admin-secret-1";
    let proxy = wd
        .start_proxy(
            &spec,
            true,
            vec!["--admin-token".into(), format!("ops={admin_token}")],
        )
        .await
        .unwrap();

    // 800 distinct addresses, one request each: all served, at most 200 tracked.
    let ips: Vec<IpAddr> = (0..800u32)
        .map(|i| IpAddr::from([10, 77, (i >> 8) as u8, i as u8]))
        .collect();
    let report = send_paced(Pace {
        urls: vec![proxy.url("/x")],
        ips,
        rate: 800,
        duration: Duration::from_secs(1),
        conns: 16,
        ..Pace::default()
    })
    .await;
    assert_eq!(
        report.ok,
        800,
        "{} limited, {:?}",
        report.limited,
        &report.other[..report.other.len().min(5)]
    );
    let m = proxy.metrics().await.unwrap();
    let keys = metric_value(&m, r#"edgesteer_ratelimit_keys{policy="ip"}"#);
    assert!(keys <= 200.0, "{keys} keys tracked with max_keys = 200");
    assert!(metric_value(&m, r#"edgesteer_ratelimit_overflow_total{policy="ip"}"#) > 0.0);

    // 40/s from one address (8x its limit, over 2x) for 4 s: blocked.
    let abuser = ip("198.51.100.66");
    let run = send_paced(Pace {
        urls: vec![proxy.url("/x")],
        ips: vec![abuser],
        rate: 40,
        duration: Duration::from_secs(4),
        conns: 4,
        ..Pace::default()
    })
    .await;
    assert!(run.other.is_empty(), "{:?}", run.other);
    let admin = format!("http://{}", proxy.admin);
    // With --admin-token, admin reads need it too.
    let anonymous = reqwest::get(format!("{admin}/v1/ratelimit/blocks"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let blocks: Value = reqwest::Client::new()
        .get(format!("{admin}/v1/ratelimit/blocks"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = blocks["blocks"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{blocks}");
    assert_eq!(listed[0]["ip"], "198.51.100.66");
    assert_eq!(listed[0]["policy"], "ip");
    let client = reqwest::Client::new();
    let as_ip = |addr: &'static str| {
        client
            .get(proxy.url("/x"))
            .header("x-forwarded-for", addr)
            .send()
    };
    let r = as_ip("198.51.100.66").await.unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&retry), "retry-after {retry}");
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["error"], "blocked");
    // The block's own reason: the abuse rule's here.
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("above ")
            && body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("above "),
        "{body}"
    );
    // A block by hand answers with the operator's reason.
    let made = client
        .post(format!("{admin}/v1/ratelimit/blocks"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({ "ip": "198.51.100.68", "seconds": 60, "reason": "scraper" }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let r = as_ip("198.51.100.68").await.unwrap();
    assert_eq!(r.status(), 429);
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["reason"], "scraper", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("(scraper)"),
        "{body}"
    );
    // Others are untouched.
    assert_eq!(as_ip("198.51.100.67").await.unwrap().status(), 200);
    // `explain` says why.
    let why = proxy
        .explain_as("198.51.100.66", None, Some(admin_token))
        .await
        .unwrap();
    assert_eq!(why["rate_limit"]["blocked"]["policy"], "ip", "{why}");
    assert_eq!(why["rate_limit"]["policies"][0]["rate_per_s"], 5, "{why}");

    // DELETE /v1/ratelimit/blocks/{ip}, with or without the admin token.
    let lift = |target: &'static str, token: Option<&'static str>| {
        let mut req = client.delete(format!("{admin}/v1/ratelimit/blocks/{target}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Lifting needs the admin token ...
    assert_eq!(lift("198.51.100.66", None).await, 401);
    assert_eq!(as_ip("198.51.100.66").await.unwrap().status(), 429);
    // ... and with it the address is served again at once.
    assert_eq!(lift("198.51.100.66", Some(admin_token)).await, 200);
    assert_eq!(as_ip("198.51.100.66").await.unwrap().status(), 200);
    assert_eq!(lift("198.51.100.66", Some(admin_token)).await, 404);
    assert_eq!(lift("not-an-ip", Some(admin_token)).await, 400);
    let m = proxy.metrics().await.unwrap();
    assert!(
        metric_value(
            &m,
            r#"edgesteer_rate_limited_total{policy="abuse-block",tier="blocked"}"#
        ) >= 1.0
    );
}
