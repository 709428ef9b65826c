//! Rate limiting end to end: tier rates through a real proxy, a fleet of
//! two proxies sharing a real Redis, Redis outages, live limit changes, the
//! key cap and the abuse block list.

use std::net::IpAddr;
use std::time::Duration;

use edgesteer::demo::{spawn_backend, DemoBackend, Identity};
use edgesteer_tests::*;
use serde_json::Value;

async fn backend() -> DemoBackend {
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
fn one_client(urls: Vec<String>, addr: &str, k: &str, rate: u32, secs: u64, conns: usize) -> Pace {
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
fn expected(rate: u32, burst: u32, run: &Paced) -> f64 {
    f64::from(rate) * run.elapsed.as_secs_f64() + f64::from(burst)
}

fn assert_within_5pct(what: &str, run: &Paced, rate: u32, burst: u32) {
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
        assert!((10..=11).contains(&ok), "{addr}: {ok} of 15 allowed");
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
    let free_limited = metric(
        &m,
        r#"edgesteer_rate_limited_total{policy="api-key",tier="free"}"#,
    );
    assert!(
        free_limited >= (limited["free"] + limited["unknown key (free tier)"] + 8) as f64,
        "{free_limited}"
    );
    assert!(
        metric(
            &m,
            r#"edgesteer_rate_limited_total{policy="api-key",tier="enterprise"}"#
        ) >= limited["enterprise"] as f64
    );
    assert!(metric(&m, r#"edgesteer_ratelimit_keys{policy="api-key"}"#) >= 1.0);

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

const FLEET: &str = r#"
[[rate_limits]]
name = "fleet"
key = "header:x-api-key"
scope = "global"
on_store_error = "fail_open"
default_tier = "t"
tiers = { t = { rate = 100, burst = 10 }, lone = { rate = 100, burst = 2 } }
keys = { "fleet-key" = "t", "lone-key" = "lone" }
"#;

/// docs/design.md: with N proxies the fleet admits at most
/// rate x W + burst + (N - 1) x (burst + rate x (2 x sync interval + rtt)).
/// Here N = 2, sync 50 ms, and we allow 50 ms of round trip.
fn fleet_bound(rate: u32, burst: u32, run: &Paced) -> f64 {
    expected(rate, burst, run) + f64::from(burst) + f64::from(rate) * 0.15
}

async fn fleet(
    wd: &Workdir,
    spec: &edgesteer_config::TableSpec,
    redis: &RedisProc,
) -> (Proxy, Proxy) {
    let args = vec![
        "--redis".to_string(),
        redis.url(),
        "--redis-sync-ms".into(),
        "50".into(),
    ];
    let a = wd.start_proxy(spec, true, args.clone()).await.unwrap();
    let b = wd.start_proxy(spec, true, args).await.unwrap();
    (a, b)
}

/// Whether the fleet's live-blocks hash in Redis holds `addr` (None when
/// Redis gave no clear answer).
async fn in_live_blocks(redis: &RedisProc, addr: &str) -> Option<bool> {
    match redis
        .command(&["HEXISTS", "edgesteer:blocks:live", addr])
        .await
        .ok()?
        .as_str()
    {
        ":1" => Some(true),
        ":0" => Some(false),
        _ => None,
    }
}

async fn store_up(p: &Proxy) -> f64 {
    metric(
        &p.metrics().await.unwrap_or_default(),
        "edgesteer_ratelimit_store_up",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_one_global_limit_through_redis() {
    let _heavy = heavy().await;
    let be = backend().await;
    let redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let (a, b) = fleet(&wd, &limits_table(be.addr, FLEET).unwrap(), &redis).await;

    // 2x the fleet rate, alternating between the proxies.
    let run = send_paced(one_client(
        vec![a.url("/x"), b.url("/x")],
        "198.51.100.7",
        "fleet-key",
        200,
        5,
        10,
    ))
    .await;
    assert!(run.other.is_empty(), "{:?}", run.other);
    let exact = expected(100, 10, &run);
    let bound = fleet_bound(100, 10, &run);
    let got = run.ok as f64;
    assert!(
        got <= bound,
        "fleet admitted {got}, more than the documented bound {bound:.0} (exact limit {exact:.0})"
    );
    assert!(
        got >= exact * 0.9,
        "fleet admitted only {got} of {exact:.0}"
    );
    eprintln!(
        "fleet: admitted {got} (exact {exact:.0}, bound {bound:.0}) over {:?}",
        run.elapsed
    );
    // One client on one proxy, with a burst (2 = 20 ms) shorter than the
    // sync interval (50 ms): its own use, reported back by Redis, must not
    // be counted twice (that held it near 70% of the rate).
    let lone = send_paced(one_client(
        vec![a.url("/x")],
        "198.51.100.9",
        "lone-key",
        200,
        3,
        6,
    ))
    .await;
    assert_within_5pct("one proxy, short burst, global", &lone, 100, 2);
    for p in [&a, &b] {
        let m = p.metrics().await.unwrap();
        assert_eq!(metric(&m, "edgesteer_ratelimit_store_up"), 1.0);
        assert!(metric(&m, "edgesteer_ratelimit_store_syncs_total") > 0.0);
        assert_eq!(metric(&m, "edgesteer_ratelimit_store_errors_total"), 0.0);
    }
}

const OUTAGE: &str = r#"
[[rate_limits]]
name = "open"
key = "header:x-api-key"
scope = "global"
on_store_error = "fail_open"
path_prefixes = ["/open"]
tiers = { t = { rate = 50, burst = 10 } }
keys = { "k1" = "t", "k2" = "t" }

[[rate_limits]]
name = "closed"
key = "header:x-api-key"
scope = "global"
on_store_error = "fail_closed"
path_prefixes = ["/closed"]
tiers = { t = { rate = 50, burst = 10 } }
keys = { "k1" = "t" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_open_or_closed_and_recovers_by_itself() {
    let be = backend().await;
    let mut redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let (a, b) = fleet(&wd, &limits_table(be.addr, OUTAGE).unwrap(), &redis).await;
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            client
                .get(url)
                .header("x-api-key", "k1")
                .header("x-forwarded-for", "198.51.100.8")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get(a.url("/closed/x")).await.status(), 200);

    // A hung Redis (SIGSTOP): requests never wait for it. Had a request
    // awaited Redis even once it would have taken the syncer's 250 ms
    // timeout, so 1.5 s could hold at most 6 sequential requests.
    redis.pause();
    let hung = std::time::Instant::now();
    let (mut served, mut slowest) = (0, Duration::ZERO);
    while hung.elapsed() < Duration::from_millis(1500) {
        let t = std::time::Instant::now();
        let r = get(a.url("/open/x")).await;
        slowest = slowest.max(t.elapsed());
        assert!(matches!(r.status().as_u16(), 200 | 429), "{}", r.status());
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("Redis hung: {served} requests answered in 1.5 s, slowest {slowest:?}");
    assert!(
        served >= 30,
        "only {served} requests in 1.5 s while Redis hung (slowest {slowest:?})"
    );
    // The syncer noticed (fail_closed now answers 503) ...
    let down = wait_until(Duration::from_secs(3), || async {
        store_up(&a).await == 0.0
    })
    .await;
    assert!(down.is_some(), "a hung Redis was not noticed");
    assert_eq!(get(a.url("/closed/x")).await.status(), 503);
    // ... and recovers when Redis does.
    redis.resume();
    let up = wait_until(Duration::from_secs(5), || async {
        store_up(&a).await == 1.0
    })
    .await;
    assert!(up.is_some(), "no recovery after Redis resumed");
    assert_eq!(get(a.url("/closed/x")).await.status(), 200);

    redis.kill();
    for p in [&a, &b] {
        let down = wait_until(Duration::from_secs(5), || async {
            store_up(p).await == 0.0
        })
        .await;
        assert!(down.is_some(), "proxy did not notice Redis going away");
    }
    // fail_closed: 503 with a reason, on both proxies.
    for p in [&a, &b] {
        let r = get(p.url("/closed/x")).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "rate_limit_store_unavailable");
        assert_eq!(body["policy"], "closed");
    }
    // fail_open: each proxy keeps its local limit.
    let local = send_paced(one_client(
        vec![a.url("/open/x")],
        "198.51.100.8",
        "k1",
        100,
        2,
        6,
    ))
    .await;
    assert_within_5pct("fail_open on local limits", &local, 50, 10);
    let m = a.metrics().await.unwrap();
    assert!(metric(&m, "edgesteer_ratelimit_store_errors_total") >= 1.0);
    assert!(
        metric(
            &m,
            r#"edgesteer_ratelimit_store_refusals_total{policy="closed"}"#
        ) >= 1.0
    );

    // Redis back on the same port: both proxies resume without a restart.
    redis.restart().await.unwrap();
    for p in [&a, &b] {
        let up = wait_until(Duration::from_secs(5), || async {
            store_up(p).await == 1.0
        })
        .await;
        assert!(up.is_some(), "proxy did not reconnect to Redis");
    }
    assert_eq!(get(b.url("/closed/x")).await.status(), 200);
    let run = send_paced(one_client(
        vec![a.url("/open/y"), b.url("/open/y")],
        "198.51.100.8",
        "k2",
        100,
        3,
        6,
    ))
    .await;
    assert!(run.other.is_empty(), "{:?}", run.other);
    let bound = fleet_bound(50, 10, &run);
    assert!(
        (run.ok as f64) <= bound,
        "after recovery the fleet admitted {} > bound {bound:.0}: global limiting did not resume",
        run.ok
    );
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
    let (ok, policy) = burst(20).await;
    assert!((5..=6).contains(&ok), "{ok} of 20 at rate 5");
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
    let keys = metric(&m, r#"edgesteer_ratelimit_keys{policy="ip"}"#);
    assert!(keys <= 200.0, "{keys} keys tracked with max_keys = 200");
    assert!(metric(&m, r#"edgesteer_ratelimit_overflow_total{policy="ip"}"#) > 0.0);

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
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "blocked");
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
        metric(
            &m,
            r#"edgesteer_rate_limited_total{policy="abuse-block",tier="blocked"}"#
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_the_block_list_is_shared_by_the_fleet() {
    let be = backend().await;
    let redis = RedisProc::start().await.unwrap();
    let wd = Workdir::new().unwrap();
    let spec = limits_table(
        be.addr,
        "[[rate_limits]]\nname = \"ip\"\nkey = \"client_ip\"\nrate = 1000\n",
    )
    .unwrap();
    let (a, b) = fleet(&wd, &spec, &redis).await;
    let client = reqwest::Client::new();
    let status_as = |p: &Proxy, addr: &'static str| {
        let req = client
            .get(p.url("/x"))
            .header("x-forwarded-for", addr)
            .send();
        async move { req.await.unwrap().status().as_u16() }
    };
    assert_eq!(status_as(&b, "198.51.100.77").await, 200);

    // Blocked on A by an operator: B refuses the address within a few syncs.
    let added = client
        .post(format!("http://{}/v1/ratelimit/blocks", a.admin))
        .json(&serde_json::json!({ "ip": "198.51.100.77", "seconds": 300, "reason": "scraper" }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let shared = wait_until(Duration::from_secs(3), || async {
        status_as(&b, "198.51.100.77").await == 429
    })
    .await;
    assert!(shared.is_some(), "B never saw A's block");
    let listed: Value = reqwest::get(format!("http://{}/v1/ratelimit/blocks", b.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["blocks"][0]["reason"], "scraper", "{listed}");
    assert_eq!(status_as(&b, "198.51.100.78").await, 200);

    // A proxy that starts later learns the fleet's blocks, even once the
    // stream's old entries are trimmed away (it loads the live snapshot).
    let trimmed = redis
        .command(&["XTRIM", "edgesteer:blocks", "MAXLEN", "0"])
        .await
        .unwrap();
    assert_eq!(trimmed, ":1", "the block entry was in the stream");
    let c = wd
        .start_proxy(
            &spec,
            true,
            vec![
                "--redis".into(),
                redis.url(),
                "--redis-sync-ms".into(),
                "50".into(),
            ],
        )
        .await
        .unwrap();
    let replayed = wait_until(Duration::from_secs(3), || async {
        status_as(&c, "198.51.100.77").await == 429
    })
    .await;
    assert!(replayed.is_some(), "a new proxy did not learn the block");

    // A block that ends is tidied out of the fleet's live-blocks hash.
    let short = client
        .post(format!("http://{}/v1/ratelimit/blocks", a.admin))
        .json(&serde_json::json!({ "ip": "198.51.100.79", "seconds": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), 201);
    let stored = wait_until(Duration::from_secs(3), || async {
        in_live_blocks(&redis, "198.51.100.79").await == Some(true)
    })
    .await;
    assert!(
        stored.is_some(),
        "the block never reached the live-blocks hash"
    );
    let tidied = wait_until(Duration::from_secs(6), || async {
        in_live_blocks(&redis, "198.51.100.79").await == Some(false)
    })
    .await;
    assert!(
        tidied.is_some(),
        "an ended block stayed in the live-blocks hash"
    );

    // Lifted on B: served again everywhere.
    let lifted = client
        .delete(format!(
            "http://{}/v1/ratelimit/blocks/198.51.100.77",
            b.admin
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 200);
    for p in [&a, &c] {
        let back = wait_until(Duration::from_secs(3), || async {
            status_as(p, "198.51.100.77").await == 200
        })
        .await;
        assert!(back.is_some(), "the lift did not reach every proxy");
    }
}
