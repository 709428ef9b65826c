//! Control-plane trust with real processes: roles on every endpoint, a
//! fleet view that shows rejections, store epochs, the data-directory lock,
//! an admin listener that will not face the network without a token, TLS
//! on the control channel, and the service's listener hygiene (graceful
//! SIGTERM, connection cap).

use std::time::Duration;

use edgesteer_config::TableSpec;
use edgesteer_control::api::{Ack, PatchRegion};
use edgesteer_control::client::Client;
use edgesteer_tests::*;
use reqwest::Method;

async fn service() -> (
    Workdir,
    TableSpec,
    Vec<edgesteer::demo::DemoBackend>,
    ControlProc,
) {
    let wd = Workdir::new().unwrap();
    let (mut spec, backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(&wd.path("control-data"), Some(&seed), &[])
        .await
        .unwrap();
    (wd, spec, backends, control)
}

/// The service's `/metrics`, read with the read token through `client`.
async fn service_metrics(client: reqwest::Client, control: &ControlProc) -> String {
    client
        .get(control.url("/metrics"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Status of a request to the service with `token`.
async fn status(c: &ControlProc, method: Method, path: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .request(method, c.url(path))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_endpoint_needs_a_token_and_the_right_role() {
    let (_wd, _spec, _b, control) = service().await;
    let endpoints = [
        (Method::GET, "/v1/table"),
        (Method::PUT, "/v1/table"),
        (Method::PATCH, "/v1/regions/us-east"),
        (Method::POST, "/v1/rollback"),
        (Method::GET, "/v1/history"),
        (Method::GET, "/v1/versions/1"),
        (Method::GET, "/v1/diff"),
        (Method::GET, "/v1/watch?after=0&timeout_ms=10"),
        (Method::GET, "/v1/fleet"),
        (Method::POST, "/v1/fleet/ack"),
        (Method::POST, "/v1/stats"),
        (Method::GET, "/v1/rollouts"),
        (Method::POST, "/v1/rollouts/us-east"),
        (Method::GET, "/metrics"),
    ];
    for (m, path) in &endpoints {
        assert_eq!(
            status(&control, m.clone(), path, None).await,
            401,
            "{m} {path}"
        );
        let wrong = status(&control, m.clone(), path, Some("not-a-token-here")).await;
        assert_eq!(wrong, 401, "{m} {path} with an unknown token");
    }
    assert_eq!(status(&control, Method::GET, "/healthz", None).await, 200);
    // Wrong roles: a proxy token cannot write or read tables; a read token
    // cannot write; an ops token cannot forge acks or stats.
    let forbidden = [
        (Method::PUT, "/v1/table", PROXY_TOKEN),
        (Method::GET, "/v1/table", PROXY_TOKEN),
        (Method::PATCH, "/v1/regions/us-east", READ_TOKEN),
        (Method::POST, "/v1/rollouts/us-east", READ_TOKEN),
        (Method::POST, "/v1/stats", OPS_TOKEN),
        (Method::POST, "/v1/fleet/ack", OPS_TOKEN),
        (Method::POST, "/v1/stats", READ_TOKEN),
    ];
    for (m, path, token) in &forbidden {
        assert_eq!(
            status(&control, m.clone(), path, Some(token)).await,
            403,
            "{m} {path}"
        );
    }
    // Nothing refused changed anything.
    let api = control.client();
    let v = api.get().await.unwrap();
    assert_eq!(v.version, 1);
    assert!(api.fleet().await.unwrap().proxies.is_empty());
    // Refusals are counted.
    let metrics = service_metrics(reqwest::Client::new(), &control).await;
    let count = |reason: &str| {
        metric(
            &metrics,
            &format!("edgesteer_control_auth_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    assert!(
        count("unauthenticated") >= 2.0 * endpoints.len() as f64,
        "{metrics}"
    );
    assert!(count("forbidden") >= forbidden.len() as f64, "{metrics}");
}

#[tokio::test]
async fn a_rejection_stays_in_the_fleet_view_until_a_later_version_applies() {
    let (_wd, _spec, _b, control) = service().await;
    let ops = control.client();
    let proxy = Client::new(&control.base(), Some(PROXY_TOKEN.into()));
    for v in 2..=3 {
        let change = PatchRegion {
            canary_bps: Some(v * 10),
            reason: format!("v{v}"),
            ..PatchRegion::default()
        };
        ops.patch_region("us-east", &change).await.unwrap();
    }
    let ack = |version: u64, status: &str| Ack {
        proxy: "p1".into(),
        version,
        status: status.into(),
        reason: (status == Ack::REJECTED).then(|| "does not compile here".into()),
        epoch: None,
        build: None,
    };
    proxy.ack(&ack(2, Ack::APPLIED)).await.unwrap();
    proxy.ack(&ack(3, Ack::REJECTED)).await.unwrap();
    // The proxy keeps serving 2 and says so: 3 stays rejected.
    proxy.ack(&ack(2, Ack::APPLIED)).await.unwrap();
    let p = ops.fleet().await.unwrap().proxies.remove(0);
    assert_eq!(p.applied_version, Some(2));
    assert_eq!(p.rejected_version, Some(3));
    assert_eq!(p.last_status.as_deref(), Some(Ack::REJECTED));
    assert_eq!(p.last_rejection.as_deref(), Some("does not compile here"));
    // `ctl fleet` shows it too.
    let out = control.ctl(&["fleet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("rejected"), "{text}");
    // A later version applied clears it.
    ops.patch_region(
        "us-east",
        &PatchRegion {
            canary_bps: Some(0),
            reason: "v4".into(),
            ..PatchRegion::default()
        },
    )
    .await
    .unwrap();
    proxy.ack(&ack(4, Ack::APPLIED)).await.unwrap();
    let p = ops.fleet().await.unwrap().proxies.remove(0);
    assert_eq!(
        (
            p.applied_version,
            p.rejected_version,
            p.last_status.as_deref()
        ),
        (Some(4), None, Some(Ack::APPLIED))
    );
}

#[tokio::test]
async fn after_the_store_is_wiped_proxies_take_the_new_epoch() {
    let (wd, spec, _b, mut control) = service().await;
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: follow(&control, &wd.path("p1.cache.json"), "p1"),
        ..Default::default()
    })
    .await
    .unwrap();
    let api = control.client();
    for i in 0..4u32 {
        let change = PatchRegion {
            canary_bps: Some(i),
            reason: format!("push {i}"),
            ..PatchRegion::default()
        };
        api.patch_region("us-east", &change).await.unwrap();
    }
    let caught_up = wait_until(Duration::from_secs(10), || async {
        proxy.table_version().await == Some(5)
    })
    .await;
    assert!(caught_up.is_some(), "proxy did not reach version 5");

    // The store is lost; a new one is seeded with a different table.
    let addr = control.addr;
    control.kill9();
    std::fs::remove_dir_all(wd.path("control-data")).unwrap();
    let mut reseeded = spec.clone();
    reseeded.description = Some("reseeded".into());
    reseeded.regions.get_mut("eu-west").unwrap().drain = true;
    let seed = wd.write_table("reseed.toml", &reseeded).unwrap();
    let control = ControlProc::start_on(addr, &wd.path("control-data"), Some(&seed), &[])
        .await
        .unwrap();
    // Version 1 of the new epoch is lower than the proxy's 5, and still wins.
    let converged = wait_until(Duration::from_secs(15), || async {
        proxy.table_version().await == Some(1)
    })
    .await;
    assert!(converged.is_some(), "proxy kept its old epoch's version");
    let fleet = wait_until(Duration::from_secs(10), || async {
        control.client().fleet().await.is_ok_and(|f| {
            f.proxies
                .iter()
                .any(|p| p.proxy == "p1" && p.applied_version == Some(1) && p.epoch.is_some())
        })
    })
    .await;
    assert!(
        fleet.is_some(),
        "the ack did not name the new epoch's version"
    );
}

#[tokio::test]
async fn a_second_service_on_the_same_data_directory_refuses_to_start() {
    let (wd, _spec, _b, _control) = service().await;
    let out = std::process::Command::new(binary())
        .args(["control", "--listen", "127.0.0.1:0", "--data"])
        .arg(wd.path("control-data"))
        .args(["--token", "ops=another-secret-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another config service"), "{err}");
}

#[tokio::test]
async fn an_admin_listener_off_loopback_needs_a_token() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let table = wd.write_table("t.toml", &spec).unwrap();
    let out = std::process::Command::new(binary())
        .args(["proxy", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"])
        .arg("--config")
        .arg(&table)
        .env_remove("EDGESTEER_ADMIN_TOKENS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-token"), "{err}");
}

/// `edgesteer ctl` with `args`, the ops token and `env`.
fn ctl(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(binary());
    cmd.arg("ctl")
        .args(args)
        .env("EDGESTEER_TOKEN", OPS_TOKEN)
        .env_remove("EDGESTEER_CONTROL_CA");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn a_proxy_trusts_only_its_control_ca() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let tls = ControlTls::generate(&wd.path("pki")).unwrap();
    let other = ControlTls::generate(&wd.path("other-pki")).unwrap();
    let control = ControlProc::start_https(&wd.path("control-data"), Some(&seed), &[], &tls)
        .await
        .unwrap();
    assert!(control.base().starts_with("https://"));

    // The right CA: follows the service from its first table on.
    let right = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: follow(&control, &wd.path("right.cache.json"), "p-right"),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(right.table_version().await, Some(1));

    // The wrong CA: starts from its cached table and never takes the
    // service's, though it is told where the service is.
    let cache = wd.path("wrong.cache.json");
    edgesteer::watch::save_cache(&cache, 1, None, &spec).unwrap();
    let mut args = follow(&control, &cache, "p-wrong");
    let at = args.iter().position(|a| a == "--control-ca").unwrap();
    args[at + 1] = other.ca.display().to_string();
    let wrong = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: args,
        ..Default::default()
    })
    .await
    .unwrap();

    let api = control.client();
    let change = PatchRegion {
        canary_bps: Some(100),
        reason: "over tls".into(),
        ..PatchRegion::default()
    };
    assert_eq!(
        api.patch_region("us-east", &change).await.unwrap().version,
        2
    );
    let converged = wait_until(Duration::from_secs(10), || async {
        right.table_version().await == Some(2)
    })
    .await;
    assert!(
        converged.is_some(),
        "the proxy with the right CA did not converge"
    );
    // Give the other one every chance to (wrongly) follow.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(wrong.table_version().await, Some(1));
    let got = get_as(
        &reqwest::Client::new(),
        &wrong.url("/cached"),
        sample_ip("DE"),
        None,
    )
    .await
    .unwrap();
    assert_eq!((got.status, got.region()), (200, "eu-west"));
    // The service never heard from it, and counted its refused handshakes.
    let fleet = api.fleet().await.unwrap();
    assert!(fleet.proxies.iter().any(|p| p.proxy == "p-right"));
    assert!(!fleet.proxies.iter().any(|p| p.proxy == "p-wrong"));
    let text = service_metrics(
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&tls.ca).unwrap()).unwrap(),
            )
            .build()
            .unwrap(),
        &control,
    )
    .await;
    assert!(
        metric(&text, "edgesteer_control_tls_handshake_failures_total") >= 1.0,
        "{text}"
    );
    // Plain HTTP to the TLS port is refused, not served.
    assert!(reqwest::get(format!("http://{}/healthz", control.addr))
        .await
        .is_err());
}

#[tokio::test]
async fn ctl_works_over_https_with_the_right_ca_only() {
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let tls = ControlTls::generate(&wd.path("pki")).unwrap();
    let other = ControlTls::generate(&wd.path("other-pki")).unwrap();
    let control = ControlProc::start_https(&wd.path("control-data"), Some(&seed), &[], &tls)
        .await
        .unwrap();
    let base = control.base();
    let ca = tls.ca.display().to_string();
    let out = ctl(&["--control", &base, "--control-ca", &ca, "get"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 1"));
    // The CA from the environment; a write goes through too.
    let out = ctl(
        &[
            "--control",
            &base,
            "set-canary",
            "us-east",
            "200",
            "--reason",
            "https",
        ],
        &[("EDGESTEER_CONTROL_CA", &ca)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(control.client().get().await.unwrap().version, 2);
    // Another CA: refused, and the error says why.
    let wrong = other.ca.display().to_string();
    let out = ctl(&["--control", &base, "--control-ca", &wrong, "get"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
    // A CA with a plain http:// URL is a mistake, said so.
    let plain = format!("http://{}", control.addr);
    let out = ctl(&["--control", &plain, "--control-ca", &ca, "get"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https://"), "{err}");
    // A CA file that is not one names the flag and the file.
    let bogus = wd.path("bogus.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let out = ctl(
        &[
            "--control",
            &base,
            "--control-ca",
            &bogus.display().to_string(),
            "get",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--control-ca") && err.contains("bogus.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn sigterm_ends_watches_and_exits_zero_within_the_grace_period() {
    let (_wd, _spec, _b, mut control) = service().await;
    let proxy = control.client_as(PROXY_TOKEN);
    let watch = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let r = proxy.watch(1, None, "slow", Duration::from_secs(50)).await;
        (started.elapsed(), r.map(|v| v.map(|v| v.version)))
    });
    // The watch is held open (nothing newer than version 1 comes).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!watch.is_finished());
    let term = std::time::Instant::now();
    control.signal("TERM");
    let status = control.wait_exit(Duration::from_secs(4)).await;
    let status = status.expect("the service did not exit within the grace period");
    assert!(status.success(), "exit status {status}");
    assert!(term.elapsed() < Duration::from_secs(4));
    let (held, answer) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the watch was not ended")
        .unwrap();
    assert!(held < Duration::from_secs(10), "held {held:?}");
    // Told to end: 304 (nothing new), or the connection closed.
    assert!(matches!(answer, Ok(None) | Err(_)), "{answer:?}");
}

#[tokio::test]
async fn the_connection_cap_refuses_the_excess_and_counts_it() {
    use tokio::io::AsyncReadExt;
    let wd = Workdir::new().unwrap();
    let (spec, _backends) = covergen_on_loopback().await.unwrap();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control = ControlProc::start(
        &wd.path("control-data"),
        Some(&seed),
        &["--max-connections", "3"],
    )
    .await
    .unwrap();
    // Let the readiness probe's connection go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(control.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Two more: accepted by the kernel, closed by the service at once.
    for _ in 0..2 {
        let mut extra = tokio::net::TcpStream::connect(control.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf))
            .await
            .expect("an excess connection was kept open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // A real request is refused too while the cap is reached.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    assert!(fresh().get(control.url("/healthz")).send().await.is_err());
    // Once they close, requests are served again, and the refusals show.
    drop(held);
    let served = wait_until(Duration::from_secs(5), || async {
        fresh()
            .get(control.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(served.is_some(), "the service did not recover");
    let text = service_metrics(fresh(), &control).await;
    assert!(
        metric(&text, "edgesteer_control_connections_refused_total") >= 3.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_listed_client_certificate_acts_as_a_proxy_without_a_token() {
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let tls = ControlTls::generate(&wd.path("pki")).unwrap();
    // The fleet's client CA: a listed proxy and a stranger.
    let clients_dir = wd.path("clients");
    std::fs::create_dir_all(&clients_dir).unwrap();
    let clients = make_pki(&clients_dir, &[&["proxy-7.fleet"], &["stranger.fleet"]]).unwrap();
    let client_ca = clients_dir.join("ca.pem");
    std::fs::write(&client_ca, &clients.ca_pem).unwrap();
    let client_ca_arg = client_ca.display().to_string();
    let control = ControlProc::start_https(
        &wd.path("control-data"),
        Some(&seed),
        &[
            "--client-ca",
            &client_ca_arg,
            "--cert-proxy",
            "proxy-7.fleet",
        ],
        &tls,
    )
    .await
    .unwrap();
    let (cert, key) = clients.leaves[0].clone();
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: [
            "--control",
            &control.base(),
            "--control-ca",
            &tls.ca.display().to_string(),
            "--control-cert",
            &cert.display().to_string(),
            "--control-key",
            &key.display().to_string(),
            "--cache",
            &wd.path("p.cache.json").display().to_string(),
            "--name",
            "p-cert",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(proxy.table_version().await, Some(1));
    // Tokens still work for everyone else, without a certificate.
    let api = control.client();
    let change = PatchRegion {
        drain: Some(true),
        reason: "mtls".into(),
        ..PatchRegion::default()
    };
    api.patch_region("eu-west", &change).await.unwrap();
    let converged = wait_until(Duration::from_secs(10), || async {
        proxy.table_version().await == Some(2)
            && api.fleet().await.is_ok_and(|f| {
                f.proxies
                    .iter()
                    .any(|p| p.proxy == "p-cert" && p.applied_version == Some(2))
            })
    })
    .await;
    assert!(
        converged.is_some(),
        "the certificate proxy did not converge and ack"
    );
    // A certificate from the same CA whose name is not listed is no proxy.
    let (cert, key) = clients.leaves[1].clone();
    let stranger = Client::with_tls(
        &control.base(),
        None,
        &edgesteer_control::client::ClientTls {
            ca: Some(tls.ca.clone()),
            identity: Some((cert, key)),
        },
    )
    .unwrap();
    let err = stranger
        .watch(0, None, "stranger", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // And a listed certificate grants only the proxy role: no reads.
    let (cert, key) = clients.leaves[0].clone();
    let listed = Client::with_tls(
        &control.base(),
        None,
        &edgesteer_control::client::ClientTls {
            ca: Some(tls.ca.clone()),
            identity: Some((cert, key)),
        },
    )
    .unwrap();
    assert!(listed.get().await.is_err());
}

#[tokio::test]
async fn a_plain_api_key_is_never_shown_or_logged() {
    const KEY: &str = "cg-live-plain-secret-7781";
    let wd = Workdir::new().unwrap();
    let (mut spec, _backends) = covergen_on_loopback().await.unwrap();
    fast_health(&mut spec);
    // covergen's X-Api-Key policy (free/pro/enterprise tiers).
    let covergen = edgesteer_config::parse::from_toml(edgesteer_config::COVERGEN_TOML).unwrap();
    spec.rate_limits = covergen
        .rate_limits
        .into_iter()
        .filter(|p| p.name == "api-key")
        .collect();
    let seed = wd.write_table("seed.toml", &spec).unwrap();
    let control_log = wd.path("control.log");
    let control = ControlProc::start_logged(&wd.path("data"), Some(&seed), &control_log)
        .await
        .unwrap();
    let proxy_log = wd.path("proxy.log");
    let proxy = Proxy::start(ProxyConfig {
        geo_db: Some(wd.geo_db().unwrap()),
        trust_loopback: true,
        extra_args: follow(&control, &wd.path("p.cache.json"), "p"),
        log: Some(proxy_log.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    // Ops add a plain key (no --hash), and a client uses it.
    let out = control.ctl(&["set-key", "api-key", KEY, "pro"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = control.client().get().await.unwrap().version;
    let applied = wait_until(Duration::from_secs(10), || async {
        proxy.table_version().await == Some(version)
    })
    .await;
    assert!(applied.is_some(), "the proxy did not apply the key");
    let r = reqwest::Client::new()
        .get(proxy.url("/v1/covers"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    let policy = r
        .headers()
        .get("ratelimit-policy")
        .map(|v| v.to_str().unwrap().to_string());
    // The key is in force (pro tier: 100/s) though stored only hashed.
    assert_eq!(policy.as_deref(), Some("\"api-key\";q=100;w=1"));
    // Every read of the service and of the proxy's admin API.
    let api = control.client();
    shown += &serde_json::to_string(&api.get().await.unwrap()).unwrap();
    shown += &serde_json::to_string(&api.history(50).await.unwrap()).unwrap();
    shown += &serde_json::to_string(&api.diff(None, None).await.unwrap()).unwrap();
    for path in ["/v1/table", "/v1/ratelimit", "/v1/explain?ip=8.8.8.8"] {
        shown += &reqwest::get(format!("http://{}{path}", proxy.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert!(
        shown.contains("sha256:"),
        "the hashed key is not shown at all"
    );
    drop(proxy);
    drop(control);
    let logs = std::fs::read_to_string(&control_log).unwrap()
        + &std::fs::read_to_string(&proxy_log).unwrap();
    assert!(
        logs.contains("table version committed"),
        "no service log captured"
    );
    for (what, text) in [("answers", &shown), ("logs", &logs)] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(KEY)).collect();
        assert!(
            lines.is_empty(),
            "a plain API key appears in the {what}: {lines:?}"
        );
    }
}

#[tokio::test]
async fn a_blind_apply_cannot_reset_a_running_rollout() {
    use edgesteer_config::wire::RolloutStep;
    use edgesteer_control::api::{RolloutAction, RolloutCommand};
    let (wd, _spec, _b, control) = service().await;
    let api = control.client();
    // Ops export the table, then a rollout starts.
    let exported = api.get().await.unwrap().table;
    let file = wd.write_table("exported.toml", &exported).unwrap();
    let start = RolloutCommand {
        steps: Some(vec![RolloutStep {
            canary_bps: 500,
            hold_ms: 600_000,
        }]),
        ..RolloutCommand::new(RolloutAction::Start, "release".into())
    };
    api.rollout("us-east", &start).await.unwrap();
    let running = api.get().await.unwrap().version;
    let apply = |force: bool| {
        let mut cmd = std::process::Command::new(binary());
        cmd.args(["ctl", "--control", &control.base(), "apply"])
            .arg(&file)
            .env("EDGESTEER_TOKEN", OPS_TOKEN);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    // The stale file would end the rollout: refused, nothing written.
    let out = apply(false);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rollout in us-east"), "{err}");
    assert_eq!(api.get().await.unwrap().version, running);
    // --force is the explicit way.
    let out = apply(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.get().await.unwrap().version, running + 1);
}
