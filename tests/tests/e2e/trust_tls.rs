//! TLS on the control channel: a proxy trusts only its control CA, `ctl`
//! over HTTPS, and client certificates that act as a proxy.

use std::time::Duration;

use edgesteer_control_api::api::PatchRegion;
use edgesteer_control_api::client::Client;
use edgesteer_tests::*;

use crate::trust::service_metrics;

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
    edgesteer_proxy::watch::save_cache(&cache, 1, None, &spec).unwrap();
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
        metric_value(&text, "edgesteer_control_tls_handshake_failures_total") >= 1.0,
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
            "proxy-7.fleet",
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
                    .any(|p| p.proxy == "proxy-7.fleet" && p.applied_version == Some(2))
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
        &edgesteer_control_api::client::ClientTls {
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
        &edgesteer_control_api::client::ClientTls {
            ca: Some(tls.ca.clone()),
            identity: Some((cert, key)),
        },
    )
    .unwrap();
    assert!(listed.get().await.is_err());
    // It acks as the certificate's name, and as no other proxy.
    let ack = |proxy: &str| edgesteer_control_api::api::Ack {
        proxy: proxy.into(),
        version: 2,
        status: edgesteer_control_api::api::Ack::APPLIED.into(),
        reason: None,
        epoch: None,
        build: None,
    };
    let forged = listed.ack(&ack("p-other")).await.unwrap_err();
    assert!(forged.to_string().contains("403"), "{forged}");
    listed.ack(&ack("proxy-7.fleet")).await.unwrap();
}
